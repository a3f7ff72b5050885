"""Bulk RNA-seq: from a validated config to the count dataset, DEG tables and the summary.

The DE fit itself lives in :mod:`degflow.de.deseq`; count readers in :mod:`degflow.io.counts`.
Nothing here reads the Snakemake config: every function takes keyword arguments.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from degflow.bulk.genes_of_interest import read_gene_list
from degflow.errors import DegflowInputError
from degflow.io.counts import (
    CountTable,
    check_text_file,
    collapse_replicates,
    match_annotation,
    read_annotation,
    read_counts,
)
from degflow.plan.config import (
    BulkPlan,
    batch_design_terms,
    check_design,
    check_samples_match,
    read_sample_sheet,
    read_sheet_table,
)

if TYPE_CHECKING:  # anndata is slow to import; the Snakefile imports this module at parse time
    import anndata as ad

log = logging.getLogger("degflow")


#: Sample-sheet column naming technical replicates (several rows, one per unit, for one sample).
UNIT_COLUMN = "unit"


@dataclass
class BulkCountPlan(BulkPlan):
    """A :class:`~degflow.plan.config.BulkPlan` plus what the counts are.

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


def read_bulk_sheet(path: str | Path, *, single_file: bool = False) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Read the sample sheet, with technical replicates when it has a ``unit`` column.

    Parameters
    ----------
    path
        Sample sheet (TSV, or CSV by extension); first column ``sample`` or ``sample_id``.
    single_file
        The counts are one file for all samples (``bulk.counts.path``): each ``unit`` then names
        a column of that file. Otherwise each unit row gives its own ``counts_path``.

    Returns
    -------
    sheet, units
        Without a ``unit`` column: :func:`degflow.plan.config.read_sample_sheet` and ``None``. With
        one: one row per sample (``unit`` and ``counts_path`` removed; numeric columns converted
        as ``read_sample_sheet`` does), and the units (index: the count column, or
        ``"<sample>/<unit>"`` for per-unit files; columns ``sample``, ``unit`` [, ``counts_path``]).

    Raises
    ------
    DegflowInputError
        Empty sample or unit names, a (sample, unit) pair given twice, units of one sample that
        disagree in another column, a unit without ``counts_path``.
    """
    path = Path(path)
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        header = list(pd.read_csv(path, sep=sep, dtype=str, nrows=0).columns) if path.is_file() else []
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        header = []
    if UNIT_COLUMN not in header or header[0] not in ("sample", "sample_id"):
        return read_sample_sheet(path), None
    raw = read_sheet_table(path, sep=sep, what="sample sheet")
    if raw.empty:
        return read_sample_sheet(path), None
    name_col = raw.columns[0]
    raw = raw.apply(lambda col: col.str.strip())
    for col, what in ((name_col, "sample name"), (UNIT_COLUMN, "unit")):
        empty = np.flatnonzero(raw[col] == "")
        if empty.size:
            raise DegflowInputError(f"sample sheet '{path}', row {int(empty[0]) + 2}: the {what} is empty")
    dup = raw.duplicated([name_col, UNIT_COLUMN], keep=False)
    if dup.any():
        rows = [int(i) + 2 for i in np.flatnonzero(dup)][:2]
        first = raw.loc[dup].iloc[0]
        raise DegflowInputError(f"sample sheet '{path}': sample '{first[name_col]}', unit '{first[UNIT_COLUMN]}' "
                                f"appears more than once (rows {rows}); each unit of a sample needs its own name")
    per_unit = [name_col, UNIT_COLUMN, "counts_path"]
    for col in [c for c in raw.columns if c not in per_unit]:
        n_values = raw.groupby(name_col, sort=False)[col].nunique()
        if (n_values > 1).any():
            sample = n_values.index[n_values > 1][0]
            values = sorted(raw.loc[raw[name_col] == sample, col].unique())[:3]
            raise DegflowInputError(
                f"sample sheet '{path}', sample '{sample}': column '{col}' differs between its units "
                f"({', '.join(map(repr, values))}); technical replicates (rows sharing a sample name) must agree in "
                "every column but unit and counts_path - give biological replicates their own sample names")
    units = pd.DataFrame({"sample": raw[name_col].to_numpy(), "unit": raw[UNIT_COLUMN].to_numpy()})
    if single_file:
        units.index = pd.Index(units["unit"].to_numpy())
        again = units.index.duplicated(keep=False)
        if again.any():
            raise DegflowInputError(
                f"sample sheet '{path}': unit '{units.index[again][0]}' is given for several samples; with one counts "
                "file for all samples (bulk.counts.path) each unit names one column of that file")
    else:
        if "counts_path" not in raw.columns:
            raise DegflowInputError(
                f"sample sheet '{path}' has a unit column but no counts_path column, and bulk.counts.path is empty: "
                "give each unit's count file in a counts_path column (or one file for all in bulk.counts.path)")
        units["counts_path"] = raw["counts_path"].to_numpy()
        units.index = pd.Index([f"{s}/{u}" for s, u in zip(units["sample"], units["unit"], strict=True)])
    sheet = raw.drop_duplicates(name_col).drop(columns=[c for c in per_unit[1:] if c in raw.columns])
    sheet = sheet.set_index(pd.Index(sheet[name_col], name="sample")).drop(columns=[name_col])
    for col in sheet.columns:  # the conversion read_sample_sheet applies
        nonempty = sheet[col][sheet[col] != ""]
        if len(nonempty) and pd.to_numeric(nonempty, errors="coerce").notna().all():
            sheet[col] = pd.to_numeric(sheet[col].replace("", np.nan))
    units.index.name = "unit_id"
    log.info("sample sheet %s: %d units of %d samples (technical replicates are summed)", path, len(units),
             sheet.shape[0])
    return sheet, units


def count_inputs(
    counts_cfg: Mapping, sheet: pd.DataFrame | None, units: pd.DataFrame | None = None
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


def load_counts(counts_cfg: Mapping, sheet: pd.DataFrame | None = None,
                units: pd.DataFrame | None = None) -> CountTable:
    """Read the counts as configured (``bulk.counts``), dispatching on the format.

    With ``units`` (technical replicates, see :func:`read_bulk_sheet`) the units are read, then
    summed per sample by :func:`degflow.io.counts.collapse_replicates`.
    """
    paths = count_inputs(counts_cfg, sheet, units)
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
        The ``bulk`` section of a config that passed :func:`degflow.plan.config.validate_config`.

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
    table = load_counts(bulk_cfg["counts"], sheet, units)
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
    from degflow.plan.config import check_lrt, design_variables

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


def build_dataset(
    table: CountTable,
    plan: BulkPlan,
    *,
    design: str,
    reference_levels: Mapping[str, str],
    annotation: pd.DataFrame | None = None,
    min_count: int = 0,
    min_samples: int = 0,
) -> ad.AnnData:
    """The analysis-ready dataset: samples x genes counts, design metadata, gene names.

    Parameters
    ----------
    table
        Counts as read by :func:`degflow.io.counts.read_counts`.
    plan
        From :func:`plan_bulk`.
    design, reference_levels
        As in the config; factor levels are ordered reference-first in ``obs``.
    annotation
        Optional gene annotation (index gene_id, column ``gene_name`` [, ``gene_biotype``]), from
        :func:`read_gene_annotation`; fills names the counts lack. IDs are matched by
        :func:`degflow.io.counts.match_annotation` (Ensembl versions ignored when that is safe).
    min_count, min_samples
        Keep genes with ``>= min_count`` reads in ``>= min_samples`` samples (0 keeps all).

    Returns
    -------
    AnnData
        ``X``: int64 counts (samples x genes); ``obs``: the design variables (factors categorical,
        reference level first) and every other sheet column; ``var["gene_name"]`` and, when the
        annotation has biotypes, ``var["gene_biotype"]``; ``layers["avg_tx_length"]`` (float64):
        tximport's average transcript lengths, only for salmon/kallisto/RSEM read with
        ``counts_from_abundance: no`` (see :func:`length_normalization_factors`);
        ``uns["degflow"]["filter"]``: the pre-filter settings and gene numbers;
        ``uns["degflow"]["format"]`` and ``uns["degflow"]["counts"]`` (format,
        counts_from_abundance, whether a length offset applies).
    """
    import anndata as ad

    counts = table.counts[plan.samples]
    _, _, meta = check_design(plan.sheet, design, reference_levels, plan.contrasts)
    obs = plan.sheet.copy()
    for col in meta.columns:
        obs[col] = meta[col]
    obs = obs.drop(columns=[c for c in ("counts_path", UNIT_COLUMN) if c in obs.columns])
    for col in obs.columns:
        if obs[col].dtype == object:
            obs[col] = obs[col].astype(str)
    names = pd.Series(np.nan, index=counts.index, dtype=object)
    biotypes: pd.Series | None = None
    if table.gene_names is not None:
        names = table.gene_names.reindex(counts.index).astype(object)
    if annotation is not None:
        ann = match_annotation(counts.index, annotation, label=str(annotation.attrs.get("path", "the annotation")))
        if "gene_name" in ann.columns:
            from_file = ann["gene_name"].reindex(counts.index).replace("", np.nan)
            if table.gene_names is not None:
                differ = int((from_file.notna() & names.notna() & (from_file != names)).sum())
                log.warning("gene names: the annotation file's names are used (%d differ from the counts' own "
                            "name column, which fills only the genes the annotation lacks)", differ)
            names = from_file.where(from_file.notna(), names)
        if "gene_biotype" in ann.columns and ann["gene_biotype"].notna().any():
            biotypes = ann["gene_biotype"].astype(object)
    lengths = table.lengths[plan.samples] if table.lengths is not None else None
    n_before = counts.shape[0]
    if min_count > 0 and min_samples > 0:
        keep = (counts >= min_count).sum(axis=1) >= min_samples
        counts = counts.loc[keep]
        names = names.loc[keep]
        biotypes = biotypes.loc[keep] if biotypes is not None else None
        lengths = lengths.loc[keep] if lengths is not None else None
    log.info("pre-filter (>= %d reads in >= %d samples): %d of %d genes kept", min_count, min_samples,
             counts.shape[0], n_before)
    if counts.shape[0] == 0:
        raise DegflowInputError(
            f"config key 'bulk.filter': no gene has >= {min_count} reads in >= {min_samples} samples; lower it"
        )
    var = pd.DataFrame({"gene_name": names.astype(str).where(names.notna(), "")}, index=counts.index.astype(str))
    if biotypes is not None:
        var["gene_biotype"] = biotypes.astype(str).where(biotypes.notna(), "").to_numpy()
    adata = ad.AnnData(X=counts.T.to_numpy(dtype=np.int64), obs=obs, var=var)
    adata.var.index.name = "gene_id"
    if lengths is not None:
        adata.layers["avg_tx_length"] = lengths.T.to_numpy(dtype=np.float64)
    adata.uns["degflow"] = {
        "filter": {"min_count": int(min_count), "min_samples": int(min_samples), "genes_in": int(n_before),
                   "genes_kept": int(counts.shape[0])},
        "format": table.format,
        "counts": {"format": table.format,
                   "counts_from_abundance": str(table.source.get("counts_from_abundance", "")),
                   "length_offset": lengths is not None},
    }
    return adata


def length_normalization_factors(counts: np.ndarray | pd.DataFrame, avg_tx_length: np.ndarray | pd.DataFrame
                                 ) -> np.ndarray:
    """DESeq2's normalisation factors from tximport's average transcript lengths.

    Port of ``estimateSizeFactors`` on a ``DESeqDataSetFromTximport`` object (DESeq2 1.38,
    ``countsFromAbundance = "no"``): ``nm = length / exp(rowMeans(log(length)))``, then
    ``estimateNormFactors``: median-of-ratios size factors of ``counts / nm``,
    ``nf = nm * sf`` per sample, and ``nf / exp(rowMeans(log(nf)))``.

    Parameters
    ----------
    counts, avg_tx_length
        Genes x samples (the same shape); lengths must be > 0, as DESeq2 requires.

    Returns
    -------
    numpy.ndarray
        Genes x samples normalisation factors (each gene's geometric mean is 1), for
        :func:`degflow.de.deseq.fit_deseq` ``normalization_factors=``.
    """
    from degflow.de.deseq import _r_size_factors  # noqa: PLC0415 - the same median-of-ratios as the fit

    Y = np.asarray(counts, dtype=float)
    L = np.asarray(avg_tx_length, dtype=float)
    if L.shape != Y.shape:
        raise DegflowInputError(f"average transcript lengths ({L.shape}) and counts ({Y.shape}) differ in shape")
    if not (np.isfinite(L).all() and (L > 0).all()):
        bad = np.argwhere(~(np.isfinite(L) & (L > 0)))[0]
        raise DegflowInputError(f"average transcript length {L[bad[0], bad[1]]} for gene row {bad[0] + 1}, sample "
                                f"column {bad[1] + 1} is not > 0; DESeq2 needs positive lengths (tximport's "
                                "txi$length); use counts_from_abundance: lengthScaledTPM for such data")
    nm = L / np.exp(np.log(L).mean(axis=1, keepdims=True))
    sf = _r_size_factors(Y / nm)
    nf = nm * sf[None, :]
    return nf / np.exp(np.log(nf).mean(axis=1, keepdims=True))


def normalized_counts(adata: ad.AnnData, size_factors: np.ndarray) -> pd.DataFrame:
    """Counts divided by size factors, genes x samples (DESeq2 ``counts(dds, normalized=TRUE)``)."""
    X = np.asarray(adata.X, dtype=float) / np.asarray(size_factors, dtype=float)[:, None]
    df = pd.DataFrame(X.T, index=adata.var_names, columns=adata.obs_names)
    df.index.name = "gene_id"
    return df


def check_annotation_path(path: str | Path) -> None:
    """The cheap checks of ``bulk.annotation`` made before the DAG: an existing text file (plain or gzip)."""
    if Path(path).is_dir():
        raise DegflowInputError(f"annotation file '{path}' is a folder: bulk.annotation names a GTF or TSV file")
    if not Path(path).is_file():
        raise DegflowInputError(f"annotation file '{path}' does not exist: check bulk.annotation in the config")
    check_text_file(path, what="annotation file", key="bulk.annotation")


def read_gene_annotation(path: str | Path | None) -> pd.DataFrame | None:
    """Optional gene annotation (gene_id -> gene_name [, gene_biotype]), or None; ``attrs["path"]`` names it."""
    if not path:
        return None
    check_annotation_path(path)
    ann = read_annotation(path)
    ann.attrs["path"] = str(path)
    return ann
