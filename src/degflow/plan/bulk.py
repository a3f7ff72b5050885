"""Bulk planning: the ``bulk`` section against its sample sheet and counts, before the DAG (``workflow/rules/common.smk``).

=============================  ==========================================================================
:func:`plan_bulk`              the whole check: sheet, counts, samples, design, contrasts, LRTs, batch
:func:`plan_lrt`               every ``bulk.lrt`` entry against the design
:func:`load_counts`            the counts as configured (``bulk.counts``), technical replicates summed
:func:`check_samples_match`    sheet and counts name the same samples (or the others are excluded)
:func:`side_inputs`            the optional files the dataset rule reads (annotation, tx2gene)
:func:`annotation_note`        the note when counts and ``bulk.annotation`` both name genes
=============================  ==========================================================================

The sheet is read by :func:`degflow.io.sheets.read_bulk_sheet`, the design checked by :mod:`degflow.plan.design`.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from degflow.bulk.genes_of_interest import read_gene_list
from degflow.errors import DegflowInputError
from degflow.io.counts import read_counts
from degflow.io.counttable import CountTable, collapse_replicates
from degflow.io.sheets import read_bulk_sheet
from degflow.io.text import check_text_file
from degflow.plan.design import batch_design_terms, check_design, check_lrt, design_variables

log = logging.getLogger("degflow")


@dataclass
class BulkPlan:
    """What the bulk rules need, after validation."""

    samples: list[str]
    sheet: pd.DataFrame
    factors: list[str]
    covariates: list[str]
    contrasts: dict[str, list[str] | dict]
    excluded: list[str] = field(default_factory=list)


@dataclass
class BulkCountPlan(BulkPlan):
    """A :class:`BulkPlan` plus what the counts are.

    Attributes
    ----------
    count_format
        The format read (after ``auto`` detection), one of :data:`degflow.io.counts.FORMATS`.
    count_files
        Every file the counts were read from (quantifier files inside salmon/kallisto folders,
        featureCounts' ``.summary``), for the workflow to declare as inputs.
    units
        Technical replicates: index = count column (or per-unit file key), columns ``sample``,
        ``unit`` and, with per-unit files, ``counts_path``; ``None`` without a ``unit`` column.
    """

    count_format: str = "matrix"
    count_files: list[str] = field(default_factory=list)
    units: pd.DataFrame | None = None
    lrt: dict[str, dict] = field(default_factory=dict)
    #: ``bulk.batch``: design columns removed in the batch-corrected figures (checked against the design).
    batch: list[str] = field(default_factory=list)
    #: ``bulk.genes_of_interest`` as read (a file's lines), in order; empty when not configured.
    genes_of_interest: list[str] = field(default_factory=list)


def count_inputs(
    counts_cfg: Mapping, sheet: pd.DataFrame | None, *, units: pd.DataFrame | None = None
) -> str | dict[str, str]:
    """Where the counts come from: one file, or a mapping from the sheet's ``counts_path`` column.

    The mapping is sample -> path, or ``"<sample>/<unit>"`` -> path with technical replicates.
    """
    if counts_cfg.get("path"):
        return str(counts_cfg["path"])
    if units is not None and "counts_path" in units.columns:
        table = units["counts_path"]
    elif sheet is not None and "counts_path" in sheet.columns:
        table = sheet["counts_path"]
    else:
        raise DegflowInputError(
            "config key 'bulk.counts.path' is empty and the sample sheet has no 'counts_path' column: "
            "give one counts file, or one file per sample in a 'counts_path' column"
        )
    empty = [str(k) for k, p in table.items() if pd.isna(p) or not str(p).strip()]
    if empty:
        raise DegflowInputError(f"sample sheet, sample '{empty[0]}': counts_path is empty; give its count file")
    return {str(s): str(p).strip() for s, p in table.items()}


def load_counts(counts_cfg: Mapping, *, sheet: pd.DataFrame | None = None,
                units: pd.DataFrame | None = None) -> CountTable:
    """Read the counts as configured (``bulk.counts``), dispatching on the format.

    With ``units`` (technical replicates, see :func:`degflow.io.sheets.read_bulk_sheet`) the units are read, then
    summed per sample by :func:`degflow.io.counttable.collapse_replicates`.
    """
    paths = count_inputs(counts_cfg, sheet, units=units)
    fmt = counts_cfg.get("format", "auto")
    if isinstance(paths, str) and Path(paths).is_dir():
        raise DegflowInputError(
            f"counts file '{paths}' is a folder: bulk.counts.path takes the one file that holds every sample (for "
            "per-sample files or quantifier folders, give each sample's path in a counts_path column of the sheet)")
    if isinstance(paths, str) and not Path(paths).is_file():
        raise DegflowInputError(f"counts file '{paths}' does not exist: check bulk.counts in the config")
    if isinstance(paths, dict):
        for s, p in paths.items():
            if not Path(p).exists():
                raise DegflowInputError(f"sample sheet, sample '{s}': counts_path '{p}' does not exist")
    for p in [paths] if isinstance(paths, str) else list(paths.values()):
        check_text_file(p, what="counts file", key="bulk.counts")
    try:
        table = read_counts(
            paths,
            format=fmt,
            strandedness=counts_cfg.get("strandedness", "auto"),
            tx2gene=counts_cfg.get("tx2gene"),
            gene_name_column=counts_cfg.get("gene_name_column"),
            counts_from_abundance=counts_cfg.get("counts_from_abundance") or "no",
        )
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        files = [paths] if isinstance(paths, str) else list(paths.values())
        bad = next((f for f in files if _gzip_broken(f)), files[0])
        raise DegflowInputError(f"counts file '{bad}' is a truncated or corrupt gzip file ({exc}); copy or "
                                "download it again (gzip -t checks it)") from None
    if units is not None:
        table = collapse_replicates(table, units)
    return table


def _gzip_broken(path: str | Path) -> bool:
    """True when ``path`` is gzip-compressed but cannot be decompressed to its end."""
    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        if fh.read(2) != b"\x1f\x8b":
            return False
    try:
        with gzip.open(path, "rb") as fh:
            while fh.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error):
        return True
    return False


def plan_bulk(bulk_cfg: Mapping) -> tuple[BulkCountPlan, CountTable]:
    """Validate the bulk section against its sample sheet and counts (run before the DAG is built).

    Parameters
    ----------
    bulk_cfg
        The ``bulk`` section of a config that passed :func:`degflow.plan.schema.validate_config`.

    Returns
    -------
    plan, counts
        The analysed samples, factors, contrasts and count files; and the counts as read
        (technical replicates summed).
    """
    sheet_path = str(bulk_cfg["samples"])
    if bulk_cfg.get("annotation"):
        check_annotation_path(bulk_cfg["annotation"])
    sheet, units = read_bulk_sheet(sheet_path, single_file=bool(bulk_cfg["counts"].get("path")))
    table = load_counts(bulk_cfg["counts"], sheet=sheet, units=units)
    counts_label = str(bulk_cfg["counts"].get("path") or f"{sheet_path}:counts_path")
    exclude = list(bulk_cfg.get("exclude", []))
    if table.format == "featurecounts" and not set(table.counts.columns) & set(sheet.index):
        bams = table.source.get("bam_names", {})
        shown = ", ".join(f"'{bams.get(c, c)}' -> '{c}'" for c in list(table.counts.columns)[:2])
        raise DegflowInputError(
            f"featureCounts file '{counts_label}': none of its {table.counts.shape[1]} BAM columns matches a sample "
            f"of '{sheet_path}' (BAM -> sample name: {shown}; the sheet has {', '.join(map(repr, sheet.index[:2]))}"
            "); name the samples after their BAM files (folder, .bam and aligner suffixes such as "
            "Aligned.sortedByCoord.out removed), or give one featureCounts file per sample in a counts_path column"
        )
    gene_ids = set(map(str, table.counts.index))
    in_rows = [s for s in sheet.index if s in gene_ids]
    if in_rows and not set(table.counts.columns) & set(sheet.index):
        raise DegflowInputError(
            f"counts '{counts_label}' look transposed: sample names of '{sheet_path}' (e.g. '{in_rows[0]}') are row "
            f"names of the counts, not column names; the counts need one row per gene and one column per sample "
            "(transpose the table, e.g. t() in R, before giving it)")
    samples = check_samples_match(
        list(sheet.index), list(table.counts.columns), exclude, sheet_path=sheet_path, counts_path=counts_label
    )
    check_count_values(table.counts[samples], counts_label)
    filt = bulk_cfg.get("filter") or {}
    min_count, min_samples = int(filt.get("min_count", 0)), int(filt.get("min_samples", 0))
    if min_count > 0 and min_samples > 0 and not ((table.counts[samples] >= min_count).sum(axis=1)
                                                  >= min_samples).any():
        raise DegflowInputError(
            f"config key 'bulk.filter': no gene has >= {min_count} reads in >= {min_samples} samples; lower it")
    batch = [str(b) for b in bulk_cfg.get("batch") or []]
    batch_design_terms(bulk_cfg["design"], batch)
    factors, covariates, meta = check_design(
        sheet.loc[samples], bulk_cfg["design"], bulk_cfg.get("reference_levels", {}), bulk_cfg["contrasts"],
        sheet_path=sheet_path, excluded=sheet.loc[[s for s in sheet.index if s not in samples]],
    )
    lrt = plan_lrt(bulk_cfg, meta, factors)
    for name in bulk_cfg["contrasts"]:
        if lrt and str(name).startswith("lrt_"):
            raise DegflowInputError(
                f"config key 'bulk.contrasts.{name}': with bulk.lrt set, contrast names may not start with 'lrt_' "
                "(the genes-of-interest tables name the likelihood-ratio tests lrt_<name>); rename the contrast")
    genes_of_interest = read_gene_list(bulk_cfg.get("genes_of_interest"))
    plan = BulkCountPlan(
        samples=samples,
        sheet=sheet.loc[samples],
        factors=factors,
        covariates=covariates,
        contrasts={k: dict(v) if isinstance(v, Mapping) else list(v) for k, v in bulk_cfg["contrasts"].items()},
        excluded=exclude,
        count_format=table.format,
        count_files=count_files(table),
        units=units,
        lrt=lrt,
        batch=batch,
        genes_of_interest=genes_of_interest,
    )
    return plan, table


#: Defaults of a ``bulk.lrt`` entry (as in the schema: entries of a free-named map get no schema defaults).
LRT_DEFAULTS = {"group_by": None, "n_clusters": None, "max_clusters": 8, "min_cluster_size": 15, "max_genes": 2000}


def plan_lrt(bulk_cfg: Mapping, meta: pd.DataFrame, factors: list[str]) -> dict[str, dict]:
    """Check every ``bulk.lrt`` entry; returns NAME -> its settings plus ``df``, ``coefficient``, ``group_by``.

    Raises
    ------
    DegflowInputError
        The pydeseq2 flavor (no LRT), a reduced formula that is not nested in the design or tests
        nothing, a ``group_by`` that is not a variable of the design, or (without ``group_by``) a
        reduced formula that drops no variable.
    """
    out: dict[str, dict] = {}
    design = bulk_cfg["design"]
    for name, spec in (bulk_cfg.get("lrt") or {}).items():
        key = f"bulk.lrt.{name}.reduced"
        if bulk_cfg.get("de", {}).get("flavor", "deseq2") != "deseq2":
            raise DegflowInputError(f"config key 'bulk.lrt.{name}': the likelihood-ratio test needs "
                                    "bulk.de.flavor deseq2 (stock pydeseq2 has no LRT)")
        df, coefficient = check_lrt(design, spec["reduced"], meta, key=key)
        rhs = spec["reduced"].split("~", 1)[1].strip()
        reduced_vars = [] if rhs in ("", "1") else design_variables(spec["reduced"])
        group_by = spec.get("group_by")
        variables = design_variables(design)
        if group_by is not None and group_by not in variables:
            raise DegflowInputError(f"config key 'bulk.lrt.{name}.group_by': '{group_by}' is not a variable of the "
                                    f"design '{design}' (variables: {', '.join(variables)})")
        if group_by is None:
            tested = [v for v in variables if v not in reduced_vars]  # a factor (arms) or a covariate (dose values)
            tested_factors = [v for v in tested if v in factors]
            if not tested:
                raise DegflowInputError(f"config key 'bulk.lrt.{name}': the reduced formula keeps every variable of "
                                        f"the design '{design}' (it drops an interaction only); set group_by to the "
                                        "variable whose levels the pattern figure should show")
            group_by = (tested_factors or tested)[-1]
        out[str(name)] = {**LRT_DEFAULTS, **dict(spec), "group_by": group_by, "df": df, "coefficient": coefficient}
    return out


def count_files(table: CountTable) -> list[str]:
    """Every file a :class:`CountTable` was read from (sorted, unique), including QC side files."""
    files = set(table.source.get("files", {}).values())
    if table.source.get("summary"):
        files.add(table.source["summary"])
    for f in list(files):
        meta = Path(f).parent / "aux_info" / "meta_info.json"  # salmon QC
        if Path(f).name.startswith("quant.sf") and meta.is_file():
            files.add(str(meta))
    return sorted(str(f) for f in files)


def check_count_values(counts: pd.DataFrame, label: str) -> None:
    """Per-sample checks the readers cannot make: every analysed sample has some counts."""
    if counts.shape[0] == 0:
        raise DegflowInputError(f"counts '{label}' hold no genes")
    totals = counts.sum(axis=0)
    zero = totals.index[totals == 0]
    if len(zero):
        raise DegflowInputError(
            f"counts '{label}', sample '{zero[0]}': every count is zero (a failed library or a wrong column?); "
            "fix the file or add the sample to bulk.exclude"
        )


def check_annotation_path(path: str | Path) -> None:
    """The cheap checks of ``bulk.annotation`` made before the DAG: an existing text file (plain or gzip)."""
    if Path(path).is_dir():
        raise DegflowInputError(f"annotation file '{path}' is a folder: bulk.annotation names a GTF or TSV file")
    if not Path(path).is_file():
        raise DegflowInputError(f"annotation file '{path}' does not exist: check bulk.annotation in the config")
    check_text_file(path, what="annotation file", key="bulk.annotation")



def check_samples_match(
    sheet_samples: list[str], count_samples: list[str], exclude: list[str], *, sheet_path: str, counts_path: str
) -> list[str]:
    """Every analysed sample must be in both the sheet and the counts; returns the analysed samples (sheet order)."""
    unknown_ex = [s for s in exclude if s not in sheet_samples and s not in count_samples]
    if unknown_ex:
        raise DegflowInputError(
            f"config key 'bulk.exclude': sample '{unknown_ex[0]}' is neither in '{sheet_path}' nor in '{counts_path}'"
        )
    missing = [s for s in sheet_samples if s not in count_samples and s not in exclude]
    if missing:
        raise DegflowInputError(
            f"sample '{missing[0]}' is in the sample sheet '{sheet_path}' but not in the counts '{counts_path}'"
            f"{f' ({len(missing)} such samples)' if len(missing) > 1 else ''}; fix the name or add it to bulk.exclude"
        )
    extra = [s for s in count_samples if s not in sheet_samples and s not in exclude]
    if extra:
        raise DegflowInputError(
            f"sample '{extra[0]}' is in the counts '{counts_path}' but not in the sample sheet '{sheet_path}'"
            f"{f' ({len(extra)} such samples)' if len(extra) > 1 else ''}; add it to the sheet or to bulk.exclude"
        )
    return [s for s in sheet_samples if s not in exclude]


def side_inputs(bulk_cfg: Mapping) -> dict[str, str]:
    """The optional files the bulk dataset rule reads: ``annotation`` and ``tx2gene`` when configured.

    Parameters
    ----------
    bulk_cfg
        The ``bulk`` section after :func:`degflow.plan.schema.validate_config`.

    Returns
    -------
    dict[str, str]
        Input name -> path (empty without annotation and tx2gene).
    """
    extra = {}
    if bulk_cfg.get("annotation"):
        extra["annotation"] = bulk_cfg["annotation"]
    if bulk_cfg["counts"].get("tx2gene"):
        extra["tx2gene"] = bulk_cfg["counts"]["tx2gene"]
    return extra


def annotation_note(bulk_cfg: Mapping, *, counts_have_names: bool) -> str | None:
    """The note printed when the counts carry gene names and ``bulk.annotation`` is set too (which one wins).

    Parameters
    ----------
    bulk_cfg
        The ``bulk`` section after :func:`degflow.plan.schema.validate_config`.
    counts_have_names
        Whether the counts have their own gene-name column (``CountTable.gene_names``).

    Returns
    -------
    str or None
        The note (one line, starting ``degflow note:``), or None when there is nothing to say.
    """
    if not (counts_have_names and bulk_cfg.get("annotation")):
        return None
    return (f"degflow note: the counts have their own gene-name column and bulk.annotation is set: names come "
            f"from {bulk_cfg['annotation']}, the counts' names fill only the genes it lacks")
