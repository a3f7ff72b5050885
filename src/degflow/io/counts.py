"""Read bulk RNA-seq count tables from every common quantifier, and fail clearly on bad input.

One entry point, :func:`read_counts`, returns a :class:`~degflow.io.counttable.CountTable` (genes x samples
``int64`` counts, gene names, per-sample quantifier QC, provenance) from

``matrix``
    a TSV/CSV count matrix (first column gene ID, one integer column per sample);
``featurecounts``
    a subread featureCounts table (plus its ``.summary``);
``htseq``
    per-sample HTSeq-count tables (``__no_feature`` ... rows go to QC);
``star``
    per-sample STAR ``ReadsPerGene.out.tab`` (strandedness chosen or inferred);
``salmon`` / ``kallisto``
    transcript estimates summed per gene as tximport does with ``countsFromAbundance="no"``;
``rsem``
    ``*.genes.results`` (gene level) or ``*.isoforms.results`` (summed per gene).

:func:`sniff_format` detects the format from a file's content (not its name).

The readers live by kind: :mod:`degflow.io.genecounts` (matrix, featureCounts, HTSeq, STAR),
:mod:`degflow.io.quantifiers` (salmon, kallisto, RSEM, tx2gene); the result type and
:func:`~degflow.io.counttable.collapse_replicates` in :mod:`degflow.io.counttable`; gene names from a GTF in
:mod:`degflow.io.annotation`; file checks in :mod:`degflow.io.text`; count checks in :mod:`degflow.checks`.

Every problem with the input raises :class:`~degflow.errors.DegflowInputError` with a one-line
message naming the file, the row/column and what to do.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import pandas as pd

from degflow.errors import DegflowInputError
from degflow.io.counttable import CountTable
from degflow.io.genecounts import (
    FC_ANNOTATION,
    combine_samples,
    read_featurecounts,
    read_htseq,
    read_matrix,
    read_star_files,
    strip_bam_suffixes,
)
from degflow.io.quantifiers import COUNTS_FROM_ABUNDANCE, SALMON_HEADER, read_quantifications
from degflow.io.text import check_exists, first_line, is_number, open_text, show_line, strip_compression

__all__ = ["FORMATS", "read_counts", "sniff_format"]

logger = logging.getLogger("degflow")

#: Every format :func:`read_counts` understands (the values of its ``format`` argument besides "auto").
FORMATS: tuple[str, ...] = ("matrix", "featurecounts", "htseq", "star", "salmon", "kallisto", "rsem")


# ----------------------------------------------------------------------------------------------
# format detection
# ----------------------------------------------------------------------------------------------


def _sniff_dir(path: Path) -> str:
    names = {p.name for p in path.iterdir()}
    if names & {"quant.sf", "quant.sf.gz"}:
        return "salmon"
    if names & {"abundance.h5", "abundance.tsv", "abundance.tsv.gz"}:
        return "kallisto"
    if any(n.endswith((".genes.results", ".genes.results.gz", ".isoforms.results", ".isoforms.results.gz"))
           for n in names):
        return "rsem"
    shown = ", ".join(sorted(names)[:5]) or "nothing"
    raise DegflowInputError(f"{path}: directory holds no quant.sf (salmon), abundance.h5/.tsv (kallisto) or "
                            f"*.genes.results (rsem) (it holds {shown}); give the quantifier's output file or folder")


def _has_htseq_specials(path: Path) -> bool:
    pattern = re.compile(r"^(?:__)?(?:no_feature|ambiguous|alignment_not_unique)\t", re.MULTILINE)
    with open_text(path) as fh:
        tail = ""
        while chunk := fh.read(1 << 20):
            if pattern.search(tail + chunk):
                return True
            tail = chunk[-64:]
    return False


def sniff_format(path: str | Path) -> str:
    """Detect which quantifier wrote a count file, from its content.

    Parameters
    ----------
    path
        A count file (optionally gzip-compressed) or a quantifier output folder (salmon, kallisto,
        rsem).

    Returns
    -------
    str
        One of :data:`FORMATS`: ``"featurecounts"`` (``# Program:featureCounts`` line or
        ``Geneid Chr Start End Strand Length`` header), ``"star"`` (first row ``N_unmapped``),
        ``"salmon"`` (``Name Length EffectiveLength TPM NumReads``), ``"kallisto"``
        (``target_id ... est_counts`` or an ``abundance.h5``), ``"rsem"`` (``gene_id
        transcript_id(s)`` or ``transcript_id gene_id`` headers), ``"htseq"`` (``__no_feature`` ...
        rows anywhere, or a headerless ID + counts table) and ``"matrix"`` (a header row, then
        gene IDs and counts).

    Raises
    ------
    DegflowInputError
        If the path does not exist, is empty, or looks like none of the known formats; the
        message lists the known formats and shows the first line.
    """
    return _sniff(Path(path))[0]


def _sniff(path: Path) -> tuple[str, bool]:
    """(format, certain): ``certain`` is False only for the fallbacks (a header-less ID + count table
    read as HTSeq, or any other table read as a matrix), which carry no quantifier signature."""
    check_exists(path)
    if path.is_dir():
        return _sniff_dir(path), True
    if strip_compression(path.name).endswith(".h5"):
        return "kallisto", True
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(b"\x89HDF"):
        return "kallisto", True
    line = first_line(path)
    if line is None:
        raise DegflowInputError(f"{path}: the file is empty; expected a count table")
    fields = line.split("\t")
    if line.startswith("# Program:featureCounts") or fields[:6] == FC_ANNOTATION:
        return "featurecounts", True
    if fields[0] == "N_unmapped":
        return "star", True
    if fields[:5] == SALMON_HEADER or fields[:4] == ["Name", "Length", "TPM", "NumReads"]:
        return "salmon", True
    if fields[:1] == ["target_id"] and "est_counts" in fields:
        return "kallisto", True
    if fields[:2] in (["gene_id", "transcript_id(s)"], ["transcript_id", "gene_id"]) and "expected_count" in fields:
        return "rsem", True
    # HTSeq writes no header: its first row ends with a count (after the ID and any --additional-attr
    # columns). Only then scan the file for its __ rows (a full read, which a matrix whose header ends
    # with a sample name is spared).
    if len(fields) >= 2 and is_number(fields[-1]) and _has_htseq_specials(path):
        return "htseq", True
    if line.startswith("#"):
        with open_text(path) as fh:
            line = next((ln.rstrip("\r\n") for ln in fh if ln.strip() and not ln.startswith("#")), line)
    sep = "," if line.count(",") > line.count("\t") else "\t"
    cells = line.split(sep)
    if len(cells) >= 2 and not line.startswith("#"):
        if all(is_number(c) for c in cells[1:] if c.strip()):
            return "htseq", False  # header-less "gene<TAB>count" without HTSeq's __ rows
        return "matrix", False
    raise DegflowInputError(f"{path}: unrecognised count format; known formats are {', '.join(FORMATS)} "
                            f"(first line: {show_line(line)}); set format: explicitly or give a tab-separated table "
                            "of gene IDs and counts")


# ----------------------------------------------------------------------------------------------
# sample names and paths
# ----------------------------------------------------------------------------------------------


def _sample_name(path: Path, fmt: str) -> str:
    """Sample name implied by a per-sample file's path."""
    name = strip_compression(path.name)
    if fmt == "star":
        name = re.sub(r"ReadsPerGene\.out\.tab$", "", name).rstrip("._-") or path.parent.name
    elif fmt in ("salmon", "kallisto"):
        name = path.name if path.is_dir() else path.parent.name
    elif fmt == "rsem":
        name = re.sub(r"\.(genes|isoforms)\.results$", "", name)
    elif fmt in ("htseq", "featurecounts"):
        name = re.sub(r"\.(txt|tsv|tab|counts?|out|htseq)$", "", name)
        name = re.sub(r"\.(counts?|htseq)$", "", name)
    return name


