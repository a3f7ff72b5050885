"""The public DE tables shared by bulk and pseudobulk: a contrast's results table, its DEGs, a summary row."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from degflow.de.results import RESULT_COLUMNS

__all__ = ["annotate_results", "deg_table", "summary_row"]


def annotate_results(
    res: pd.DataFrame, gene_names: pd.Series | None, *, lfc: float, padj: float,
    gene_biotypes: pd.Series | None = None,
) -> pd.DataFrame:
    """The public results table: gene_id, gene_name [, gene_biotype], DESeq2 columns, regulation.

    Genes DESeq2 does not test (zero counts in every analysed sample, baseMean 0) are left out.
    ``regulation`` is ``up``/``down`` for ``padj < padj`` and ``|log2FoldChange| > lfc``, else ``ns``.
    ``gene_biotype`` is added (after ``gene_name``) when ``gene_biotypes`` has any non-empty value.
    Without gene names (no annotation, no name column in the counts) ``gene_name`` is the gene ID, so every
    table and figure downstream has the column.
    """
    out = res.copy()
    out.index = out.index.astype(str)
    out.index.name = "gene_id"
    out = out.loc[out["baseMean"] > 0]
    cols = list(RESULT_COLUMNS) + [c for c in out.columns if c not in RESULT_COLUMNS]
    out = out[cols]
    if gene_biotypes is not None and (gene_biotypes.fillna("").astype(str) != "").any():
        out.insert(0, "gene_biotype", gene_biotypes.reindex(out.index).fillna("").astype(str).to_numpy())
    if gene_names is None or not (gene_names.fillna("").astype(str) != "").any():
        out.insert(0, "gene_name", out.index.to_numpy(dtype=str))
    else:
        out.insert(0, "gene_name", gene_names.reindex(out.index).fillna("").astype(str).to_numpy())
    sig = (out["padj"] < padj) & (out["log2FoldChange"].abs() > lfc)
    out["regulation"] = np.where(sig & (out["log2FoldChange"] > 0), "up", np.where(sig, "down", "ns"))
    return out.reset_index()


def deg_table(results: pd.DataFrame) -> pd.DataFrame:
    """The DEGs of a results table (``regulation != ns``) sorted by padj, then by gene_id for ties."""
    deg = results.loc[results["regulation"] != "ns"]
    return deg.sort_values(["padj", "gene_id"], kind="mergesort")


def summary_row(contrast: str, spec: list[str] | Mapping, results: pd.DataFrame, *, lfc: float, padj: float) -> dict:
    """One row of ``summary.tsv``."""
    if isinstance(spec, Mapping):  # name / vector / list contrast over resultsNames
        kind = next(k for k in ("name", "vector", "list") if k in spec)
        levels = {"factor": kind, "test_level": str(spec[kind]),
                  "reference_level": str(spec.get("list_values", "")) if kind == "list" else ""}
    else:
        levels = {"factor": spec[0], "test_level": spec[1], "reference_level": spec[2]}
    return {
        "contrast": contrast,
        **levels,
        "n_tested": int(results["padj"].notna().sum()),
        "n_genes": int(len(results)),
        "n_up": int((results["regulation"] == "up").sum()),
        "n_down": int((results["regulation"] == "down").sum()),
        "lfc_threshold": lfc,
        "padj_threshold": padj,
    }
