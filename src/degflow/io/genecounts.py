"""Readers of gene-level integer counts: a count matrix, featureCounts, HTSeq-count and STAR ``ReadsPerGene``.

Each reader checks its tool's layout (featureCounts' annotation columns, HTSeq's five ``__`` rows, STAR's
``N_*`` rows and 4 columns) and its counts (:func:`degflow.checks.as_int_counts`), and keeps the tool's
own QC rows. :func:`degflow.io.counts.read_counts` picks the reader; call it rather than these.

:func:`read_matrix`
    a TSV/CSV matrix; plain integer matrices over 16 MB are parsed by numba (:mod:`degflow.io._textparse`);
:func:`read_featurecounts`
    a featureCounts table and its ``.summary``; sample names from the BAM paths (:func:`strip_bam_suffixes`);
:func:`read_htseq`
    one htseq-count output (one or several count columns);
:func:`read_star_files`, :func:`strandedness_table`
    STAR ``ReadsPerGene.out.tab`` per sample, the strandedness column chosen or inferred as nf-core/rnaseq
    does, and the evidence as a table;
:func:`combine_samples`
    per-sample count columns side by side (same genes required).
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from degflow.checks import as_int_counts
from degflow.errors import DegflowInputError
from degflow.io.annotation import GENE_NAME_COLUMNS
from degflow.io.counttable import CountTable
from degflow.io.text import (
    first_line,
    guess_sep,
    is_gzip,
    is_number,
    open_text,
    read_table,
    show_line,
    strip_compression,
)

__all__ = [
    "FC_ANNOTATION",
    "STRANDED_THRESHOLD",
    "UNSTRANDED_THRESHOLD",
    "combine_samples",
    "read_featurecounts",
    "read_htseq",
    "read_matrix",
    "read_star_files",
    "strandedness_table",
    "strip_bam_suffixes",
]

logger = logging.getLogger("degflow")

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
#: The annotation columns a featureCounts table starts with (one column per BAM follows).
FC_ANNOTATION = ["Geneid", "Chr", "Start", "End", "Strand", "Length"]
_NUMBA_READ_BYTES = 16_000_000  # matrices larger than this (on disk) are read by degflow.io._textparse
_BAM_SUFFIXES = (".bam", "Aligned.sortedByCoord.out", "Aligned.toTranscriptome.out", "Aligned.out",
                 ".sortedByCoord", ".sorted", ".sort", "_sorted", ".markdup", ".markdups", ".dedup",
                 ".dedupped", ".filtered", ".primary")


# ----------------------------------------------------------------------------------------------
# matrix
# ----------------------------------------------------------------------------------------------


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

        with (gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")) as fh:
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
                           compression="gzip" if is_gzip(path) else None, skip_blank_lines=True,
                           low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return None
    if body.shape[1] != len(header) or body.shape[1] < 2:
        return None
    allowed = {name_column} if name_column is not None else (
        {header[1]} if str(header[1]).lower() in GENE_NAME_COLUMNS else set())
    for pos in range(1, body.shape[1]):
        if not pd.api.types.is_integer_dtype(body.dtypes.iloc[pos]):
            if header[pos] not in allowed:
                return None
            body[pos] = body[pos].astype(str)
    body.columns = list(header)
    return body.set_index(header[0])


def _check_header(columns: Sequence[str], path: Path) -> None:
    cols = [str(c) for c in columns]
    seen: set[str] = set()
    for c in cols[1:]:
        if c in seen:
            raise DegflowInputError(f"{path}: sample column {c!r} appears more than once in the header; "
                                    "sample names must be unique")
        seen.add(c)


def read_matrix(path: Path, *, gene_name_column: str | None, sep: str | None) -> CountTable:
    """A count matrix: a header row (gene ID, sample names), then one row per gene.

    ``#`` lines before the header are skipped; a header one field short (R's ``write.table`` with row
    names) gets ``gene_id`` in front. ``sep`` ``None``: from the name, else the header's tab/comma count.
    A non-numeric first column with a usual gene-name header (or ``gene_name_column``) becomes the gene names.
    """
    line = first_line(path)
    if line is None:
        raise DegflowInputError(f"{path}: the file is empty; expected a header row (gene_id, sample names) "
                                "and one row per gene")
    skip = 0
    second = ""
    with open_text(path) as fh:
        for ln in fh:
            if ln.startswith("#") or not ln.strip():
                skip += 1
                continue
            line = ln.rstrip("\r\n")
            second = next(fh, "").rstrip("\r\n")
            break
    sep = sep or guess_sep(path, line)
    if second and len(second.split(sep)) == len(line.split(sep)) + 1:
        # R's write.table(row.names = TRUE) leaves the gene ID column out of the header
        header = ["gene_id", *(c.strip('"') for c in line.split(sep))]
    else:
        header = [str(c) for c in read_table(path, sep=sep, header=None, skiprows=skip, nrows=1).iloc[0]]
    _check_header(header, path)
    if len(header) < 2:
        raise DegflowInputError(f"{path}: no sample columns found (header {show_line(line)}); a count matrix needs a "
                                f"gene ID column followed by one count column per sample (separator used: {sep!r})")
    table = _read_int_body(path, sep=sep, skiprows=skip + 1, header=header, name_column=gene_name_column)
    if table is None and not second.strip():
        raise DegflowInputError(f"{path}: no gene rows found; the file has a header but no counts")
    if table is None:  # something is not a plain integer: read as text so the message can name the cell
        table = read_table(path, sep=sep, header=None, skiprows=skip + 1)
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
    elif table.shape[1] >= 2 and str(table.columns[0]).lower() in GENE_NAME_COLUMNS:
        col = table.columns[0]
        if not all(is_number(v) for v in table[col].head(1000) if v.strip()):
            names = table.pop(col)
            logger.info("%s: column %r read as gene names", path, col)
    counts = as_int_counts(table, path)
    if names is not None:
        names = names.replace("", np.nan)
        names.index = counts.index
        names.name = "gene_name"
    return CountTable(counts=counts, gene_names=names, qc=None, format="matrix",
                      source={"files": {"matrix": str(path)}, "separator": sep})


# ----------------------------------------------------------------------------------------------
# featureCounts
# ----------------------------------------------------------------------------------------------


def strip_bam_suffixes(name: str) -> str:
    """A sample name from a BAM file name: ``.bam`` and aligner/deduplication suffixes removed, repeatedly."""
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
    for candidate in ([strip_bam_suffixes(p.name) if p.name.endswith(".bam") else p.name for p in paths],
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


def read_featurecounts(path: Path) -> CountTable:
    """A featureCounts table (samples named from the BAM columns), with QC from its ``.summary`` when present."""
    skip = 0
    comment = ""
    with open_text(path) as fh:
        for ln in fh:
            if not ln.startswith("#"):
                break
            comment = comment or ln.rstrip("\r\n")
            skip += 1
    table = read_table(path, sep="\t", header=0, skiprows=skip)
    if list(table.columns[:6]) != FC_ANNOTATION or table.shape[1] < 7:
        raise DegflowInputError(f"{path}: not a featureCounts table: expected the columns "
                                f"{' '.join(FC_ANNOTATION)} followed by one column per BAM, got "
                                f"{' '.join(map(str, table.columns[:7]))}")
    headers = [str(c) for c in table.columns[6:]]
    _check_header(["Geneid", *headers], path)
    bam_names = _bam_sample_names(headers)
    raw = table.set_index("Geneid")[headers]
    raw.columns = list(bam_names)
    counts = as_int_counts(raw, path, hint="featureCounts wrote fractional counts (run with -M/-O --fraction?); "
                                             "re-run featureCounts without --fraction")
    source: dict[str, Any] = {"files": {s: str(path) for s in bam_names}, "bam_names": bam_names,
                              **_featurecounts_provenance(comment)}
    qc = pd.DataFrame({"assigned": counts.sum(axis=0)})
    # featureCounts writes <out>.summary; the counts may have been gzipped since (counts.txt.gz)
    candidates = dict.fromkeys(path.with_name(n + suf) for n in (path.name, strip_compression(path.name))
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
    table = read_table(path).set_index("Status")
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


def read_htseq(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series | None, list[str] | None]:
    """Counts (genes x count columns, int64), QC (count columns x specials), names, header names."""
    table = read_table(path, sep="\t", header=None)
    if table.shape[1] < 2:
        raise DegflowInputError(f"{path}: HTSeq-count output needs at least 2 tab-separated columns (gene ID, "
                                f"count), found {table.shape[1]}")
    ids = table.iloc[:, 0].astype(str)
    header_names: list[str] | None = None
    if not is_number(str(table.iat[0, table.shape[1] - 1])):
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
    counts = as_int_counts(raw, path, hint="HTSeq-count writes integer counts; check that this file is "
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
    table = read_table(path, sep="\t", header=None)
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
    counts = as_int_counts(table[~is_n], path, hint="STAR writes integer counts; check the file is unmodified")
    return counts, specials.astype(np.int64)


def read_star_files(files: Mapping[str, Path], strandedness: str | Mapping[str, str]) -> CountTable:
    """STAR ``ReadsPerGene.out.tab`` files (sample -> file): each sample's column chosen or inferred.

    ``strandedness`` is as in :func:`degflow.io.counts.read_counts`; the evidence goes to
    ``source["strandedness"]`` (see :func:`strandedness_table`).
    """
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
    counts = combine_samples(per_sample, files)
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


def combine_samples(per_sample: Mapping[str, pd.Series], files: Mapping[str, Path]) -> pd.DataFrame:
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


# ----------------------------------------------------------------------------------------------
# STAR strandedness evidence, as strandedness.tsv
# ----------------------------------------------------------------------------------------------


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