def _normalise_paths(paths: str | Path | Mapping[str, str | Path] | Sequence[str | Path]
                     ) -> tuple[dict[str | None, Path], bool]:
    """(sample -> path, named); a lone path gets the key None."""
    if isinstance(paths, (str, Path)):
        return {None: Path(paths)}, False
    if isinstance(paths, Mapping):
        if not paths:
            raise DegflowInputError("paths: the mapping sample -> count file is empty; give at least one sample")
        return {str(k): Path(v) for k, v in paths.items()}, True
    if isinstance(paths, Sequence):
        if not paths:
            raise DegflowInputError("paths: the list of count files is empty; give at least one file")
        return {f"\0{i}": Path(p) for i, p in enumerate(paths)}, False
    raise DegflowInputError(f"paths: expected a path, a list of paths or a mapping sample -> path, got "
                            f"{type(paths).__name__}")


# ----------------------------------------------------------------------------------------------
# entry point
# ----------------------------------------------------------------------------------------------


def read_counts(
    paths: str | Path | Mapping[str, str | Path] | Sequence[str | Path],
    *,
    format: str = "auto",
    strandedness: str | Mapping[str, str] = "auto",
    tx2gene: str | Path | pd.DataFrame | None = None,
    gene_name_column: str | None = None,
    sep: str | None = None,
    counts_from_abundance: str = "no",
) -> CountTable:
    """Read bulk RNA-seq gene counts from any supported quantifier into one genes x samples table.

    Parameters
    ----------
    paths
        One multi-sample file (``matrix``, ``featurecounts``, or HTSeq-count run on several BAMs),
        or a mapping sample -> per-sample file/folder (HTSeq, STAR ``ReadsPerGene.out.tab``, salmon
        ``quant.sf`` or its folder, kallisto ``abundance.h5``/``.tsv`` or its folder, RSEM
        ``*.genes.results``/``*.isoforms.results``, one-sample featureCounts). A list of paths is
        accepted too; sample names then come from the paths (STAR prefix before
        ``ReadsPerGene.out.tab``, salmon/kallisto folder, RSEM/HTSeq file name). gzip is read
        transparently.
    format
        ``"auto"`` (sniff every file, see :func:`sniff_format`; all must agree) or one of
        :data:`FORMATS`.
    strandedness
        STAR only: ``"auto"``, ``"unstranded"`` (column 2), ``"forward"`` (column 3, htseq
        ``-s yes``) or ``"reverse"`` (column 4, ``-s reverse``), or a mapping sample -> value.
        ``"auto"`` applies nf-core/rnaseq's rule (``calculateStrandedness`` in
        ``subworkflows/nf-core/fastq_qc_trim_filter_setstrandedness/main.nf``, defaults
        ``--stranded_threshold 0.8`` and ``--unstranded_threshold 0.1``) to the gene totals of
        columns 3 (forward) and 4 (reverse): forward if column 3 holds >= 80 % of their sum,
        reverse if column 4 does, unstranded if the two shares differ by <= 0.1, otherwise
        "undetermined", which stops with :class:`DegflowInputError` (set the kit's strandedness)
        unless ``"auto_or_unstranded"`` was given: then column 2 is used with a warning, as
        nf-core falls back to unstranded. Each sample is decided on its own; disagreement is
        logged and recorded in ``source["strandedness_consistent"]``.
    tx2gene
        salmon/kallisto (and RSEM isoforms, which otherwise use their own ``gene_id`` column):
        transcript -> gene map, see :func:`degflow.io.quantifiers.read_tx2gene`. When the quantified
        transcript IDs and the map differ only in Ensembl version suffixes (``ENST...\\.2``), versions are
        removed on both sides (keeping GENCODE ``_PAR_Y`` tags, so PAR copies stay distinct) and a warning says so.
        Transcripts absent from the map are dropped with a warning (and recorded in
        ``source["unmapped_transcripts"]``); if none match, :class:`DegflowInputError`.
    gene_name_column
        matrix only: the column holding gene names. By default a non-numeric second column named
        ``gene_name``, ``symbol``, ``gene_symbol`` or ``Name`` is taken as gene names.
    sep
        matrix only: field separator; by default ``","`` for ``.csv``, tab for ``.tsv``/``.txt``,
        otherwise whichever of tab/comma the header line has more of.
    counts_from_abundance
        salmon/kallisto/RSEM isoforms: tximport's ``countsFromAbundance``. ``"no"`` (default):
        estimated counts summed per gene, and ``lengths`` returned for DESeq2's length offset;
        ``"scaledTPM"`` / ``"lengthScaledTPM"``: counts re-made from the gene TPM (times the
        gene's mean length over samples for ``lengthScaledTPM``) scaled to each sample's
        estimated-count total, and ``lengths`` is ``None`` (the counts carry the length
        correction; DESeqDataSetFromTximport ignores ``txi$length`` then).

    Returns
    -------
    CountTable
        ``counts`` (genes x samples ``int64``, index ``gene_id``), ``gene_names``, ``qc``,
        ``format``, ``source`` and, for salmon/kallisto/rsem, ``lengths``.

        salmon/kallisto/RSEM estimates become gene counts as tximport's default
        ``countsFromAbundance="no"`` (estimated counts summed over each gene's transcripts; RSEM
        ``*.genes.results`` ``expected_count`` as is), then rounded half-to-even as DESeq2's
        ``DESeqDataSetFromTximport`` does (``round(txi$counts)``). The aggregation is implemented
        here rather than through ``pytximport.tximport`` 0.13.0: that version strips versions on
        ``.``, which turns GENCODE ``_PAR_Y`` copies into duplicate keys and fails with a bare
        ``AssertionError``; the test suite checks the two agree where pytximport works.

    Raises
    ------
    DegflowInputError
        Unknown format or path, a file whose content is another format's than the one declared
        (or, under ``auto``, files of different formats), empty file, no samples, NA, non-numeric,
        non-integer or negative counts, duplicate gene IDs, HTSeq output without its five ``__``
        rows, STAR files without 4 columns or (under ``auto``) with unclear strandedness, samples
        counted against different annotations, a missing or non-matching tx2gene, or an invalid
        strandedness; each message names the file and the first offending gene/sample.
    """
    files, named = _normalise_paths(paths)
    fmt = str(format).lower()
    if fmt not in ("auto", *FORMATS):
        raise DegflowInputError(f"format {format!r} is unknown; use auto or one of {', '.join(FORMATS)}")
    if counts_from_abundance not in COUNTS_FROM_ABUNDANCE:
        raise DegflowInputError(f"counts_from_abundance {counts_from_abundance!r} is unknown; use one of "
                                f"{', '.join(COUNTS_FROM_ABUNDANCE)} (tximport's countsFromAbundance)")
    for path in files.values():
        check_exists(path)
    if fmt != "auto":
        _check_declared_format(files, fmt)
    if fmt == "auto":
        detected = {key: sniff_format(path) for key, path in files.items()}
        kinds = set(detected.values())
        if len(kinds) > 1:
            shown = ", ".join(f"{files[k]}: {v}" for k, v in list(detected.items())[:4])
            raise DegflowInputError(f"count files are in different formats ({shown}); give files from one "
                                    "quantifier, or set format: explicitly")
        fmt = kinds.pop()
        logger.info("auto-detected format %s for %s", fmt,
                    next(iter(files.values())) if len(files) == 1 else f"{len(files)} files")

    if fmt == "matrix":
        if len(files) != 1:
            raise DegflowInputError("format matrix takes one file holding every sample, got "
                                    f"{len(files)} files; merge them, or give the per-sample format")
        return read_matrix(next(iter(files.values())), gene_name_column=gene_name_column, sep=sep)

    if fmt == "featurecounts":
        if len(files) == 1 and not named:
            return read_featurecounts(next(iter(files.values())))
        return _per_sample_featurecounts(files, named)

    if fmt == "htseq" and len(files) == 1 and not named:
        path = next(iter(files.values()))
        counts, qc, names, header = read_htseq(path)
        base = _sample_name(path, "htseq")
        if counts.shape[1] == 1:
            cols = [base]
        elif header and all(h.strip() for h in header) and len(set(header)) == len(header):
            cols = [strip_bam_suffixes(PurePosixPath(h).name) if h.endswith(".bam") else h for h in header]
        else:
            cols = [f"{base}_{i + 1}" for i in range(counts.shape[1])]
        counts.columns = cols
        qc.index = pd.Index(cols, name="sample")
        return CountTable(counts=counts, gene_names=names, qc=qc, format="htseq",
                          source={"files": {c: str(path) for c in cols}})

    samples = _name_samples(files, named, fmt)
    if fmt == "htseq":
        per_sample: dict[str, pd.Series] = {}
        qcs: list[pd.DataFrame] = []
        names = None
        for sample, path in samples.items():
            counts, qc, nm, _ = read_htseq(path)
            if counts.shape[1] != 1:
                raise DegflowInputError(f"{path}: holds {counts.shape[1]} count columns (htseq-count run on several "
                                        f"BAMs) but was given as the single sample {sample!r}; pass this file on its "
                                        "own as paths to read every column")
            per_sample[sample] = counts.iloc[:, 0]
            qcs.append(qc.set_axis([sample]))
            names = nm if names is None else names
        counts = combine_samples(per_sample, samples)
        qc_all = pd.concat(qcs)
        qc_all.index.name = "sample"
        if names is not None:
            names = names.reindex(counts.index)
        return CountTable(counts=counts, gene_names=names, qc=qc_all, format="htseq",
                          source={"files": {s: str(p) for s, p in samples.items()}})
    if fmt == "star":
        return read_star_files(samples, strandedness)
    return read_quantifications(samples, fmt, tx2gene, counts_from_abundance=counts_from_abundance)


