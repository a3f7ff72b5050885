"""The pseudobulk DE steps of the workflow: one cell type's DESeq2 fit and contrasts, the summary over cell types.

Each function is the one library call of a ``workflow/scripts/pb_*.py`` script (``pb_de``, ``pb_summary``);
the DESeq2 options come from the ``singlecell.pseudobulk.de`` block through :mod:`degflow.de.run`, as for bulk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from degflow.de.results import summary_row
from degflow.de.run import contrast_tables, fit_from_config
from degflow.pseudobulk.aggregate import design_data, size_factors

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["SUMMARY_COLUMNS", "cell_type_de", "summary"]

#: Columns of ``pseudobulk/summary.tsv``.
SUMMARY_COLUMNS = ["cell_type", "n_pseudo_samples", "contrast", "factor", "test_level", "reference_level",
                   "n_tested", "n_genes", "n_up", "n_down", "lfc_threshold", "padj_threshold"]


def cell_type_de(pb: ad.AnnData, cell_type: str, *, groupby: str, design: str,
                 reference_levels: Mapping[str, str] | None, contrasts: Mapping[str, Sequence[str]],
                 gene_filter: Mapping[str, int], de: Mapping[str, Any], thresholds: Mapping[str, float],
                 n_threads: int = 1) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """DESeq2 on one cell type's pseudo-samples, then every contrast's results and DEG tables.

    Parameters
    ----------
    pb
        The pseudobulk dataset (:func:`degflow.pseudobulk.aggregate.aggregate`).
    cell_type
        The cell type (a value of ``pb.obs[groupby]``).
    groupby, design, reference_levels, contrasts
        The ``singlecell.pseudobulk`` keys of the same names.
    gene_filter
        ``singlecell.pseudobulk.filter``: ``min_count``, ``min_samples``.
    de, thresholds
        The validated ``singlecell.pseudobulk.de`` and ``thresholds`` blocks (size factors: ``de["size_factors"]``,
        :func:`degflow.pseudobulk.aggregate.size_factors`).
    n_threads
        The rule's threads.

    Returns
    -------
    (results, degs) per contrast, in the order of ``contrasts`` (:func:`degflow.de.run.contrast_tables`).
    """
    counts, samples, names = design_data(pb, cell_type, design=design, groupby=groupby,
                                         min_count=gene_filter["min_count"], min_samples=gene_filter["min_samples"])
    sf = size_factors(counts, kind=de["size_factors"], n_threads=n_threads)
    dds = fit_from_config(counts, samples, design=design, reference_levels=reference_levels, de=de,
                          size_factors=sf, n_threads=n_threads)
    return [contrast_tables(dds, list(spec), de=de, thresholds=thresholds, gene_names=names, n_threads=n_threads)
            for spec in contrasts.values()]


def summary(cell_types: pd.DataFrame, results: Sequence[pd.DataFrame], *,
            contrasts: Mapping[str, Sequence[str]], thresholds: Mapping[str, float]) -> pd.DataFrame:
    """``pseudobulk/summary.tsv``: one row per tested cell type x contrast (pseudo-samples, genes tested, up, down).

    Parameters
    ----------
    cell_types
        ``pseudobulk/cell_types.tsv`` (:func:`degflow.pseudobulk.aggregate.testable`).
    results
        The results tables of the tested cell types, each cell type's contrasts in turn (the order of the rule's
        inputs).
    contrasts, thresholds
        ``singlecell.pseudobulk.contrasts`` and ``thresholds``.

    Returns
    -------
    The table, columns :data:`SUMMARY_COLUMNS`.
    """
    tested = cell_types[cell_types["tested"]]
    specs = [(ct, n, name, spec) for ct, n in zip(tested["cell_type"], tested["n_pseudo_samples"], strict=False)
             for name, spec in contrasts.items()]  # the order of the results inputs
    rows = [{"cell_type": ct, "n_pseudo_samples": n,
             **summary_row(name, spec, res, lfc=thresholds["lfc"], padj=thresholds["padj"])}
            for (ct, n, name, spec), res in zip(specs, results, strict=False)]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
