"""Bulk RNA-seq: from a validated config to the count dataset, DEG tables and the summary.

The DE fit itself lives in :mod:`degflow.deseq`; count readers in :mod:`degflow.formats`.
Nothing here reads the Snakemake config: every function takes keyword arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from degflow.config import BulkPlan, check_design, check_samples_match, read_sample_sheet
from degflow.errors import DegflowInputError
from degflow.formats import CountTable, read_annotation, read_counts

if TYPE_CHECKING:  # anndata is slow to import; the Snakefile imports this module at parse time
    import anndata as ad

log = logging.getLogger("degflow")

RESULT_COLUMNS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]


def count_inputs(counts_cfg: Mapping, sheet: pd.DataFrame | None) -> str | dict[str, str]:
    """Where the counts come from: one file, or a per-sample mapping from the sheet's ``counts_path`` column."""
    if counts_cfg.get("path"):
        return str(counts_cfg["path"])
    if sheet is None or "counts_path" not in sheet.columns:
        raise DegflowInputError(
            "config key 'bulk.counts.path' is empty and the sample sheet has no 'counts_path' column: "
            "give one counts file, or one file per sample in a 'counts_path' column"
        )
    return {str(s): str(p) for s, p in sheet["counts_path"].items()}


def load_counts(counts_cfg: Mapping, sheet: pd.DataFrame | None = None) -> CountTable:
    """Read the counts as configured (``bulk.counts``), dispatching on the format."""
    paths = count_inputs(counts_cfg, sheet)
    if isinstance(paths, str) and not Path(paths).is_file():
        raise DegflowInputError(f"counts file '{paths}' does not exist: check bulk.counts in the config")
    if isinstance(paths, dict):
        for s, p in paths.items():
            if not Path(p).exists():
                raise DegflowInputError(f"sample sheet, sample '{s}': counts_path '{p}' does not exist")
    return read_counts(
        paths,
        format=counts_cfg.get("format", "auto"),
        strandedness=counts_cfg.get("strandedness", "auto"),
        tx2gene=counts_cfg.get("tx2gene"),
        gene_name_column=counts_cfg.get("gene_name_column"),
    )