_LOOKS_LIKE = {
    "featurecounts": "featureCounts output (a '# Program:featureCounts' line or a Geneid Chr Start End Strand "
                     "Length header)",
    "star": "a STAR ReadsPerGene.out.tab (first row N_unmapped)",
    "salmon": "a salmon quant.sf (Name Length EffectiveLength TPM NumReads)",
    "kallisto": "kallisto output (abundance.h5, or target_id ... est_counts)",
    "rsem": "an RSEM *.genes.results / *.isoforms.results",
    "htseq": "htseq-count output (__no_feature ... rows)",
    "matrix": "a plain table",
}


def _check_declared_format(files: Mapping[str | None, Path], fmt: str) -> None:
    """Stop when a file carries another quantifier's signature than the declared format."""
    for path in files.values():
        try:
            seen, certain = _sniff(path)
        except DegflowInputError:
            continue  # unreadable or unrecognised: the format's own reader says what is wrong
        if seen == fmt or not (certain or fmt not in ("matrix", "htseq")):
            continue
        first = "" if path.is_dir() or seen == "kallisto" else f", first line {show_line(first_line(path) or '')}"
        raise DegflowInputError(f"{path}: format {fmt} was set but the file looks like {_LOOKS_LIKE[seen]}"
                                f"{first}; set bulk.counts.format to {seen} (or auto), or give the {fmt} file")


