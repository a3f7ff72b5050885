"""Read bulk RNA-seq count tables from every common quantifier, and fail clearly on bad input.

One entry point, :func:`read_counts`, returns a :class:`CountTable` (genes x samples ``int64``
counts, gene names, per-sample quantifier QC, provenance) from

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

:func:`sniff_format` detects the format from a file's content (not its name), and
:func:`read_annotation` reads gene names/biotypes from a GTF or a TSV.

Every problem with the input raises :class:`~degflow.errors.DegflowInputError` with a one-line
message naming the file, the row/column and what to do.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError

__all__ = [
    "COUNTS_FROM_ABUNDANCE",
    "FORMATS",
    "CountTable",
    "collapse_replicates",
    "match_annotation",
    "read_annotation",
    "read_counts",
    "read_tx2gene",
    "sniff_format",
    "strandedness_table",
]

logger = logging.getLogger("degflow")

#: Every format :func:`read_counts` understands (the values of its ``format`` argument besides "auto").
FORMATS: tuple[str, ...] = ("matrix", "featurecounts", "htseq", "star", "salmon", "kallisto", "rsem")

#: nf-core/rnaseq thresholds for strandedness inference: ``calculateStrandedness`` in
#: ``subworkflows/nf-core/fastq_qc_trim_filter_setstrandedness/main.nf`` (seen at commit 0bb032c1),
#: defaults of ``--stranded_threshold`` / ``--unstranded_threshold`` documented in ``docs/usage.md``.
STRANDED_THRESHOLD: float = 0.8
UNSTRANDED_THRESHOLD: float = 0.1

_STRANDEDNESS_VALUES = ("auto", "auto_or_unstranded", "unstranded", "forward", "reverse")
_STRANDEDNESS_ALIASES = {"no": "unstranded", "yes": "forward", "none": "unstranded", "0": "unstranded",
                         "1": "forward", "2": "reverse"}
_STAR_COLUMN = {"unstranded": 2, "forward": 3, "reverse": 4}  # 1-based column in ReadsPerGene.out.tab

_HTSEQ_SPECIAL = ("no_feature", "ambiguous", "too_low_aQual", "not_aligned", "alignment_not_unique")
_STAR_SPECIAL = ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")
_FC_ANNOTATION = ["Geneid", "Chr", "Start", "End", "Strand", "Length"]
_SALMON_HEADER = ["Name", "Length", "EffectiveLength", "TPM", "NumReads"]
_KALLISTO_HEADER = ["target_id", "length", "eff_length", "est_counts", "tpm"]
_NA_STRINGS = frozenset({"", "NA", "NaN", "nan", "N/A", "NULL", "null", "None", "#N/A"})
_NUMBA_READ_BYTES = 16_000_000  # matrices larger than this (on disk) are read by degflow.io._textparse
_GENE_NAME_COLUMNS = ("gene_name", "symbol", "gene_symbol", "name", "external_gene_name", "genesymbol")
_BIOTYPE_COLUMNS = ("gene_biotype", "gene_type", "biotype")
_BAM_SUFFIXES = (".bam", "Aligned.sortedByCoord.out", "Aligned.toTranscriptome.out", "Aligned.out",
                 ".sortedByCoord", ".sorted", ".sort", "_sorted", ".markdup", ".markdups", ".dedup",
                 ".dedupped", ".filtered", ".primary")
#: A trailing Ensembl/GENCODE version (``.14``), kept in front of a GENCODE ``_PAR_Y`` tag.
_VERSION_RE = re.compile(r"\.\d+(?=(?:_PAR_Y)?$)")
_INTEGER_HINT = "counts must be integers: for salmon/kallisto estimates use format: salmon/kallisto with tx2gene"


@dataclass
class CountTable:
    """Gene-level counts read from one quantifier's output.

    Attributes
    ----------
    counts
        Genes x samples, ``int64``; index named ``"gene_id"``, columns are sample names
        (mapping keys when a mapping was given, else derived from file or BAM names).
    gene_names
        ``gene_id -> gene_name`` (index aligned with ``counts``) when the source carries names
        (matrix name column, HTSeq ``--additional-attr``, tx2gene/GTF ``gene_name``), else ``None``.
        Names are not unique; always key on ``gene_id``.
    qc
        Samples x QC fields, or ``None`` (plain matrix). Every format writes ``assigned`` (reads
        counted on genes) and, where the tool reports the total, ``assignment_rate``; the other
        columns keep the tool's own names (``Unassigned_NoFeatures``, ``__no_feature``,
        ``N_noFeature``, ``num_mapped`` ...).
    format
        The format actually read (after auto-detection), one of :data:`FORMATS`.
    source
        Provenance: ``files`` (sample -> path), and per format e.g. ``bam_names``
        (featureCounts sample -> BAM header), ``strandedness`` (STAR: per-sample choice and
        evidence), ``tx2gene``/``ids_version_stripped``/``unmapped_transcripts`` (salmon, kallisto,
        rsem), ``rounding``.
    lengths
        salmon/kallisto/rsem only: genes x samples abundance-weighted average transcript length
        (tximport's ``txi$length``), which DESeq2's ``DESeqDataSetFromTximport`` uses as an offset;
        ``None`` for count-based formats.
    """

    counts: pd.DataFrame
    gene_names: pd.Series | None
    qc: pd.DataFrame | None
    format: str
    source: dict[str, Any] = field(default_factory=dict)
    lengths: pd.DataFrame | None = None


# ----------------------------------------------------------------------------------------------
# small I/O helpers
# ----------------------------------------------------------------------------------------------


#: Leading bytes of binary files a user may give instead of a text table.
_BINARY_SIGNATURES = {b"PK\x03\x04": "a zip archive (an Excel .xlsx / LibreOffice file?)",
                      b"\xd0\xcf\x11\xe0": "an old Excel .xls / Office file",
                      b"\xff\xfe": "UTF-16 text (Excel's 'Unicode Text'; save as UTF-8)",
                      b"\xfe\xff": "UTF-16 text (save it as UTF-8)",
                      b"%PDF": "a PDF", b"BAM\x01": "a BAM file (counts are made from BAMs, e.g. by featureCounts)"}


def check_text_file(path: str | Path, *, what: str, key: str) -> None:
    """Stop when a file meant to be a text table (plain or gzip) is binary: a spreadsheet, a PDF, a BAM...

    Folders and HDF5 files (kallisto's abundance.h5) are left to the readers.

    Raises
    ------
    DegflowInputError
        ``counts file 'x.xlsx' is not a text table (it looks like a zip archive ...); export ... as TSV or CSV``
    """
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if head.startswith(b"\x89HDF"):
        return
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(8192)
        except (EOFError, OSError, zlib.error) as exc:
            raise DegflowInputError(f"{what} '{path}' is a truncated or corrupt gzip file ({exc}); copy or "
                                    "download it again (gzip -t checks it)") from None
    kind = next((desc for sig, desc in _BINARY_SIGNATURES.items() if head.startswith(sig)), None)
    if kind is None and b"\x00" in head:
        kind = "a binary file"
    # Text in another encoding than UTF-8 (Latin-1, Windows-1252) is not binary: every byte decodes as Latin-1, so
    # no check here could flag it; the table readers stop on it with the file and line (io.sheets.read_sheet).
    if kind is not None:
        raise DegflowInputError(f"{what} '{path}' is not a text table (it looks like {kind}); {key} takes a "
                                "tab- or comma-separated text file: export spreadsheets as TSV or CSV")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open_text(path: Path) -> TextIO:
    """Open a text file, gzip-compressed or not (judged by its magic bytes, not its name)."""
    if _is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def _first_line(path: Path) -> str | None:
    """First non-blank line without its line ending, or ``None`` for an empty file."""
    with _open_text(path) as fh:
        for line in fh:
            if line.strip():
                return line.rstrip("\r\n")
    return None


def _show(line: str, limit: int = 100) -> str:
    """A line for a message: quoted, tabs shown as \\t, cut at ``limit`` characters."""
    return repr(line if len(line) <= limit else line[:limit] + "...")


def _strip_compression(name: str) -> str:
    for suf in (".gz", ".bz2", ".xz", ".zip"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


def _guess_sep(path: Path, first_line: str) -> str:
    name = _strip_compression(path.name).lower()
    if name.endswith(".csv"):
        return ","
    if name.endswith((".tsv", ".tab", ".txt")):
        return "\t"
    return "," if first_line.count(",") > first_line.count("\t") else "\t"


def _read_table(path: Path, *, sep: str = "\t", header: int | None = 0, skiprows: int = 0,
                nrows: int | None = None) -> pd.DataFrame:
    """Read a delimited table as strings (no NA conversion), turning parser errors into input errors."""
    try:
        return pd.read_csv(path, sep=sep, header=header, skiprows=skiprows, dtype=str, keep_default_na=False,
                           compression="gzip" if _is_gzip(path) else None, skip_blank_lines=True, nrows=nrows)
    except pd.errors.EmptyDataError:
        raise DegflowInputError(f"{path}: the file is empty; expected a count table") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[-1]
        raise DegflowInputError(f"{path}: cannot be parsed as a {sep!r}-separated table ({msg}); "
                                "check that every row has the same number of fields") from None


def _read_int_body(path: Path, *, sep: str, skiprows: int, header: Sequence[str],
                   name_column: str | None) -> pd.DataFrame | None:
    """The rows of a count matrix, fast: numba for plain integers, else pandas' C parser with integer inference.

    Returns the rows indexed by the first column, or ``None`` (the caller then reads text and
    names the offending cell) unless the rows
    have as many fields as ``header`` and every count column parsed as integers; a text column
    is allowed only where a gene-name column can be (``name_column``, or the first data column
    when its header is a usual gene-name header). Text columns are returned as ``str``. Plain
    integer matrices larger than 16 MB on disk go through a numba reader first (several times
    faster than pandas; see :mod:`degflow.io._textparse`).
    """
    if name_column is None and path.stat().st_size > _NUMBA_READ_BYTES:
        from degflow.io._textparse import parse_int_matrix  # numba: imported (and compiled) only when it pays

        with (gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")) as fh:
            data = fh.read()
        start = 0
        for _ in range(skiprows):
            nl = data.find(b"\n", start)
            start = len(data) if nl < 0 else nl + 1
        parsed = parse_int_matrix(data, start, sep, len(header) - 1)
        del data
        if parsed is not None:
            ids, values = parsed
            return pd.DataFrame(values, index=pd.Index(ids, name=header[0]), columns=list(header[1:]), copy=False)
    try:
        body = pd.read_csv(path, sep=sep, header=None, skiprows=skiprows, dtype={0: str}, na_filter=False,
                           compression="gzip" if _is_gzip(path) else None, skip_blank_lines=True,
                           low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return None
    if body.shape[1] != len(header) or body.shape[1] < 2:
        return None
    allowed = {name_column} if name_column is not None else (
        {header[1]} if str(header[1]).lower() in _GENE_NAME_COLUMNS else set())
    for pos in range(1, body.shape[1]):
        if not pd.api.types.is_integer_dtype(body.dtypes.iloc[pos]):
            if header[pos] not in allowed:
                return None
            body[pos] = body[pos].astype(str)
    body.columns = list(header)
    return body.set_index(header[0])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_exists(path: Path, what: str = "count file") -> None:
    if not path.exists():
        raise DegflowInputError(f"{path}: {what} not found; check the path")


# ----------------------------------------------------------------------------------------------
# validation of integer counts
# ----------------------------------------------------------------------------------------------


def _first_cell(mask: np.ndarray, frame: pd.DataFrame) -> tuple[str, str, Any]:
    """Gene, sample and value of the first True cell of ``mask`` (row-major order)."""
    rows, cols = np.nonzero(mask)
    i, j = int(rows[0]), int(cols[0])
    return str(frame.index[i]), str(frame.columns[j]), frame.iat[i, j]


def _check_index(index: pd.Index, path: Path | str) -> None:
    if len(index) == 0:
        raise DegflowInputError(f"{path}: no gene rows found; the file has a header but no counts")
    missing = pd.isna(index) | pd.Index(index).astype(str).isin(["", "nan"])
    if missing.any():
        pos = int(np.argmax(missing))
        raise DegflowInputError(f"{path}: gene row {pos + 1} has an empty gene ID; every row needs an ID in the "
                                "first column")
    dup = pd.Index(index)[pd.Index(index).duplicated()].unique()
    if len(dup):
        shown = ", ".join(repr(d) for d in dup[:3])
        raise DegflowInputError(f"{path}: duplicate gene IDs ({shown}; {len(dup)} IDs occur more than once); "
                                "gene IDs must be unique: sum or drop the duplicated rows, or key on a unique ID "
                                "column instead of gene names")


def _as_int_counts(raw: pd.DataFrame, path: Path | str, *, hint: str = _INTEGER_HINT) -> pd.DataFrame:
    """Validate a genes x samples table of count strings/numbers and return it as ``int64``.

    Integral floats (``12.0``) are accepted and cast; NA, non-numeric, non-integer, infinite and
    negative values, duplicate or empty gene IDs and tables without samples raise
    :class:`DegflowInputError` naming the first offending gene and sample.
    """
    if raw.shape[1] == 0:
        raise DegflowInputError(f"{path}: no sample columns found; a count table needs a gene ID column "
                                "followed by one count column per sample")
    _check_index(raw.index, path)
    if all(pd.api.types.is_integer_dtype(t) for t in raw.dtypes):
        values = raw.to_numpy(dtype=np.int64, copy=False)
    else:
        num = raw.apply(pd.to_numeric, errors="coerce")
        failed = num.isna().to_numpy()
        if failed.any():
            # NA-like cells ("", NA, nan ...) and text both fail to convert; report the first of either
            gene, sample, value = _first_cell(failed, raw)
            if pd.isna(value) or str(value).strip() in _NA_STRINGS:
                raise DegflowInputError(f"{path}: missing value (NA/empty) for gene {gene!r}, sample {sample!r}; "
                                        "counts must be complete: use 0 for genes with no reads, or fix the file")
            raise DegflowInputError(f"{path}: value {value!r} for gene {gene!r}, sample {sample!r} is not a number; "
                                    "count columns must hold only integers (move annotation columns out, or name "
                                    "the gene-name column with gene_name_column)")
        values = num.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values != np.floor(values))
        if bad.any():
            gene, sample, value = _first_cell(bad, raw)
            raise DegflowInputError(f"{path}: non-integer count {value} for gene {gene!r}, sample {sample!r}; "
                                    f"{hint}")
    neg = values < 0
    if neg.any():
        gene, sample, value = _first_cell(neg, raw)
        raise DegflowInputError(f"{path}: negative count {value} for gene {gene!r}, sample {sample!r}; counts "
                                "must be >= 0 (is this a normalised or log-transformed table? give raw counts)")
    out = pd.DataFrame(values.astype(np.int64, copy=False), index=pd.Index(raw.index.astype(str), name="gene_id"),
                       columns=[str(c) for c in raw.columns], copy=False)
    return out


def _check_header(columns: Sequence[str], path: Path) -> None:
    cols = [str(c) for c in columns]
    seen: set[str] = set()
    for c in cols[1:]:
        if c in seen:
            raise DegflowInputError(f"{path}: sample column {c!r} appears more than once in the header; "
                                    "sample names must be unique")
        seen.add(c)


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
    with _open_text(path) as fh:
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
    _check_exists(path)
    if path.is_dir():
        return _sniff_dir(path), True
    if _strip_compression(path.name).endswith(".h5"):
        return "kallisto", True
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(b"\x89HDF"):
        return "kallisto", True
    line = _first_line(path)
    if line is None:
        raise DegflowInputError(f"{path}: the file is empty; expected a count table")
    fields = line.split("\t")
    if line.startswith("# Program:featureCounts") or fields[:6] == _FC_ANNOTATION:
        return "featurecounts", True
    if fields[0] == "N_unmapped":
        return "star", True
    if fields[:5] == _SALMON_HEADER or fields[:4] == ["Name", "Length", "TPM", "NumReads"]:
        return "salmon", True
    if fields[:1] == ["target_id"] and "est_counts" in fields:
        return "kallisto", True
    if fields[:2] in (["gene_id", "transcript_id(s)"], ["transcript_id", "gene_id"]) and "expected_count" in fields:
        return "rsem", True
    # HTSeq writes no header: its first row ends with a count (after the ID and any --additional-attr
    # columns). Only then scan the file for its __ rows (a full read, which a matrix whose header ends
    # with a sample name is spared).
    if len(fields) >= 2 and _is_number(fields[-1]) and _has_htseq_specials(path):
        return "htseq", True
    if line.startswith("#"):
        with _open_text(path) as fh:
            line = next((ln.rstrip("\r\n") for ln in fh if ln.strip() and not ln.startswith("#")), line)
    sep = "," if line.count(",") > line.count("\t") else "\t"
    cells = line.split(sep)
    if len(cells) >= 2 and not line.startswith("#"):
        if all(_is_number(c) for c in cells[1:] if c.strip()):
            return "htseq", False  # header-less "gene<TAB>count" without HTSeq's __ rows
        return "matrix", False
    raise DegflowInputError(f"{path}: unrecognised count format; known formats are {', '.join(FORMATS)} "
                            f"(first line: {_show(line)}); set format: explicitly or give a tab-separated table "
                            "of gene IDs and counts")


# ----------------------------------------------------------------------------------------------
# matrix
# ----------------------------------------------------------------------------------------------


def _read_matrix(path: Path, *, gene_name_column: str | None, sep: str | None) -> CountTable:
    line = _first_line(path)
    if line is None:
        raise DegflowInputError(f"{path}: the file is empty; expected a header row (gene_id, sample names) "
                                "and one row per gene")
    skip = 0
    second = ""
    with _open_text(path) as fh:
        for ln in fh:
            if ln.startswith("#") or not ln.strip():
                skip += 1
                continue
            line = ln.rstrip("\r\n")
            second = next(fh, "").rstrip("\r\n")
            break
    sep = sep or _guess_sep(path, line)
    if second and len(second.split(sep)) == len(line.split(sep)) + 1:
        # R's write.table(row.names = TRUE) leaves the gene ID column out of the header
        header = ["gene_id", *(c.strip('"') for c in line.split(sep))]
    else:
        header = [str(c) for c in _read_table(path, sep=sep, header=None, skiprows=skip, nrows=1).iloc[0]]
    _check_header(header, path)
    if len(header) < 2:
        raise DegflowInputError(f"{path}: no sample columns found (header {_show(line)}); a count matrix needs a "
                                f"gene ID column followed by one count column per sample (separator used: {sep!r})")
    table = _read_int_body(path, sep=sep, skiprows=skip + 1, header=header, name_column=gene_name_column)
    if table is None and not second.strip():
        raise DegflowInputError(f"{path}: no gene rows found; the file has a header but no counts")
    if table is None:  # something is not a plain integer: read as text so the message can name the cell
        table = _read_table(path, sep=sep, header=None, skiprows=skip + 1)
        if table.shape[1] != len(header):
            raise DegflowInputError(f"{path}: the header has {len(header)} fields but the rows have "
                                    f"{table.shape[1]}; check the separator and that every row has a gene ID")
        table.columns = header
        table = table.set_index(header[0])
    names: pd.Series | None = None
    if gene_name_column is not None:
        if gene_name_column not in table.columns:
            raise DegflowInputError(f"{path}: gene_name_column {gene_name_column!r} is not in the header "
                                    f"({', '.join(header[:6])}...); give one of the header's column names")
        names = table.pop(gene_name_column)
    elif table.shape[1] >= 2 and str(table.columns[0]).lower() in _GENE_NAME_COLUMNS:
        col = table.columns[0]
        if not all(_is_number(v) for v in table[col].head(1000) if v.strip()):
            names = table.pop(col)
            logger.info("%s: column %r read as gene names", path, col)
    counts = _as_int_counts(table, path)
    if names is not None:
        names = names.replace("", np.nan)
        names.index = counts.index
        names.name = "gene_name"
    return CountTable(counts=counts, gene_names=names, qc=None, format="matrix",
                      source={"files": {"matrix": str(path)}, "separator": sep})


# ----------------------------------------------------------------------------------------------
# featureCounts
# ----------------------------------------------------------------------------------------------


def _strip_bam_suffixes(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for suf in _BAM_SUFFIXES:
            if name.endswith(suf) and len(name) > len(suf):
                name = name[: -len(suf)]
                changed = True
    return name.rstrip("._-")


def _bam_sample_names(headers: Sequence[str]) -> dict[str, str]:
    """Sample name -> BAM header: basename minus ``.bam`` and aligner suffixes, else the folder name."""
    paths = [PurePosixPath(h.replace("\\", "/")) for h in headers]
    for candidate in ([_strip_bam_suffixes(p.name) if p.name.endswith(".bam") else p.name for p in paths],
                      [p.parent.name for p in paths],
                      list(headers)):
        if all(candidate) and len(set(candidate)) == len(candidate):
            return dict(zip(candidate, headers, strict=True))
    raise DegflowInputError(f"featureCounts sample columns cannot be told apart: {list(headers)}")


def _featurecounts_provenance(comment: str) -> dict[str, Any]:
    info: dict[str, Any] = {"command": comment.lstrip("# ").strip()}
    m = re.search(r"featureCounts v(\S+?);", comment)
    if m:
        info["version"] = m.group(1)
    args = re.findall(r'"([^"]*)"', comment)
    if "-s" in args:
        value = args[args.index("-s") + 1]
        info["strandedness"] = {"0": "unstranded", "1": "forward", "2": "reverse"}.get(value, value)
    elif args:
        info["strandedness"] = "unstranded"
    if args:
        info["paired_end"] = "-p" in args
    return info


def _read_featurecounts(path: Path) -> CountTable:
    skip = 0
    comment = ""
    with _open_text(path) as fh:
        for ln in fh:
            if not ln.startswith("#"):
                break
            comment = comment or ln.rstrip("\r\n")
            skip += 1
    table = _read_table(path, sep="\t", header=0, skiprows=skip)
    if list(table.columns[:6]) != _FC_ANNOTATION or table.shape[1] < 7:
        raise DegflowInputError(f"{path}: not a featureCounts table: expected the columns "
                                f"{' '.join(_FC_ANNOTATION)} followed by one column per BAM, got "
                                f"{' '.join(map(str, table.columns[:7]))}")
    headers = [str(c) for c in table.columns[6:]]
    _check_header(["Geneid", *headers], path)
    bam_names = _bam_sample_names(headers)
    raw = table.set_index("Geneid")[headers]
    raw.columns = list(bam_names)
    counts = _as_int_counts(raw, path, hint="featureCounts wrote fractional counts (run with -M/-O --fraction?); "
                                             "re-run featureCounts without --fraction")
    source: dict[str, Any] = {"files": {s: str(path) for s in bam_names}, "bam_names": bam_names,
                              **_featurecounts_provenance(comment)}
    qc = pd.DataFrame({"assigned": counts.sum(axis=0)})
    # featureCounts writes <out>.summary; the counts may have been gzipped since (counts.txt.gz)
    candidates = dict.fromkeys(path.with_name(n + suf) for n in (path.name, _strip_compression(path.name))
                               for suf in (".summary", ".summary.gz"))
    summary = next((c for c in candidates if c.exists()), path.with_name(path.name + ".summary"))
    if summary.exists():
        stats = _read_featurecounts_summary(summary, bam_names)
        if stats is not None:
            qc = stats
            source["summary"] = str(summary)
    qc.index.name = "sample"
    return CountTable(counts=counts, gene_names=None, qc=qc, format="featurecounts", source=source)


def _read_featurecounts_summary(path: Path, bam_names: Mapping[str, str]) -> pd.DataFrame | None:
    table = _read_table(path).set_index("Status")
    by_header = {h: s for s, h in bam_names.items()}
    missing = [h for h in by_header if h not in table.columns]
    if missing:
        logger.warning("%s: summary columns do not match the counts file's BAM columns (missing %r); qc holds only "
                       "the assigned counts - use the .summary written by the same featureCounts run", path,
                       missing[0])
        return None
    stats = table[list(by_header)].apply(pd.to_numeric).T
    stats.index = [by_header[h] for h in stats.index]
    stats = stats.rename(columns={"Assigned": "assigned"}).astype(np.int64)
    stats["assignment_rate"] = stats["assigned"] / stats.sum(axis=1)
    stats.index.name = "sample"
    stats.columns.name = None
    return stats


# ----------------------------------------------------------------------------------------------
# HTSeq-count
# ----------------------------------------------------------------------------------------------


def _read_htseq(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series | None, list[str] | None]:
    """Counts (genes x count columns, int64), QC (count columns x specials), names, header names."""
    table = _read_table(path, sep="\t", header=None)
    if table.shape[1] < 2:
        raise DegflowInputError(f"{path}: HTSeq-count output needs at least 2 tab-separated columns (gene ID, "
                                f"count), found {table.shape[1]}")
    ids = table.iloc[:, 0].astype(str)
    header_names: list[str] | None = None
    if not _is_number(str(table.iat[0, table.shape[1] - 1])):
        header_names = [str(c) for c in table.iloc[0]]
        table, ids = table.iloc[1:], ids.iloc[1:]
    bare = ids.str.removeprefix("__")
    special = bare.isin(_HTSEQ_SPECIAL) & (ids.str.startswith("__") | ~ids.str.startswith("_"))
    n_cols = table.shape[1] - 1
    present = set(bare[special])
    missing = [name for name in _HTSEQ_SPECIAL if name not in present]
    if missing:
        what = "has none of" if len(missing) == len(_HTSEQ_SPECIAL) else f"lacks {len(missing)} of"
        raise DegflowInputError(
            f"{path}: {what} htseq-count's 5 summary rows (missing __{', __'.join(missing)}); htseq-count "
            "always ends its output with them (they go to QC, and without them this may not be htseq-count "
            "output at all): give the unmodified htseq-count file, or merge the samples into one table with a "
            "header row and use format: matrix")
    first = table[special.to_numpy()].iloc[0, 1:]
    n_counts = int((first.astype(str).str.strip() != "").sum())
    n_counts = max(1, min(n_counts, n_cols))
    count_cols = list(range(table.shape[1] - n_counts, table.shape[1]))
    attr_cols = list(range(1, table.shape[1] - n_counts))
    genes = table[~special.to_numpy()]
    raw = genes.iloc[:, count_cols]
    raw.index = pd.Index(ids[~special].to_numpy())
    raw.columns = [f"count_{i + 1}" for i in range(n_counts)]
    counts = _as_int_counts(raw, path, hint="HTSeq-count writes integer counts; check that this file is "
                                             "unmodified htseq-count output")
    specials = table[special.to_numpy()]
    qc = pd.DataFrame({"assigned": counts.sum(axis=0)})
    for _, row in specials.iterrows():
        key = "__" + str(row.iloc[0]).removeprefix("__")
        qc[key] = [int(float(row.iloc[c])) for c in count_cols]
    if special.any():
        qc["assignment_rate"] = qc["assigned"] / qc.sum(axis=1)
    names = None
    if attr_cols:
        names = genes.iloc[:, attr_cols[0]].replace("", np.nan)
        names.index = counts.index
        names.name = "gene_name"
    if header_names is not None:
        header_names = [header_names[c] for c in count_cols]
    return counts, qc, names, header_names


# ----------------------------------------------------------------------------------------------
# STAR ReadsPerGene.out.tab
# ----------------------------------------------------------------------------------------------


def _infer_strandedness(forward: float, reverse: float) -> tuple[str, float, float]:
    """nf-core/rnaseq's ``calculateStrandedness`` applied to STAR's column 3 and 4 gene totals."""
    total = forward + reverse
    if total <= 0:
        return "undetermined", float("nan"), float("nan")
    f, r = forward / total, reverse / total
    if f >= STRANDED_THRESHOLD:
        return "forward", f, r
    if r >= STRANDED_THRESHOLD:
        return "reverse", f, r
    if abs(f - r) <= UNSTRANDED_THRESHOLD:
        return "unstranded", f, r
    return "undetermined", f, r


def _normalise_strandedness(value: str, what: str) -> str:
    v = str(value).strip().lower()
    v = _STRANDEDNESS_ALIASES.get(v, v)
    if v not in _STRANDEDNESS_VALUES:
        raise DegflowInputError(f"strandedness {value!r} for {what} is not one of {', '.join(_STRANDEDNESS_VALUES)}; "
                                "use forward (htseq -s yes, STAR column 3), reverse (-s reverse, column 4, dUTP/TruSeq "
                                "stranded kits) or unstranded (column 2)")
    return v


def _read_star(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Genes x (unstranded, forward, reverse) int64 counts and the N_* rows."""
    table = _read_table(path, sep="\t", header=None)
    if table.shape[1] != 4:
        raise DegflowInputError(f"{path}: STAR ReadsPerGene.out.tab has 4 columns (gene, unstranded, forward, "
                                f"reverse), found {table.shape[1]}")
    table = table.set_index(0)
    table.columns = ["unstranded", "forward", "reverse"]
    is_n = table.index.str.startswith("N_")
    specials = table[is_n]
    missing = [s for s in _STAR_SPECIAL if s not in specials.index]
    if missing:
        raise DegflowInputError(f"{path}: STAR ReadsPerGene.out.tab lacks the {missing[0]} row; give STAR's "
                                "unmodified --quantMode GeneCounts output")
    counts = _as_int_counts(table[~is_n], path, hint="STAR writes integer counts; check the file is unmodified")
    return counts, specials.astype(np.int64)


def _star_table(files: Mapping[str, Path], strandedness: str | Mapping[str, str]) -> CountTable:
    per_sample: dict[str, pd.Series] = {}
    qc_rows: dict[str, dict[str, float]] = {}
    evidence: dict[str, dict[str, Any]] = {}
    for sample, path in files.items():
        counts, specials = _read_star(path)
        if isinstance(strandedness, Mapping):
            if sample not in strandedness:
                raise DegflowInputError(f"strandedness has no entry for sample {sample!r}; give one of "
                                        f"{', '.join(_STRANDEDNESS_VALUES)} per sample, or a single value")
            wanted = _normalise_strandedness(strandedness[sample], f"sample {sample!r}")
        else:
            wanted = _normalise_strandedness(strandedness, "STAR counts")
        totals = counts.sum(axis=0)
        inferred, f_share, r_share = _infer_strandedness(float(totals["forward"]), float(totals["reverse"]))
        chosen = wanted
        if wanted in ("auto", "auto_or_unstranded"):
            chosen = "unstranded" if inferred == "undetermined" else inferred
            evidence_text = (f"column 3 (forward) holds {f_share:.3f} and column 4 (reverse) {r_share:.3f} of their "
                             f"gene counts: neither >= {STRANDED_THRESHOLD} nor within {UNSTRANDED_THRESHOLD} of "
                             "each other")
            if inferred == "undetermined" and wanted == "auto":
                raise DegflowInputError(
                    f"{path}: cannot infer the strandedness of sample {sample!r} ({evidence_text}); set "
                    "bulk.counts.strandedness to forward, reverse or unstranded from the library kit, or to "
                    "auto_or_unstranded to use the unstranded column 2 for such samples as nf-core/rnaseq does")
            if inferred == "undetermined":
                logger.warning("%s: strandedness undetermined (%s); using the unstranded column 2 as configured "
                               "(auto_or_unstranded) - check for genomic DNA contamination", path, evidence_text)
        elif inferred not in ("undetermined", wanted):
            logger.warning("%s: strandedness set to %s but the counts look %s (column 3 share %.3f); check the "
                           "library kit", path, wanted, inferred, f_share)
        per_sample[sample] = counts[chosen]
        evidence[sample] = {
            "chosen": chosen,
            "column": _STAR_COLUMN[chosen],
            "requested": wanted,
            "inferred": inferred,
            "forward_share": f_share,
            "reverse_share": r_share,
            "gene_totals": {k: int(v) for k, v in totals.items()},
            "N_noFeature": {k: int(v) for k, v in specials.loc["N_noFeature"].items()},
        }
        row = {s: int(specials.at[s, chosen]) for s in _STAR_SPECIAL}
        row["assigned"] = int(totals[chosen])
        row["assignment_rate"] = row["assigned"] / (row["assigned"] + sum(row[s] for s in _STAR_SPECIAL))
        qc_rows[sample] = row
    chosen_set = {e["chosen"] for e in evidence.values()}
    if len(chosen_set) > 1:
        logger.warning("STAR samples differ in strandedness: %s; each sample uses its own column - check that "
                       "the libraries really were prepared differently",
                       ", ".join(f"{s}={e['chosen']}" for s, e in evidence.items()))
    for sample, e in evidence.items():
        logger.info("%s: STAR strandedness %s (column %d; requested %s, inferred %s, column 3 share %.3f)",
                    sample, e["chosen"], e["column"], e["requested"], e["inferred"], e["forward_share"])
    counts = _combine(per_sample, files)
    qc = pd.DataFrame.from_dict(qc_rows, orient="index")[["assigned", *_STAR_SPECIAL, "assignment_rate"]]
    qc.index.name = "sample"
    source = {
        "files": {s: str(p) for s, p in files.items()},
        "strandedness": evidence,
        "strandedness_consistent": len(chosen_set) == 1,
        "strandedness_rule": (f"nf-core/rnaseq calculateStrandedness on STAR gene totals: forward if column 3 share "
                              f">= {STRANDED_THRESHOLD}, reverse if column 4 share >= {STRANDED_THRESHOLD}, "
                              f"unstranded if the shares differ by <= {UNSTRANDED_THRESHOLD}, else undetermined "
                              "(an error under auto, column 2 under auto_or_unstranded)"),
    }
    return CountTable(counts=counts, gene_names=None, qc=qc, format="star", source=source)


# ----------------------------------------------------------------------------------------------
# combining per-sample files
# ----------------------------------------------------------------------------------------------


def _combine(per_sample: Mapping[str, pd.Series], files: Mapping[str, Path]) -> pd.DataFrame:
    """Columns side by side; every sample must list the same genes (same annotation)."""
    samples = list(per_sample)
    first = per_sample[samples[0]].index
    for s in samples[1:]:
        idx = per_sample[s].index
        if len(idx) != len(first) or not idx.equals(first):
            if set(idx) != set(first):
                only_a = [g for g in first.difference(idx)[:3]]
                only_b = [g for g in idx.difference(first)[:3]]
                raise DegflowInputError(
                    f"{files[s]}: gene IDs differ from {files[samples[0]]} ({len(first.difference(idx))} only in "
                    f"{samples[0]!r}, e.g. {only_a}; {len(idx.difference(first))} only in {s!r}, e.g. {only_b}); "
                    "all samples must be counted against the same annotation")
    out = pd.DataFrame({s: per_sample[s].reindex(first) for s in samples})
    out.index.name = "gene_id"
    return out.astype(np.int64)


def _sample_name(path: Path, fmt: str) -> str:
    """Sample name implied by a per-sample file's path."""
    name = _strip_compression(path.name)
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
# transcript-level formats (salmon, kallisto, rsem isoforms) and tx2gene
# ----------------------------------------------------------------------------------------------


def _strip_versions(ids: pd.Index) -> pd.Index:
    return pd.Index(ids.astype(str).str.replace(_VERSION_RE, "", regex=True))


def _parse_gtf(path: Path, keys: Sequence[str], features: Sequence[str] | None = None) -> pd.DataFrame:
    """GTF rows (feature type + the requested attributes), comment lines skipped."""
    try:
        gtf = pd.read_csv(path, sep="\t", header=None, names=range(9), usecols=[2, 8], dtype=str,
                          keep_default_na=False, quoting=3, compression="gzip" if _is_gzip(path) else None)
    except pd.errors.ParserError as exc:
        raise DegflowInputError(f"{path}: cannot be parsed as a GTF ({str(exc).strip().splitlines()[-1]})") from None
    gtf = gtf[gtf[8] != ""]
    if features is not None:
        gtf = gtf[gtf[2].isin(features)]
    out = pd.DataFrame({"feature": gtf[2].to_numpy()})
    for key in keys:
        out[key] = gtf[8].str.extract(rf'(?:^|;)\s*{re.escape(key)} "([^"]*)"', expand=False).to_numpy()
    return out


def _looks_like_gtf(path: Path) -> bool:
    if _strip_compression(path.name).lower().endswith(".gtf"):
        return True
    with _open_text(path) as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            return len(fields) == 9 and 'gene_id "' in fields[8]
    return False


def read_tx2gene(tx2gene: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a transcript -> gene map.

    Parameters
    ----------
    tx2gene
        A DataFrame, a GTF (transcript/exon lines with ``transcript_id`` and ``gene_id``
        attributes; ``gene_name`` kept when present), or a TSV/CSV with columns ``transcript_id``,
        ``gene_id`` [, ``gene_name``] (aliases ``TXNAME``/``GENEID``, ``tx``/``gene``, ``symbol``
        accepted). A file with no header is read as transcript, gene [, gene name] (the layout of
        nf-core/rnaseq's ``tx2gene.tsv``).

    Returns
    -------
    pd.DataFrame
        Columns ``transcript_id``, ``gene_id`` and, when available, ``gene_name``; one row per
        transcript (exact duplicate rows dropped); ``attrs["path"]`` names the source.

    Raises
    ------
    DegflowInputError
        Missing columns, or a transcript mapped to two different genes.
    """
    label = "tx2gene table"
    if isinstance(tx2gene, pd.DataFrame):
        table = tx2gene.copy()
        table.columns = [str(c) for c in table.columns]
    else:
        path = Path(tx2gene)
        label = str(path)
        _check_exists(path, "tx2gene file")
        if _looks_like_gtf(path):
            gtf = _parse_gtf(path, ["transcript_id", "gene_id", "gene_name"])
            gtf = gtf[gtf["transcript_id"].notna() & gtf["gene_id"].notna()]
            if gtf.empty:
                raise DegflowInputError(f"{path}: GTF has no lines with both transcript_id and gene_id attributes; "
                                        "give the GTF used to build the salmon/kallisto index")
            table = gtf.drop(columns="feature").drop_duplicates("transcript_id")
            if table["gene_name"].isna().all():
                table = table.drop(columns="gene_name")
        else:
            line = _first_line(path)
            if line is None:
                raise DegflowInputError(f"{path}: the tx2gene file is empty")
            sep = _guess_sep(path, line)
            table = _read_table(path, sep=sep)
            lower = {c.lower(): c for c in table.columns}
            tx_col = next((lower[k] for k in ("transcript_id", "txname", "tx_id", "tx", "transcript", "target_id")
                           if k in lower), None)
            gene_col = next((lower[k] for k in ("gene_id", "geneid", "gene") if k in lower), None)
            if tx_col is None or gene_col is None:
                if table.shape[1] in (2, 3):
                    table = _read_table(path, sep=sep, header=None)
                    table.columns = ["transcript_id", "gene_id", "gene_name"][: table.shape[1]]
                    tx_col, gene_col = "transcript_id", "gene_id"
                else:
                    raise DegflowInputError(f"{path}: tx2gene needs columns transcript_id and gene_id (found "
                                            f"{', '.join(map(str, table.columns[:6]))}); give a TSV with those "
                                            "columns or the annotation GTF")
            name_col = next((lower[k] for k in _GENE_NAME_COLUMNS if k in lower), None)
            rename = {tx_col: "transcript_id", gene_col: "gene_id"}
            if name_col is not None:
                rename[name_col] = "gene_name"
            table = table.rename(columns=rename)
    if not {"transcript_id", "gene_id"} <= set(table.columns):
        raise DegflowInputError(f"{label}: tx2gene needs columns transcript_id and gene_id")
    keep = [c for c in ("transcript_id", "gene_id", "gene_name") if c in table.columns]
    table = table[keep].astype({"transcript_id": str, "gene_id": str}).drop_duplicates(["transcript_id", "gene_id"])
    table = table.reset_index(drop=True)
    table.attrs["path"] = label
    return table


def _dedupe_tx2gene(t2g: pd.DataFrame, label: str) -> pd.DataFrame:
    t2g = t2g.drop_duplicates(["transcript_id", "gene_id"])
    dup = t2g["transcript_id"].duplicated(keep=False)
    if dup.any():
        tx = t2g.loc[dup, "transcript_id"].iloc[0]
        genes = t2g.loc[t2g["transcript_id"] == tx, "gene_id"].tolist()[:3]
        raise DegflowInputError(f"{label}: transcript {tx!r} maps to several genes ({', '.join(genes)}); each "
                                "transcript needs exactly one gene (after version stripping, check for _PAR_Y copies)")
    return t2g


def _match_transcripts(tx_ids: pd.Index, t2g: pd.DataFrame, quant_label: str
                       ) -> tuple[pd.Series, pd.DataFrame, dict[str, Any]]:
    """Gene of each quantified transcript (NaN when unmapped), the map used and what was done."""
    t2g_label = str(t2g.attrs.get("path", "tx2gene table"))
    info: dict[str, Any] = {"ids_bar_split": False, "ids_version_stripped": False}
    ids = pd.Index(tx_ids.astype(str))
    if ids.str.contains("|", regex=False).any() and not t2g["transcript_id"].str.contains("|", regex=False).any():
        ids = pd.Index(ids.str.split("|").str[0])
        info["ids_bar_split"] = True
        logger.info("%s: transcript names carry '|'-joined fields (salmon without --gencode); kept the part "
                    "before the first '|'", quant_label)
    t2g = _dedupe_tx2gene(t2g, t2g_label)
    direct = int(ids.isin(t2g["transcript_id"]).sum())
    matched = direct
    if direct < len(ids):
        s_ids = _strip_versions(ids)
        s_map = t2g.assign(transcript_id=_strip_versions(pd.Index(t2g["transcript_id"])))
        stripped = int(s_ids.isin(s_map["transcript_id"]).sum())
        if stripped > direct:
            s_map = _dedupe_tx2gene(s_map, f"{t2g_label} (version suffixes removed)")
            logger.warning("transcript IDs in %s and %s differ in version suffixes (e.g. %r vs %r); removed the "
                           "versions on both sides: %d of %d transcripts now match (%d before)", quant_label,
                           t2g_label, str(ids[0]), str(t2g["transcript_id"].iloc[0]), stripped, len(ids), direct)
            ids, t2g, matched = s_ids, s_map, stripped
            info["ids_version_stripped"] = True
    if matched == 0:
        raise DegflowInputError(
            f"none of the {len(ids)} transcript IDs in {quant_label} are in the tx2gene {t2g_label}, also after "
            f"removing version suffixes (quantified IDs look like {', '.join(map(repr, ids[:2]))}; tx2gene IDs look "
            f"like {', '.join(map(repr, t2g['transcript_id'].iloc[:2]))}); give the tx2gene/GTF of the annotation "
            "the index was built from")
    gene = pd.Series(ids.map(t2g.set_index("transcript_id")["gene_id"]), index=ids)
    info["n_transcripts"] = len(ids)
    info["n_unmapped"] = int(gene.isna().sum())
    return gene, t2g, info


def _read_salmon(path: Path) -> tuple[pd.DataFrame, dict[str, Any], Path]:
    if path.is_dir():
        path = next((path / n for n in ("quant.sf", "quant.sf.gz") if (path / n).exists()), path / "quant.sf")
    _check_exists(path, "salmon quant.sf")
    table = _read_table(path)
    if "NumReads" not in table.columns or "Name" not in table.columns:
        raise DegflowInputError(f"{path}: not a salmon quant.sf (columns {' '.join(table.columns[:5])}); expected "
                                f"{' '.join(_SALMON_HEADER)}")
    length_col = "EffectiveLength" if "EffectiveLength" in table.columns else "Length"
    tx = pd.DataFrame({"counts": table["NumReads"], "length": table[length_col], "abundance": table["TPM"]})
    tx.index = pd.Index(table["Name"].to_numpy())
    qc: dict[str, Any] = {}
    meta = path.parent / "aux_info" / "meta_info.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        qc = {k: info[k] for k in ("num_processed", "num_mapped", "percent_mapped") if k in info}
        qc["_about"] = {"salmon_version": info.get("salmon_version"),
                        "library_types": ",".join(info.get("library_types", []))}
    return tx, qc, path


def _read_kallisto(path: Path) -> tuple[pd.DataFrame, dict[str, Any], Path]:
    if path.is_dir():
        path = next((path / n for n in ("abundance.h5", "abundance.tsv", "abundance.tsv.gz") if (path / n).exists()),
                    path / "abundance.h5")
    _check_exists(path, "kallisto abundance file")
    with open(path, "rb") as fh:
        is_h5 = fh.read(4) == b"\x89HDF"
    if is_h5:
        import h5py

        with h5py.File(path, "r") as h5:
            for key in ("est_counts", "aux/ids", "aux/eff_lengths"):
                if key not in h5:
                    raise DegflowInputError(f"{path}: kallisto abundance.h5 lacks {key!r}; give kallisto's "
                                            "unmodified output")
            ids = h5["aux/ids"][:].astype(str)
            counts = h5["est_counts"][:].astype(np.float64)
            length = h5["aux/eff_lengths"][:].astype(np.float64)
        rate = np.divide(counts, length, out=np.zeros_like(counts), where=length > 0)
        tpm = rate / rate.sum() * 1e6 if rate.sum() > 0 else rate
        tx = pd.DataFrame({"counts": counts, "length": length, "abundance": tpm}, index=pd.Index(ids))
    else:
        table = _read_table(path)
        if not {"target_id", "est_counts", "eff_length", "tpm"} <= set(table.columns):
            raise DegflowInputError(f"{path}: not a kallisto abundance.tsv (columns "
                                    f"{' '.join(table.columns[:5])}); expected {' '.join(_KALLISTO_HEADER)}")
        tx = pd.DataFrame({"counts": table["est_counts"], "length": table["eff_length"], "abundance": table["tpm"]})
        tx.index = pd.Index(table["target_id"].to_numpy())
    qc: dict[str, Any] = {}
    run_info = path.parent / "run_info.json"
    if run_info.exists():
        info = json.loads(run_info.read_text())
        qc = {"num_processed": info.get("n_processed"), "num_mapped": info.get("n_pseudoaligned"),
              "percent_mapped": info.get("p_pseudoaligned"),
              "_about": {"kallisto_version": info.get("kallisto_version")}}
    return tx, qc, path


def _rsem_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(p for p in path.iterdir()
                       if p.name.endswith((".genes.results", ".genes.results.gz")))
        found = found or sorted(p for p in path.iterdir()
                                if p.name.endswith((".isoforms.results", ".isoforms.results.gz")))
        if len(found) != 1:
            raise DegflowInputError(f"{path}: expected exactly one RSEM *.genes.results file in the folder, found "
                                    f"{len(found)}; give the file itself")
        path = found[0]
    _check_exists(path, "RSEM results file")
    return path


def _read_rsem(path: Path) -> tuple[pd.DataFrame, bool, Path]:
    """(table with counts/length/abundance[/gene_id], gene_level, path)."""
    path = _rsem_file(path)
    table = _read_table(path)
    cols = list(table.columns)
    if cols[:2] == ["gene_id", "transcript_id(s)"]:
        gene_level = True
        idx = table["gene_id"]
    elif cols[:2] == ["transcript_id", "gene_id"]:
        gene_level = False
        idx = table["transcript_id"]
    else:
        raise DegflowInputError(f"{path}: not an RSEM *.genes.results / *.isoforms.results file (columns "
                                f"{' '.join(cols[:5])})")
    for col in ("expected_count", "effective_length", "TPM"):
        if col not in table.columns:
            raise DegflowInputError(f"{path}: RSEM results lack the {col!r} column")
    out = pd.DataFrame({"counts": table["expected_count"], "length": table["effective_length"],
                        "abundance": table["TPM"]})
    if not gene_level:
        out["gene_id"] = table["gene_id"].to_numpy()
    out.index = pd.Index(idx.to_numpy())
    return out, gene_level, path


def _numeric(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> pd.DataFrame:
    out = frame.copy()
    for col in columns:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            pos = int(np.argmax(bad))
            raise DegflowInputError(f"{path}: {col} value {frame[col].iat[pos]!r} for {frame.index[pos]!r} is "
                                    "missing or not a number; give the quantifier's unmodified output")
        if (values < 0).any():
            pos = int(np.argmax((values < 0).to_numpy()))
            raise DegflowInputError(f"{path}: negative {col} {values.iat[pos]} for {frame.index[pos]!r}; "
                                    "estimated counts must be >= 0")
        out[col] = values.astype(np.float64)
    return out


def _summarize_to_gene(tx: Mapping[str, pd.DataFrame], genes: pd.Series
                       ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """tximport ``summarizeToGene`` with ``countsFromAbundance="no"``: counts, lengths, abundance per gene.

    ``genes`` is the gene of each transcript (same order as every ``tx`` frame; NaN = unmapped,
    dropped). Counts and abundances are summed per gene; the length is the abundance-weighted mean
    transcript length, and where a gene has zero abundance in a sample it is the geometric mean of
    its lengths in the other samples, or the plain mean of its transcripts' lengths when it is zero
    everywhere (tximport's ``replaceMissingLength``). Genes keep their first-seen order.
    """
    keep = genes.notna().to_numpy()
    gene_ids = genes.to_numpy()[keep].astype(str)
    codes, uniques = pd.factorize(gene_ids)
    n_genes = len(uniques)
    samples = list(tx)

    def rowsum(values: np.ndarray) -> np.ndarray:
        out = np.zeros((n_genes, values.shape[1]))
        for j in range(values.shape[1]):
            out[:, j] = np.bincount(codes, weights=values[:, j], minlength=n_genes)
        return out

    counts_tx = np.column_stack([tx[s]["counts"].to_numpy()[keep] for s in samples])
    length_tx = np.column_stack([tx[s]["length"].to_numpy()[keep] for s in samples])
    abund_tx = np.column_stack([tx[s]["abundance"].to_numpy()[keep] for s in samples])
    counts = rowsum(counts_tx)
    abundance = rowsum(abund_tx)
    weighted = rowsum(abund_tx * length_tx)
    with np.errstate(invalid="ignore", divide="ignore"):
        length = weighted / abundance
    missing = ~np.isfinite(length)
    if missing.any():
        ave_gene = np.bincount(codes, weights=length_tx.mean(axis=1), minlength=n_genes) / np.bincount(
            codes, minlength=n_genes)
        for i in np.nonzero(missing.any(axis=1))[0]:
            row = length[i]
            ok = np.isfinite(row) & (row > 0)
            row[~np.isfinite(row)] = np.exp(np.log(row[ok]).mean()) if ok.any() else ave_gene[i]
    index = pd.Index(uniques, name="gene_id")
    return (pd.DataFrame(counts, index=index, columns=samples), pd.DataFrame(length, index=index, columns=samples),
            pd.DataFrame(abundance, index=index, columns=samples))


#: What each tximport ``countsFromAbundance`` option does (kept in ``CountTable.source["summarization"]``).
_SUMMARIZATION = {
    "no": "tximport countsFromAbundance='no': estimated counts summed per gene; lengths = abundance-weighted mean "
          "transcript length, passed to DESeq2 as normalisation factors (DESeqDataSetFromTximport)",
    "scaledTPM": "tximport countsFromAbundance='scaledTPM': gene TPM scaled to each sample's estimated-count total; "
                 "no length offset",
    "lengthScaledTPM": "tximport countsFromAbundance='lengthScaledTPM': gene TPM x the gene's mean length over "
                       "samples, scaled to each sample's estimated-count total; no length offset",
}
COUNTS_FROM_ABUNDANCE: tuple[str, ...] = tuple(_SUMMARIZATION)


def _counts_from_abundance(counts: pd.DataFrame, abundance: pd.DataFrame, lengths: pd.DataFrame,
                           how: str) -> pd.DataFrame:
    """tximport's ``makeCountsFromAbundance``: counts re-made from gene abundances (TPM).

    ``scaledTPM`` uses the TPM, ``lengthScaledTPM`` the TPM times the gene's mean length over
    samples (``rowMeans(lengthMat)``, after the missing lengths were filled in); either is then
    scaled so that each sample keeps its total of estimated counts (``colSums(countsMat)``).
    """
    new = abundance.to_numpy() * (lengths.to_numpy().mean(axis=1, keepdims=True) if how == "lengthScaledTPM" else 1.0)
    totals = counts.to_numpy().sum(axis=0)
    new_sums = new.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = new * (totals / new_sums)
    scaled[:, new_sums == 0] = 0.0
    return pd.DataFrame(scaled, index=counts.index, columns=counts.columns)


def _report_unmapped(gene_of: pd.Series, tx: Mapping[str, pd.DataFrame], qc_rows: dict[str, dict[str, Any]],
                     source: dict[str, Any], quant_label: str, t2g_label: str) -> None:
    """Warn how many transcripts, and how many of each sample's estimated reads, tx2gene drops."""
    missing = gene_of.isna().to_numpy()
    unmapped = gene_of.index[missing]
    samples = list(tx)
    lost = {s: float(tx[s]["counts"].to_numpy()[missing].sum()) for s in samples}
    total = {s: float(tx[s]["counts"].to_numpy().sum()) for s in samples}
    with_reads = int((np.column_stack([tx[s]["counts"].to_numpy()[missing] for s in samples]) > 0).any(axis=1).sum())
    frac = {s: (lost[s] / total[s] if total[s] > 0 else 0.0) for s in samples}
    worst = max(frac, key=frac.get)
    for s in samples:
        qc_rows[s]["tx2gene_unmapped_reads"] = lost[s]
        qc_rows[s]["tx2gene_unmapped_fraction"] = frac[s]
    logger.warning("%d of %d transcripts in %s have no gene in %s (e.g. %s), %d of them with reads: dropped them, "
                   "losing %.0f estimated reads in total (up to %.2f%% of a sample's reads, in %s); give the tx2gene "
                   "of the annotation the index was built from if that is too many", len(unmapped), len(gene_of),
                   quant_label, t2g_label, ", ".join(map(str, unmapped[:3])), with_reads, sum(lost.values()),
                   100 * frac[worst], worst)
    source["unmapped_transcripts"] = {"n": len(unmapped), "n_with_reads": with_reads,
                                      "examples": [str(u) for u in unmapped[:5]], "estimated_reads_dropped": lost,
                                      "fraction_dropped": frac}


def _round_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Round estimated counts as DESeq2's ``DESeqDataSetFromTximport`` does (``round()``, half to even)."""
    return pd.DataFrame(np.rint(counts.to_numpy()).astype(np.int64), index=counts.index, columns=counts.columns)


def _transcript_table(files: Mapping[str, Path], fmt: str, tx2gene: str | Path | pd.DataFrame | None,
                      counts_from_abundance: str = "no") -> CountTable:
    tx: dict[str, pd.DataFrame] = {}
    qc_rows: dict[str, dict[str, Any]] = {}
    paths: dict[str, Path] = {}
    gene_level: bool | None = None
    own_genes: pd.Series | None = None
    about: dict[str, dict[str, Any]] = {}
    for sample, path in files.items():
        if fmt == "salmon":
            table, qc, real = _read_salmon(path)
            level = False
        elif fmt == "kallisto":
            table, qc, real = _read_kallisto(path)
            level = False
        else:
            table, level, real = _read_rsem(path)
            qc = {}
            if not level:
                own_genes = table["gene_id"]
        if gene_level is not None and level != gene_level:
            raise DegflowInputError(f"{real}: mixes RSEM gene-level and isoform-level files; give *.genes.results "
                                    "for every sample (or *.isoforms.results for every sample)")
        gene_level = level
        tx[sample] = _numeric(table, real, ["counts", "length", "abundance"])
        if "_about" in qc:
            about[sample] = qc.pop("_about")
        qc_rows[sample] = qc
        paths[sample] = real
    samples = list(tx)
    first = tx[samples[0]].index
    for s in samples[1:]:
        if not tx[s].index.equals(first) and tx[s].index.is_unique and set(tx[s].index) == set(first):
            tx[s] = tx[s].reindex(first)
        if not tx[s].index.equals(first):
            diff = first.symmetric_difference(tx[s].index)[:3]
            raise DegflowInputError(f"{paths[s]}: lists different {'genes' if gene_level else 'transcripts'} than "
                                    f"{paths[samples[0]]} (e.g. {list(diff)}); all samples must be quantified "
                                    "against the same index")
    source: dict[str, Any] = {"files": {s: str(p) for s, p in paths.items()},
                              "rounding": "round half to even of the (estimated or abundance-derived) counts, "
                                          "as DESeq2 DESeqDataSetFromTximport"}
    if about:
        source["quantifier"] = about
    names: pd.Series | None = None
    source["counts_from_abundance"] = counts_from_abundance
    if gene_level:
        if counts_from_abundance != "no":
            raise DegflowInputError(f"{paths[samples[0]]}: RSEM *.genes.results are gene level, and "
                                    f"counts_from_abundance {counts_from_abundance} needs transcript-level input (as in "
                                    "tximport); give the *.isoforms.results files or use counts_from_abundance: no")
        _check_index(first, paths[samples[0]])
        est = pd.DataFrame({s: tx[s]["counts"] for s in samples})
        lengths = pd.DataFrame({s: tx[s]["length"].clip(lower=1.0) for s in samples})
        est.index.name = lengths.index.name = "gene_id"
        if tx2gene is not None:
            logger.info("RSEM *.genes.results are gene level already; tx2gene is not used")
        source["level"] = "gene"
    else:
        if tx2gene is None and own_genes is not None:
            t2g = pd.DataFrame({"transcript_id": first.astype(str), "gene_id": own_genes.astype(str).to_numpy()})
            t2g.attrs["path"] = f"{paths[samples[0]]} (gene_id column)"
        elif tx2gene is None:
            raise DegflowInputError(f"{paths[samples[0]]}: {fmt} quantifies transcripts; give tx2gene (a TSV with "
                                    "transcript_id and gene_id columns, or the GTF the index was built from) to sum "
                                    "them per gene")
        else:
            t2g = read_tx2gene(tx2gene)
        gene_of, t2g_used, info = _match_transcripts(first, t2g, str(paths[samples[0]]))
        if info["n_unmapped"]:
            _report_unmapped(gene_of, tx, qc_rows, source, str(paths[samples[0]]),
                             str(t2g.attrs.get("path", "tx2gene")))
        est, lengths, abundance = _summarize_to_gene(tx, gene_of)
        if counts_from_abundance != "no":
            est = _counts_from_abundance(est, abundance, lengths, counts_from_abundance)
            lengths = None
        source.update({"tx2gene": str(t2g.attrs.get("path", "tx2gene table")), "level": "transcript",
                       "ids_version_stripped": info["ids_version_stripped"], "ids_bar_split": info["ids_bar_split"],
                       "summarization": _SUMMARIZATION[counts_from_abundance]})
        if "gene_name" in t2g_used.columns:
            names = t2g_used.drop_duplicates("gene_id").set_index("gene_id")["gene_name"].reindex(est.index)
            names = names.replace("", np.nan)
            names.name = "gene_name"
    counts = _round_counts(est)
    counts.index.name = "gene_id"
    qc = pd.DataFrame.from_dict(qc_rows, orient="index").reindex(samples)
    qc.insert(0, "assigned", counts.sum(axis=0))
    if "num_mapped" in qc.columns and "num_processed" in qc.columns:
        qc["assignment_rate"] = qc["num_mapped"].astype(float) / qc["num_processed"].astype(float)
    qc.index.name = "sample"
    return CountTable(counts=counts, gene_names=names, qc=qc, format=fmt, source=source, lengths=lengths)


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
        transcript -> gene map, see :func:`read_tx2gene`. When the quantified transcript IDs and the
        map differ only in Ensembl version suffixes (``ENST...\\.2``), versions are removed on both
        sides (keeping GENCODE ``_PAR_Y`` tags, so PAR copies stay distinct) and a warning says so.
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
        _check_exists(path)
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
        return _read_matrix(next(iter(files.values())), gene_name_column=gene_name_column, sep=sep)

    if fmt == "featurecounts":
        if len(files) == 1 and not named:
            return _read_featurecounts(next(iter(files.values())))
        return _per_sample_featurecounts(files, named)

    if fmt == "htseq" and len(files) == 1 and not named:
        path = next(iter(files.values()))
        counts, qc, names, header = _read_htseq(path)
        base = _sample_name(path, "htseq")
        if counts.shape[1] == 1:
            cols = [base]
        elif header and all(h.strip() for h in header) and len(set(header)) == len(header):
            cols = [_strip_bam_suffixes(PurePosixPath(h).name) if h.endswith(".bam") else h for h in header]
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
            counts, qc, nm, _ = _read_htseq(path)
            if counts.shape[1] != 1:
                raise DegflowInputError(f"{path}: holds {counts.shape[1]} count columns (htseq-count run on several "
                                        f"BAMs) but was given as the single sample {sample!r}; pass this file on its "
                                        "own as paths to read every column")
            per_sample[sample] = counts.iloc[:, 0]
            qcs.append(qc.set_axis([sample]))
            names = nm if names is None else names
        counts = _combine(per_sample, samples)
        qc_all = pd.concat(qcs)
        qc_all.index.name = "sample"
        if names is not None:
            names = names.reindex(counts.index)
        return CountTable(counts=counts, gene_names=names, qc=qc_all, format="htseq",
                          source={"files": {s: str(p) for s, p in samples.items()}})
    if fmt == "star":
        return _star_table(samples, strandedness)
    return _transcript_table(samples, fmt, tx2gene, counts_from_abundance)


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
        first = "" if path.is_dir() or seen == "kallisto" else f", first line {_show(_first_line(path) or '')}"
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
        table = _read_featurecounts(path)
        if table.counts.shape[1] != 1:
            raise DegflowInputError(f"{path}: holds {table.counts.shape[1]} samples but was given as the single "
                                    f"sample {sample!r}; pass a multi-sample featureCounts file on its own")
        per_sample[sample] = table.counts.iloc[:, 0]
        bam_names[sample] = next(iter(table.source["bam_names"].values()))
        if table.qc is not None:
            qcs.append(table.qc.set_axis([sample]))
    counts = _combine(per_sample, samples)
    qc = pd.concat(qcs) if qcs else None
    if qc is not None:
        qc.index.name = "sample"
    return CountTable(counts=counts, gene_names=None, qc=qc, format="featurecounts",
                      source={"files": {s: str(p) for s, p in samples.items()}, "bam_names": bam_names})


# ----------------------------------------------------------------------------------------------
# annotation
# ----------------------------------------------------------------------------------------------


def read_annotation(path: str | Path) -> pd.DataFrame:
    """Read gene names (and biotypes) from a GTF or a gene table.

    Parameters
    ----------
    path
        A GTF (optionally gzipped): ``gene`` lines when present, otherwise the attributes of the
        other lines (exon/transcript) aggregated per ``gene_id`` (first value seen). Or a TSV/CSV
        whose ``gene_id`` column (else the first column) holds IDs and a ``gene_name``/``symbol``/
        ``gene_symbol``/``Name`` column holds names; other columns are kept.

    Returns
    -------
    pd.DataFrame
        Index ``gene_id`` (unique; later duplicates such as Ensembl's chrY PAR copies are
        dropped with a log message); column ``gene_name`` (NaN where absent) and, when present,
        ``gene_biotype`` (from ``gene_biotype`` or GENCODE's ``gene_type``).

    Raises
    ------
    DegflowInputError
        Missing/empty file, or a GTF without ``gene_id`` attributes.
    """
    path = Path(path)
    _check_exists(path, "annotation file")
    line = _first_line(path)
    if line is None:
        raise DegflowInputError(f"{path}: the annotation file is empty")
    if _looks_like_gtf(path):
        gtf = _parse_gtf(path, ["gene_id", "gene_name", "gene", "gene_biotype", "gene_type"])
        gtf = gtf[gtf["gene_id"].notna()]
        if gtf.empty:
            raise DegflowInputError(f"{path}: no GTF lines with a gene_id attribute; give an Ensembl/GENCODE-style "
                                    "GTF or a TSV with gene_id and gene_name columns")
        genes = gtf[gtf["feature"] == "gene"]
        if genes.empty:
            genes = gtf
        def first_of(a: str, b: str) -> np.ndarray:
            return np.where(genes[a].notna().to_numpy(), genes[a].to_numpy(), genes[b].to_numpy())

        out = pd.DataFrame({"gene_id": genes["gene_id"].to_numpy(), "gene_name": first_of("gene_name", "gene"),
                            "gene_biotype": first_of("gene_biotype", "gene_type")})
        out = out.groupby("gene_id", sort=False).first()
        if out["gene_biotype"].isna().all():
            out = out.drop(columns="gene_biotype")
        out.index.name = "gene_id"
        return out
    table = _read_table(path, sep=_guess_sep(path, line))
    lower = {str(c).lower(): c for c in table.columns}
    id_col = lower.get("gene_id", table.columns[0])
    rename = {id_col: "gene_id"}
    name_col = next((lower[k] for k in _GENE_NAME_COLUMNS if k in lower and lower[k] != id_col), None)
    if name_col is not None:
        rename[name_col] = "gene_name"
    bio_col = next((lower[k] for k in _BIOTYPE_COLUMNS if k in lower), None)
    if bio_col is not None:
        rename[bio_col] = "gene_biotype"
    table = table.rename(columns=rename).replace(sorted(_NA_STRINGS), np.nan)
    if "gene_name" not in table.columns:
        table["gene_name"] = np.nan
    dup = table["gene_id"].duplicated()
    if dup.any():
        logger.info("%s: %d duplicated gene IDs (e.g. %s); kept the first row of each", path, int(dup.sum()),
                    table.loc[dup, "gene_id"].iloc[0])
        table = table[~dup]
    table = table.set_index("gene_id")
    cols = ["gene_name", *(["gene_biotype"] if "gene_biotype" in table.columns else [])]
    return table[cols + [c for c in table.columns if c not in cols]]


def match_annotation(gene_ids: Sequence[str] | pd.Index, annotation: pd.DataFrame, *,
                     label: str = "annotation") -> pd.DataFrame:
    """The rows of ``annotation`` for each count gene ID, matching Ensembl versions when needed.

    Parameters
    ----------
    gene_ids
        Gene IDs of the counts (kept as they are in every output).
    annotation
        From :func:`read_annotation` (index ``gene_id``).
    label
        Names the annotation in messages (its path).

    Returns
    -------
    pd.DataFrame
        Index ``gene_ids``; the annotation's columns (``gene_name``, ``gene_biotype`` ...), NaN
        for genes the annotation lacks. IDs are matched as they are; when the two sides differ
        only in version suffixes (``ENSG00000000003.14`` vs ``ENSG00000000003``) and removing
        them matches more genes, they are matched without versions (GENCODE ``_PAR_Y`` tags
        kept) and an info line says so.

    Raises
    ------
    DegflowInputError
        If removing the versions would merge distinct IDs on either side (e.g. ``ENSG1.1`` and
        ``ENSG1.2`` in the counts): the message names the colliding IDs. If no count gene is in
        the annotation at all.
    """
    ids = pd.Index(pd.Index(gene_ids).astype(str), name="gene_id")
    ann_ids = pd.Index(annotation.index.astype(str))
    direct = int(ids.isin(ann_ids).sum())
    key_ids, key_ann = ids, ann_ids
    if direct < len(ids):
        s_ids, s_ann = _strip_versions(ids), _strip_versions(ann_ids)
        stripped = int(s_ids.isin(s_ann).sum())
        if stripped > direct:
            for side, orig, short in (("the counts", ids, s_ids), (label, ann_ids, s_ann)):
                dup = short.duplicated(keep=False) & short.isin(s_ann if side == "the counts" else s_ids)
                if dup.any():
                    groups = pd.Series(orig[dup]).groupby(short[dup].to_numpy()).agg(lambda v: " / ".join(v))
                    shown = "; ".join(groups.iloc[:3])
                    raise DegflowInputError(
                        f"gene IDs of the counts and of {label} differ in version suffixes, but removing them would "
                        f"merge distinct IDs in {side} ({shown}; {len(groups)} such groups); give an annotation "
                        "with the same versions as the counts")
            logger.info("gene IDs of the counts and %s differ in version suffixes (e.g. %r vs %r); matched them "
                        "without versions: %d of %d genes annotated (%d before)", label, ids[0], ann_ids[0],
                        stripped, len(ids), direct)
            key_ids, key_ann = s_ids, s_ann
    matched = int(key_ids.isin(key_ann).sum())
    if matched == 0:
        raise DegflowInputError(
            f"none of the {len(ids)} gene IDs of the counts is in {label}, also without version suffixes (counts: "
            f"{', '.join(map(repr, ids[:2]))}; annotation: {', '.join(map(repr, ann_ids[:2]))}); give the annotation "
            "of the genome the reads were counted against")
    table = annotation.copy()
    table.index = key_ann
    table = table[~table.index.duplicated()]
    out = table.reindex(key_ids)
    out.index = ids
    if matched < len(ids):
        logger.info("%s annotates %d of %d genes of the counts", label, matched, len(ids))
    return out


def collapse_replicates(table: CountTable, units: pd.DataFrame) -> CountTable:
    """Sum technical replicates (several count columns per sample), as DESeq2's ``collapseReplicates``.

    Parameters
    ----------
    table
        Counts whose columns are replicate units.
    units
        Index: the column names of ``table.counts``; columns ``sample`` (the sample each unit
        belongs to) and ``unit`` (its name in the sheet).

    Returns
    -------
    CountTable
        Counts summed per sample (samples in order of first appearance); ``qc`` count columns
        summed and rates recomputed from the sums; ``lengths`` (salmon/kallisto/rsem) averaged
        per gene weighted by each unit's counts (plain mean where the gene has no reads);
        ``source["units"]`` maps each unit column to its sample and unit.

    Raises
    ------
    DegflowInputError
        A count column with no unit row, or a unit row with no count column.
    """
    cols = [str(c) for c in table.counts.columns]
    missing = [k for k in units.index if k not in cols]
    if missing:
        row = units.loc[missing[0]]
        raise DegflowInputError(f"sample {row['sample']!r}, unit {row['unit']!r}: no such column in the counts "
                                f"(columns: {', '.join(cols[:6])}{'...' if len(cols) > 6 else ''}); the unit must "
                                "name a column of the counts file")
    extra = [c for c in cols if c not in units.index]
    if extra:
        raise DegflowInputError(f"count column {extra[0]!r} belongs to no unit of the sample sheet"
                                f"{f' ({len(extra)} such columns)' if len(extra) > 1 else ''}; add a row for it")
    sample_of = units["sample"].astype(str)
    order = list(dict.fromkeys(sample_of[cols]))
    by = sample_of.reindex(cols).to_numpy()
    counts = table.counts.T.groupby(by, sort=False).sum().T[order].astype(np.int64)
    counts.index.name = "gene_id"
    lengths = None
    if table.lengths is not None:
        w = table.counts.to_numpy(dtype=float)
        lens = table.lengths[cols].to_numpy(dtype=float)
        lengths = pd.DataFrame(index=table.counts.index, columns=order, dtype=float)
        for s in order:
            j = np.flatnonzero(by == s)
            wsum = w[:, j].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                weighted = (w[:, j] * lens[:, j]).sum(axis=1) / wsum
            lengths[s] = np.where(wsum > 0, weighted, lens[:, j].mean(axis=1))
    qc = None
    if table.qc is not None:
        raw = table.qc.loc[cols]
        numeric = raw.apply(pd.to_numeric, errors="coerce")
        rates = [c for c in numeric.columns if c in ("assignment_rate", "percent_mapped", "tx2gene_unmapped_fraction")]
        summable = [c for c in numeric.columns if c not in rates and numeric[c].notna().all()]
        qc = numeric[summable].groupby(by, sort=False).sum().loc[order]
        counted = [c for c in summable if not c.startswith(("num_", "tx2gene_"))]
        if "num_processed" in qc.columns and "num_mapped" in qc.columns:
            qc["assignment_rate"] = qc["num_mapped"] / qc["num_processed"]
            if "percent_mapped" in raw.columns:
                qc["percent_mapped"] = 100 * qc["assignment_rate"]
        elif "assignment_rate" in raw.columns and "assigned" in qc.columns:
            qc["assignment_rate"] = qc["assigned"] / qc[counted].sum(axis=1)
        if "tx2gene_unmapped_reads" in qc.columns:
            qc["tx2gene_unmapped_fraction"] = qc["tx2gene_unmapped_reads"] / (
                qc["tx2gene_unmapped_reads"] + qc["assigned"])
        qc["n_units"] = pd.Series(by).value_counts().reindex(order).to_numpy()
        qc.index.name = "sample"
    source = dict(table.source)
    source["units"] = {k: {"sample": str(units.at[k, "sample"]), "unit": str(units.at[k, "unit"])} for k in cols}
    logger.info("summed %d technical replicate units into %d samples", len(cols), len(order))
    return CountTable(counts=counts, gene_names=table.gene_names, qc=qc, format=table.format, source=source,
                      lengths=lengths)


def strandedness_table(table: CountTable) -> pd.DataFrame:
    """The STAR strandedness evidence, one row per count file (what ``strandedness.tsv`` holds).

    Returns
    -------
    pd.DataFrame
        Columns ``sample`` (and ``unit`` with technical replicates), ``requested``, ``inferred``,
        ``chosen``, ``column`` (of ``ReadsPerGene.out.tab``), ``forward_share``/``reverse_share``
        (of the gene counts in columns 3 + 4), ``genes_unstranded``/``_forward``/``_reverse`` (gene
        count totals of columns 2/3/4), ``N_noFeature_unstranded``/``_forward``/``_reverse`` and
        ``file``.

    Raises
    ------
    DegflowInputError
        If ``table`` was not read from STAR files.
    """
    if table.format != "star" or "strandedness" not in table.source:
        raise DegflowInputError(f"strandedness evidence exists for STAR ReadsPerGene files only, not {table.format}")
    units = table.source.get("units")
    rows = []
    for key, ev in table.source["strandedness"].items():
        row: dict[str, Any] = {"sample": units[key]["sample"], "unit": units[key]["unit"]} if units else {"sample": key}
        row.update({k: ev[k] for k in ("requested", "inferred", "chosen", "column", "forward_share", "reverse_share")})
        row.update({f"genes_{k}": v for k, v in ev["gene_totals"].items()})
        row.update({f"N_noFeature_{k}": v for k, v in ev["N_noFeature"].items()})
        row["file"] = table.source["files"][key]
        rows.append(row)
    return pd.DataFrame(rows)