def plan_bulk(bulk_cfg: Mapping) -> tuple[BulkPlan, CountTable]:
    """Validate the bulk section against its sample sheet and counts (run before the DAG is built).

    Parameters
    ----------
    bulk_cfg
        The ``bulk`` section of a config that passed :func:`degflow.config.validate_config`.

    Returns
    -------
    plan, counts
        The analysed samples, factors and contrasts; and the counts as read.
    """
    sheet_path = str(bulk_cfg["samples"])
    sheet = read_sample_sheet(sheet_path)
    table = load_counts(bulk_cfg["counts"], sheet)
    counts_label = str(bulk_cfg["counts"].get("path") or f"{sheet_path}:counts_path")
    exclude = list(bulk_cfg.get("exclude", []))
    samples = check_samples_match(
        list(sheet.index), list(table.counts.columns), exclude, sheet_path=sheet_path, counts_path=counts_label
    )
    check_count_values(table.counts[samples], counts_label)
    factors, covariates, _ = check_design(
        sheet.loc[samples], bulk_cfg["design"], bulk_cfg.get("reference_levels", {}), bulk_cfg["contrasts"],
        sheet_path=sheet_path,
    )
    plan = BulkPlan(
        samples=samples,
        sheet=sheet.loc[samples],
        factors=factors,
        covariates=covariates,
        contrasts={k: list(v) for k, v in bulk_cfg["contrasts"].items()},
        excluded=exclude,
    )
    return plan, table


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
        Counts as read by :func:`degflow.formats.read_counts`.
    plan
        From :func:`plan_bulk`.
    design, reference_levels
        As in the config; factor levels are ordered reference-first in ``obs``.
    annotation
        Optional gene annotation (index gene_id, column ``gene_name``); fills names the counts lack.
    min_count, min_samples
        Keep genes with ``>= min_count`` reads in ``>= min_samples`` samples (0 keeps all).

    Returns
    -------
    AnnData
        ``X``: int64 counts (samples x genes); ``obs``: the design variables (factors categorical,
        reference level first) and every other sheet column; ``var["gene_name"]``;
        ``uns["degflow"]["filter"]``: the pre-filter settings and gene numbers.
    """
    import anndata as ad

    counts = table.counts[plan.samples]
    _, _, meta = check_design(plan.sheet, design, reference_levels, plan.contrasts)
    obs = plan.sheet.copy()
    for col in meta.columns:
        obs[col] = meta[col]
    obs = obs.drop(columns=[c for c in ("counts_path",) if c in obs.columns])
    for col in obs.columns:
        if obs[col].dtype == object:
            obs[col] = obs[col].astype(str)
    names = pd.Series(np.nan, index=counts.index, dtype=object)
    if table.gene_names is not None:
        names = table.gene_names.reindex(counts.index).astype(object)
    if annotation is not None and "gene_name" in annotation.columns:
        ann = annotation["gene_name"].reindex(counts.index)
        names = names.where(names.notna(), ann)
    n_before = counts.shape[0]
    if min_count > 0 and min_samples > 0:
        keep = (counts >= min_count).sum(axis=1) >= min_samples
        counts = counts.loc[keep]
        names = names.loc[keep]
    log.info("pre-filter (>= %d reads in >= %d samples): %d of %d genes kept", min_count, min_samples,
             counts.shape[0], n_before)
    if counts.shape[0] == 0:
        raise DegflowInputError(
            f"config key 'bulk.filter': no gene has >= {min_count} reads in >= {min_samples} samples; lower it"
        )
    adata = ad.AnnData(
        X=counts.T.to_numpy(dtype=np.int64),
        obs=obs,
        var=pd.DataFrame({"gene_name": names.astype(str).where(names.notna(), "")}, index=counts.index.astype(str)),
    )
    adata.var.index.name = "gene_id"
    adata.uns["degflow"] = {
        "filter": {"min_count": int(min_count), "min_samples": int(min_samples), "genes_in": int(n_before),
                   "genes_kept": int(counts.shape[0])},
        "format": table.format,
    }
    return adata


def annotate_results(
    res: pd.DataFrame, gene_names: pd.Series | None, *, lfc: float, padj: float
) -> pd.DataFrame:
    """The public results table: gene_id, gene_name, DESeq2 columns, regulation.

    Genes DESeq2 does not test (zero counts in every analysed sample, baseMean 0) are left out.
    ``regulation`` is ``up``/``down`` for ``padj < padj`` and ``|log2FoldChange| > lfc``, else ``ns``.
    """
    out = res.copy()
    out.index = out.index.astype(str)
    out.index.name = "gene_id"
    out = out.loc[out["baseMean"] > 0]
    cols = list(RESULT_COLUMNS) + [c for c in out.columns if c not in RESULT_COLUMNS]
    out = out[cols]
    if gene_names is not None:
        out.insert(0, "gene_name", gene_names.reindex(out.index).fillna("").astype(str).to_numpy())
    sig = (out["padj"] < padj) & (out["log2FoldChange"].abs() > lfc)
    out["regulation"] = np.where(sig & (out["log2FoldChange"] > 0), "up", np.where(sig, "down", "ns"))
    return out.reset_index()


def deg_table(results: pd.DataFrame) -> pd.DataFrame:
    """The DEGs of a results table (``regulation != ns``) sorted by padj, then by gene_id for ties."""
    deg = results.loc[results["regulation"] != "ns"]
    return deg.sort_values(["padj", "gene_id"], kind="mergesort")


def summary_row(contrast: str, spec: list[str], results: pd.DataFrame, *, lfc: float, padj: float) -> dict:
    """One row of ``summary.tsv``."""
    return {
        "contrast": contrast,
        "factor": spec[0],
        "test_level": spec[1],
        "reference_level": spec[2],
        "n_tested": int(results["padj"].notna().sum()),
        "n_genes": int(len(results)),
        "n_up": int((results["regulation"] == "up").sum()),
        "n_down": int((results["regulation"] == "down").sum()),
        "lfc_threshold": lfc,
        "padj_threshold": padj,
    }


def normalized_counts(adata: ad.AnnData, size_factors: np.ndarray) -> pd.DataFrame:
    """Counts divided by size factors, genes x samples (DESeq2 ``counts(dds, normalized=TRUE)``)."""
    X = np.asarray(adata.X, dtype=float) / np.asarray(size_factors, dtype=float)[:, None]
    df = pd.DataFrame(X.T, index=adata.var_names, columns=adata.obs_names)
    df.index.name = "gene_id"
    return df


def read_gene_annotation(path: str | Path | None) -> pd.DataFrame | None:
    """Optional gene annotation (gene_id -> gene_name), or None."""
    if not path:
        return None
    if not Path(path).is_file():
        raise DegflowInputError(f"annotation file '{path}' does not exist: check bulk.annotation in the config")
    return read_annotation(path)
