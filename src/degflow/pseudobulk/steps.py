"""The pseudobulk steps of the workflow: aggregation, one cell type's DESeq2 fit and figures, the summaries.

Each function is the one library call of a ``workflow/scripts/pb_*.py`` script (the script reads the inputs and
writes what it returns): ``pb_aggregate``, ``pb_de``, ``pb_figures``, ``pb_summary``, ``pb_genes_of_interest``,
``pb_proportions``. The DESeq2 options come from the ``singlecell.pseudobulk.de`` block through
:mod:`degflow.de.run`, as for bulk.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from degflow.de.run import contrast_tables, fit_from_config
from degflow.de.tables import deg_table, summary_row
from degflow.pl import pseudobulk as pl_pb
from degflow.pseudobulk import aggregate as pb_aggregate
from degflow.pseudobulk.aggregate import design_data, size_factors
from degflow.report import html_table

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.figure import Figure

__all__ = ["SUMMARY_COLUMNS", "aggregate", "cell_type_de", "cell_type_figures", "genes_of_interest", "proportions",
           "summary"]

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
            contrasts: Mapping[str, Sequence[str]], thresholds: Mapping[str, float]) -> tuple[pd.DataFrame, str, Figure]:
    """One row per tested cell type x contrast (pseudo-samples, genes tested, up, down); its page; the DEG-count heatmap.

    Parameters
    ----------
    cell_types
        ``pseudobulk/cell_types.tsv`` (:func:`degflow.pseudobulk.aggregate.testable`); the cell types not tested
        are drawn as grey rows of the heatmap.
    results
        The results tables of the tested cell types, each cell type's contrasts in turn (the order of the rule's
        inputs).
    contrasts, thresholds
        ``singlecell.pseudobulk.contrasts`` and ``thresholds``.

    Returns
    -------
    (``pseudobulk/summary.tsv`` with columns :data:`SUMMARY_COLUMNS`, its HTML page, the heatmap).
    """
    tested = cell_types[cell_types["tested"]]
    specs = [(ct, n, name, spec) for ct, n in zip(tested["cell_type"], tested["n_pseudo_samples"], strict=False)
             for name, spec in contrasts.items()]  # the order of the results inputs
    rows = [{"cell_type": ct, "n_pseudo_samples": n,
             **summary_row(name, spec, res, lfc=thresholds["lfc"], padj=thresholds["padj"])}
            for (ct, n, name, spec), res in zip(specs, results, strict=False)]
    table = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    html = html_table(table, title="Pseudobulk DEGs per cell type and contrast")
    skipped = cell_types.loc[~cell_types["tested"], "cell_type"].tolist()
    return table, html, pl_pb.deg_count_heatmap(table, skipped=skipped)


def aggregate(path: str | Path, *, groupby: str, sample_key: str, min_cells: int, min_counts: int, design: str,
              contrasts: Mapping[str, Sequence[str]], min_replicates: int, scale: Mapping[str, Any]
              ) -> tuple[ad.AnnData, pd.DataFrame, pd.DataFrame, str]:
    """Raw counts summed per sample x cell type; which cell types can be tested, and why not.

    Parameters
    ----------
    path
        The annotated cells (``singlecell/annotated.h5ad``).
    groupby, sample_key, min_cells, min_counts, design, contrasts, min_replicates
        The ``singlecell.pseudobulk`` keys (:func:`degflow.pseudobulk.aggregate.aggregate` and
        :func:`~degflow.pseudobulk.aggregate.testable`).
    scale
        ``singlecell.scale``: at atlas size the counts are streamed from disk
        (:func:`degflow.singlecell.ondisk.aggregate`, the same sums).

    Returns
    -------
    (pseudobulk dataset, cell types table, the cell types left out, the cell types' HTML page).
    """
    from degflow.singlecell import ondisk
    from degflow.singlecell.scale import on_disk

    if on_disk(scale, path):
        pb = ondisk.aggregate(path, groupby=groupby, sample_key=sample_key, min_cells=min_cells,
                              min_counts=min_counts, chunk_cells=scale["chunk_cells"])
    else:
        import anndata as ad

        pb = pb_aggregate.aggregate(ad.read_h5ad(path), groupby=groupby, sample_key=sample_key, min_cells=min_cells,
                                    min_counts=min_counts)
    cell_types = pb_aggregate.testable(pb, design=design, contrasts=contrasts, groupby=groupby,
                                       min_replicates=min_replicates)
    skipped = cell_types.loc[~cell_types["tested"], ["cell_type", "n_cells", "n_pseudo_samples", "replicates",
                                                     "reason"]]
    html = html_table(cell_types.drop(columns="folder"), title="Cell types tested for differential expression")
    return pb, cell_types, skipped, html


def cell_type_figures(results: Sequence[pd.DataFrame], *, cell_type: str, contrasts: Sequence[str],
                      thresholds: Mapping[str, float], top_n: int) -> Iterator[tuple[Figure, str]]:
    """One cell type: per contrast a volcano plot and a searchable DEG page, (figure, HTML) in contrast order.

    A generator, so that each figure can be saved (and closed) before the next is drawn.

    Parameters
    ----------
    results
        The cell type's ``results.tsv`` of each contrast, indexed by ``gene_id``.
    cell_type
        Its name, in the titles.
    contrasts
        The contrasts' names, in the order of ``results``.
    thresholds, top_n
        ``singlecell.pseudobulk.thresholds`` and the genes labelled on the volcano plot.
    """
    from degflow.pl import de as pl_de

    for contrast, res in zip(contrasts, results, strict=False):
        title = f"{cell_type}: {contrast}"
        fig = pl_de.volcano(res, lfc=thresholds["lfc"], padj=thresholds["padj"], top_n=top_n, title=title)
        caption = (f"Genes with |log2 fold change| > {thresholds['lfc']} and adjusted p-value < {thresholds['padj']} "
                   f"in {cell_type}, sorted by adjusted p-value. Click a column header to sort; type in the box to "
                   "filter.")
        yield fig, html_table(deg_table(res.reset_index()), title=f"DEGs: {title}", caption=caption)


def genes_of_interest(cell_types: pd.DataFrame, genes: pd.DataFrame, results: Sequence[pd.DataFrame], *,
                      contrasts: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """The pseudobulk results of the genes of interest in every tested cell type and contrast: (table, page).

    Parameters
    ----------
    cell_types
        ``pseudobulk/cell_types.tsv``.
    genes
        ``singlecell/genes_of_interest/genes.tsv`` (``found``, ``name_in_data``).
    results
        The results tables of the tested cell types, each cell type's contrasts in turn.
    contrasts
        The contrasts' names.

    Returns
    -------
    :func:`degflow.pseudobulk.aggregate.genes_of_interest_table` (no gene found: an empty table with its header)
    and its HTML page.
    """
    tested = cell_types.loc[cell_types["tested"], "cell_type"]
    keys = [(ct, name) for ct in tested for name in contrasts]  # the order of the results inputs
    found = list(genes.loc[genes["found"].astype(str) == "True", "name_in_data"])
    table = pb_aggregate.genes_of_interest_table(dict(zip(keys, results, strict=False)), found)
    caption = "" if found else "None of the genes of interest was found in the single-cell data (see genes.tsv)."
    return table, html_table(table, title="Genes of interest: pseudobulk results per cell type and contrast",
                             caption=caption)


def proportions(obs: pd.DataFrame, *, groupby: str, sample_key: str, by: str | None
                ) -> tuple[pd.DataFrame, str, Figure]:
    """Cell-type composition of every sample: (table, its page, stacked bars grouped by ``by``).

    Parameters
    ----------
    obs
        The cells' obs (``singlecell/annotated.h5ad``).
    groupby, sample_key
        ``singlecell.pseudobulk`` keys.
    by
        The tested factor the samples are grouped by in the figure (or ``None``).
    """
    props = pb_aggregate.proportions(obs, groupby=groupby, sample_key=sample_key)
    html = html_table(props, title=f"{groupby} proportions per {sample_key}")
    return props, html, pl_pb.proportions_figure(props, groupby=groupby, sample_key=sample_key, by=by)

