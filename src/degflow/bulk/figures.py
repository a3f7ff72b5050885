"""The workflow's bulk figure steps: each builds one rule's tables and figures from degflow.bulk and degflow.pl.

Each function is the one library call of a ``workflow/scripts/bulk_*.py`` script (the script reads the inputs
and writes what it returns): sample QC (``bulk_sample_qc``), PCA (``bulk_pca``), distances (``bulk_distances``),
both with the batch removed (``bulk_batch_corrected``), a contrast's volcano/MA (``bulk_contrast_plot``) and
DEG heatmap (``bulk_deg_heatmap``), the overview across contrasts (``bulk_overview``) and the genes-of-interest
figures (``bulk_genes_of_interest_plots``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from degflow.bulk import batch as bulk_batch
from degflow.bulk import degs as degs
from degflow.bulk import genes_of_interest as goi
from degflow.bulk import qc
from degflow.bulk import vst as vst
from degflow.bulk.dataset import normalized_counts
from degflow.pl import bulk as plots
from degflow.pl import de as pl_de
from degflow.report import html_table

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.figure import Figure

__all__ = ["SampleMap", "batch_corrected_qc", "contrast_figure", "deg_heatmap_figure", "distances_qc",
           "genes_of_interest_count_figures", "genes_of_interest_heatmap", "overview", "pca_qc", "sample_qc"]


@dataclass
class SampleMap:
    """PCA and sample distances of one set of expression values (``bulk_batch_corrected``)."""

    #: PC coordinates of each sample and the colouring columns (index ``sample``).
    pca: pd.DataFrame
    pca_figure: Figure
    #: Sample x sample distances.
    distances: pd.DataFrame
    distance_figure: Figure


def sample_qc(data: ad.AnnData, counts: pd.DataFrame, quantifier_qc: pd.DataFrame
              ) -> tuple[pd.DataFrame, str, Figure]:
    """Per-sample QC (:func:`degflow.bulk.qc.sample_qc`): (table indexed by ``sample``, its HTML page, the bars).

    Parameters
    ----------
    data, counts
        The dataset and its counts (:func:`degflow.io.tables.read_bulk_dataset`).
    quantifier_qc
        ``bulk/counts/quantifier_qc.tsv`` indexed by sample (no columns: counts without quantifier logs).
    """
    table = qc.sample_qc(counts, gene_names=data.var["gene_name"].replace("", None),
                         quantifier_qc=quantifier_qc if quantifier_qc.shape[1] else None)
    table.index.name = "sample"
    return table, html_table(table.reset_index(), title="Sample QC"), plots.qc_bars(table)


def pca_qc(data: ad.AnnData, counts: pd.DataFrame, size_factors: pd.Series, *, n_top: int,
           color_by: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame, Figure]:
    """PCA of the variance-stabilised counts: (coordinates + ``color_by`` columns, outlier flags, figure).

    Parameters
    ----------
    data, counts, size_factors
        :func:`degflow.io.tables.read_bulk_dataset`.
    n_top
        Most variable genes used.
    color_by
        Sample-sheet columns the points are coloured/shaped by (also copied into the table).
    """
    coords, ratio = qc.pca(vst.variance_stabilised(counts, size_factors), n_top=n_top)
    table = coords.join(data.obs[color_by].astype(str))
    table.index.name = "sample"
    outliers = qc.outlier_flags(coords)
    outliers.index.name = "sample"
    return table, outliers, plots.pca(coords, ratio, data.obs, color_by=color_by)


def distances_qc(data: ad.AnnData, counts: pd.DataFrame, size_factors: pd.Series, *,
                 annotate_by: Sequence[str]) -> tuple[pd.DataFrame, Figure]:
    """Sample-to-sample distances of the variance-stabilised counts: (table, clustered heatmap).

    Parameters
    ----------
    data, counts, size_factors
        :func:`degflow.io.tables.read_bulk_dataset`.
    annotate_by
        Sample-sheet columns annotating the heatmap.
    """
    dist = qc.sample_distances(vst.variance_stabilised(counts, size_factors))
    return dist.distances, plots.distance_heatmap(dist, data.obs, annotate_by=annotate_by)


def batch_corrected_qc(data: ad.AnnData, counts: pd.DataFrame, size_factors: pd.Series, *, design: str,
                       batch: Sequence[str], n_top: int, color_by: Sequence[str]) -> SampleMap:
    """PCA and distances with the batch removed (limma removeBatchEffect on the VST).

    Parameters
    ----------
    data, counts, size_factors
        :func:`degflow.io.tables.read_bulk_dataset`.
    design, batch
        ``bulk.design`` (its other terms are kept) and ``bulk.batch`` (removed).
    n_top, color_by
        As :func:`pca_qc`; ``color_by`` also annotates the distance heatmap.
    """
    corrected = bulk_batch.batch_corrected(vst.variance_stabilised(counts, size_factors), data.obs, design=design,
                                   batch=batch)
    title = (f"{', '.join(batch)} removed (limma removeBatchEffect; design "
             f"{corrected.attrs['degflow']['design_kept']} kept)")
    coords, ratio = qc.pca(corrected, n_top=n_top)
    table = coords.join(data.obs[color_by].astype(str))
    table.index.name = "sample"
    pca_fig = plots.pca(coords, ratio, data.obs, color_by=color_by, title=title)
    dist = qc.sample_distances(corrected)
    return SampleMap(pca=table, pca_figure=pca_fig, distances=dist.distances,
                     distance_figure=plots.distance_heatmap(dist, data.obs, annotate_by=color_by, title=title))


def contrast_figure(results: pd.DataFrame, *, kind: str, title: str, thresholds: Mapping[str, float],
                    genes_of_interest: Sequence[str], top_n: int) -> Figure:
    """A contrast's volcano (``kind="volcano"``) or MA plot, the genes of interest ringed and labelled.

    Parameters
    ----------
    results
        The contrast's ``results.tsv`` indexed by ``gene_id``.
    kind
        ``volcano`` or ``ma``.
    title
        The figure's title (the contrast's name).
    thresholds
        ``bulk.thresholds`` (``lfc``, ``padj``).
    genes_of_interest
        ``bulk.genes_of_interest`` (IDs or names; those not found are left out).
    top_n
        Genes labelled on the volcano plot.
    """
    lookup = goi.match_genes(genes_of_interest, results.index,
                             results["gene_name"] if "gene_name" in results.columns else None)
    highlight = list(lookup.loc[lookup["matched_by"] != goi.NOT_FOUND, "gene_id"])
    if kind == "volcano":
        return pl_de.volcano(results, lfc=thresholds["lfc"], padj=thresholds["padj"], top_n=top_n, title=title,
                             highlight=highlight)
    return pl_de.ma(results, lfc=thresholds["lfc"], padj=thresholds["padj"], title=title, highlight=highlight)


def deg_heatmap_figure(data: ad.AnnData, counts: pd.DataFrame, size_factors: pd.Series, results: pd.DataFrame, *,
                       contrast: str, spec: Sequence[str] | Mapping[str, Any], design: str, batch: Sequence[str],
                       annotate_by: Sequence[str], n_top: int, thresholds: Mapping[str, float]) -> Figure:
    """Heatmap of a contrast's top DEGs (z-scored variance-stabilised counts, samples annotated).

    With ``batch`` the values are batch-corrected (limma removeBatchEffect), unless the contrast tests a batch
    column itself, as [factor, ...] or through a coefficient a name/vector/list contrast weights (removing it
    would remove what is tested): then the measured values, and the title says which.

    Parameters
    ----------
    data, counts, size_factors
        :func:`degflow.io.tables.read_bulk_dataset`.
    results
        The contrast's ``results.tsv`` indexed by ``gene_id``.
    contrast, spec
        The contrast's name (the title) and its spec.
    design, batch, annotate_by
        ``bulk.design``, ``bulk.batch`` and the annotation columns.
    n_top, thresholds
        The number of top DEGs and ``bulk.thresholds``.
    """
    from degflow.plan.design import contrast_batch_variables

    top = degs.top_genes(results, n=n_top, lfc=thresholds["lfc"], padj=thresholds["padj"])
    values, title = vst.variance_stabilised(counts, size_factors), contrast
    tested_batch = contrast_batch_variables(spec, batch, design=design, meta=data.obs)
    if batch and not tested_batch:
        values = bulk_batch.batch_corrected(values, data.obs, design=design, batch=batch)
        title += f" ({', '.join(batch)} removed)"
    elif batch:
        title += " (measured values)"
    return plots.deg_heatmap(values, list(top.index), data.obs, annotate_by=annotate_by,
                             gene_names=results["gene_name"].fillna(""), title=title)


def overview(summary: pd.DataFrame, results: Mapping[str, pd.DataFrame]) -> tuple[Figure, Figure, str]:
    """Across contrasts: (up/down bar chart, DEG-set overlap: Venn for <= 3 sets, UpSet beyond; summary page).

    Parameters
    ----------
    summary
        ``bulk/de/summary.tsv``.
    results
        Contrast name -> its results table (``gene_id`` and ``regulation`` are used).
    """
    counts_fig = pl_de.deg_counts_bar(summary)
    sets = {name: set(res.loc[res["regulation"] != "ns", "gene_id"]) for name, res in results.items()}
    return counts_fig, pl_de.deg_overlap(sets), html_table(summary, title="DEGs per contrast")


def genes_of_interest_count_figures(data: ad.AnnData, size_factors: pd.Series, table: pd.DataFrame, *,
                                    tests: Sequence[str], group_by: Sequence[str] | str,
                                    batch: Sequence[str]) -> Iterator[tuple[str, Figure]]:
    """A plotCounts-style figure per gene of interest (every test's log2FC and padj written in): (file stem, figure).

    A generator, so that each figure can be saved (and closed) before the next is drawn.

    Parameters
    ----------
    data, size_factors
        :func:`degflow.io.tables.read_bulk_dataset`.
    table
        ``bulk/genes_of_interest/genes_of_interest.tsv`` (:func:`degflow.bulk.genes_of_interest.results_table`).
    tests
        The tests of ``table``, in its column order.
    group_by
        Sample-sheet factor(s) on the x axis.
    batch
        ``bulk.batch``: points coloured by its first column.
    """
    norm = normalized_counts(data, size_factors.to_numpy())
    color_by = batch[0] if batch else None
    for _, row in table.drop_duplicates("gene_id").iterrows():
        name = row["gene_name"] if isinstance(row["gene_name"], str) and row["gene_name"] else row["gene_id"]
        title = name if name == row["gene_id"] else f"{name} ({row['gene_id']})"
        fig = plots.gene_counts(norm.loc[row["gene_id"]], data.obs, group_by=group_by, color_by=color_by,
                                title=title, notes=goi.report_lines(row, tests))
        yield goi.safe_name(f"{name}_{row['gene_id']}" if name != row["gene_id"] else name), fig


def genes_of_interest_heatmap(data: ad.AnnData, counts: pd.DataFrame, size_factors: pd.Series,
                              table: pd.DataFrame, *, design: str, batch: Sequence[str],
                              annotate_by: Sequence[str]) -> Figure:
    """Heatmap of the genes of interest (variance-stabilised, the batch removed with ``bulk.batch``).

    Parameters
    ----------
    data, counts, size_factors
        :func:`degflow.io.tables.read_bulk_dataset`.
    table
        ``bulk/genes_of_interest/genes_of_interest.tsv``; no gene: a figure saying so.
    design, batch, annotate_by
        ``bulk.design``, ``bulk.batch`` and the annotation columns.
    """
    genes = list(dict.fromkeys(table["gene_id"]))
    if not genes:
        return plots.message_figure("None of the genes of interest was found among the analysed genes:\n"
                                    "see genes_of_interest/lookup.tsv", title="Genes of interest")
    values = vst.variance_stabilised(counts, size_factors)
    label = "variance-stabilised"
    if batch:
        values = bulk_batch.batch_corrected(values, data.obs, design=design, batch=batch)
        label = f"{', '.join(batch)} removed"
    names = data.var["gene_name"].astype(str)
    return plots.deg_heatmap(values, genes, data.obs, annotate_by=annotate_by,
                             gene_names=names.where(names != "", data.var_names.to_series()),
                             title=f"Genes of interest ({label})")