def _name_samples(files: Mapping[str | None, Path], named: bool, fmt: str) -> dict[str, Path]:
    if named:
        return {str(k): v for k, v in files.items()}
    out: dict[str, Path] = {}
    for path in files.values():
        name = _sample_name(path, fmt)
        if name in out:
            raise DegflowInputError(f"{path} and {out[name]} both give the sample name {name!r}; pass a mapping "
                                    "sample -> path instead")
        out[name] = path
    return out


def _per_sample_featurecounts(files: Mapping[str | None, Path], named: bool) -> CountTable:
    samples = _name_samples(files, named, "featurecounts")
    per_sample: dict[str, pd.Series] = {}
    qcs: list[pd.DataFrame] = []
    bam_names: dict[str, str] = {}
    for sample, path in samples.items():
        table = read_featurecounts(path)
        if table.counts.shape[1] != 1:
            raise DegflowInputError(f"{path}: holds {table.counts.shape[1]} samples but was given as the single "
                                    f"sample {sample!r}; pass a multi-sample featureCounts file on its own")
        per_sample[sample] = table.counts.iloc[:, 0]
        bam_names[sample] = next(iter(table.source["bam_names"].values()))
        if table.qc is not None:
            qcs.append(table.qc.set_axis([sample]))
    counts = combine_samples(per_sample, samples)
    qc = pd.concat(qcs) if qcs else None
    if qc is not None:
        qc.index.name = "sample"
    return CountTable(counts=counts, gene_names=None, qc=qc, format="featurecounts",
                      source={"files": {s: str(p) for s, p in samples.items()}, "bam_names": bam_names})
