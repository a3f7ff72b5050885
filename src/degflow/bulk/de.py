"""The bulk DE steps of the workflow: fit the design once, each contrast's and each LRT's tables, the summary,
the workbook.

Each function is the one library call of a ``workflow/scripts/bulk_*.py`` script (``bulk_fit``,
``bulk_contrast``, ``bulk_deg_html``, ``bulk_lrt``, ``bulk_lrt_patterns``, ``bulk_summary``,
``bulk_workbook``); the DESeq2 options come from the ``bulk.de`` block
through :mod:`degflow.de.run`, which pseudobulk shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from degflow.bulk.dataset import length_normalization_factors, normalized_counts
from degflow.bulk.patterns import lrt_patterns, lrt_table, significant_genes
from degflow.de.run import contrast_tables, fit_from_config
from degflow.de.tables import summary_row
from degflow.report import html_table

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.figure import Figure

__all__ = ["BulkFit", "contrast", "deg_page", "fit_dataset", "lrt", "lrt_clusters", "summary",
           "workbook_sheets"]


@dataclass
class BulkFit:
    """The fitted model of the design and the tables written beside it."""

    #: The fitted ``DeseqDataSet``; ``uns["degflow_gene_names"]`` / ``uns["degflow_gene_biotypes"]`` carry the
    #: dataset's gene names and biotypes to the contrasts.
    model: Any
    #: ``sample``, ``size_factor`` (the fit's, in sample order).
    size_factors: pd.DataFrame
    #: Genes x samples normalised counts (index ``gene_id``): counts / size factor, or counts / normalisation
    #: factor when transcript lengths are used, as DESeq2's ``counts(dds, normalized = TRUE)``.
    normalized: pd.DataFrame


def fit_dataset(data: ad.AnnData, *, design: str, reference_levels: Mapping[str, str] | None,
                de: Mapping[str, Any], n_threads: int = 1) -> BulkFit:
    """Fit the DESeq2 model of ``design`` to the analysis dataset (``bulk/counts/dataset.h5ad``).

    Size factors: ``de["size_factors"]`` (``ratio`` = DESeq2's ``estimateSizeFactors``, else ``poscounts``),
    computed by the numba kernels. Counts of salmon/kallisto/RSEM read with ``counts_from_abundance: no``
    carry tximport's average transcript lengths (layer ``avg_tx_length``): these become DESeq2's
    normalisation factors (:func:`degflow.bulk.dataset.length_normalization_factors`) instead.

    Parameters
    ----------
    data
        The dataset of :func:`degflow.bulk.dataset.build_dataset` (samples x genes).
    design, reference_levels
        ``bulk.design`` and ``bulk.reference_levels``.
    de
        The validated ``bulk.de`` block (:func:`degflow.de.run.fit_from_config`).
    n_threads
        The rule's threads.

    Returns
    -------
    BulkFit
    """
    from degflow.kernels.sizefactors import size_factors_poscounts, size_factors_ratio

    counts = pd.DataFrame(data.X.T, index=data.var_names, columns=data.obs_names)
    kernel = size_factors_ratio if de["size_factors"] == "ratio" else size_factors_poscounts
    # salmon/kallisto/RSEM read with counts_from_abundance: no -> tximport's lengths become DESeq2 normalisation factors
    nf = (length_normalization_factors(counts, data.layers["avg_tx_length"].T) if "avg_tx_length" in data.layers
          else None)
    sf = kernel(data.X, n_threads=n_threads) if nf is None else None  # numba kernel; = DESeq2's estimateSizeFactors
    dds = fit_from_config(counts, data.obs, design=design, reference_levels=reference_levels, de=de,
                          size_factors=sf, normalization_factors=nf, n_threads=n_threads)
    dds.uns["degflow_gene_names"] = data.var["gene_name"].to_dict()
    dds.uns["degflow_gene_biotypes"] = data.var["gene_biotype"].to_dict() if "gene_biotype" in data.var else {}
    sf = pd.DataFrame({"sample": data.obs_names, "size_factor": dds.obs["size_factors"].to_numpy()})
    normed = (normalized_counts(data, sf["size_factor"].to_numpy()) if nf is None else  # counts / NF, as DESeq2
              pd.DataFrame(counts.to_numpy() / nf, index=counts.index, columns=counts.columns).rename_axis("gene_id"))
    return BulkFit(model=dds, size_factors=sf, normalized=normed)


def contrast(dds: Any, spec: Sequence[str] | Mapping[str, Any], *, de: Mapping[str, Any],
             thresholds: Mapping[str, float], n_threads: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One contrast's Wald test on the model of :func:`fit_dataset`: (results of every tested gene, DEGs).

    Parameters
    ----------
    dds
        :attr:`BulkFit.model` (its gene names and biotypes annotate the tables).
    spec
        The contrast: ``[factor, level, reference]`` or a ``name`` / ``vector`` / ``list`` mapping.
    de, thresholds
        The validated ``bulk.de`` and ``bulk.thresholds`` blocks.
    n_threads
        The rule's threads.

    Returns
    -------
    (results, degs) of :func:`degflow.de.run.contrast_tables`.
    """
    names = pd.Series(dds.uns["degflow_gene_names"])
    biotypes = pd.Series(dds.uns.get("degflow_gene_biotypes", {}), dtype=object)
    return contrast_tables(dds, spec, de=de, thresholds=thresholds, gene_names=names,
                           gene_biotypes=biotypes if len(biotypes) else None, n_threads=n_threads)


def deg_page(deg: pd.DataFrame, *, contrast: str, thresholds: Mapping[str, float]) -> str:
    """A contrast's DEG table (:func:`contrast`) as a searchable, sortable HTML page for the report.

    Parameters
    ----------
    deg
        The contrast's ``deg.tsv``.
    contrast
        Its name, in the title.
    thresholds
        ``bulk.thresholds``, in the caption.
    """
    caption = (f"Genes with |log2 fold change| > {thresholds['lfc']} and adjusted p-value < {thresholds['padj']}, "
               "sorted by adjusted p-value. Click a column header to sort; type in the box to filter.")
    return html_table(deg, title=f"DEGs: {contrast}", caption=caption)


def lrt(dds: Any, spec: Mapping[str, Any], *, name: str, de: Mapping[str, Any], thresholds: Mapping[str, float],
        n_threads: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """A likelihood-ratio test against a reduced formula: every tested gene, the significant ones, their page.

    Parameters
    ----------
    dds
        :attr:`BulkFit.model`.
    spec
        The planned test (:func:`degflow.plan.bulk.plan_lrt`): ``reduced``, ``df``, ``coefficient``.
    name
        The test's name (``bulk.lrt`` key), for the page's title.
    de, thresholds
        The validated ``bulk.de`` (``alpha``, ``cooks_filter``, ``independent_filter``) and ``bulk.thresholds``
        (``padj``) blocks.
    n_threads
        The rule's threads.

    Returns
    -------
    (results, significant, html): :func:`degflow.bulk.patterns.lrt_table`, its
    :func:`~degflow.bulk.patterns.significant_genes` and their searchable HTML page.
    """
    from degflow.de.results import lrt_results

    res = lrt_results(dds, spec["reduced"], alpha=de["alpha"], cooks_filter=de["cooks_filter"],
                      independent_filter=de["independent_filter"], n_cpus=n_threads)
    names = pd.Series(dds.uns["degflow_gene_names"])
    table = lrt_table(res, names, padj=thresholds["padj"])
    sig = significant_genes(table)
    caption = (f"Likelihood-ratio test {spec['reduced']} -> design ({spec['df']} degrees of freedom): genes with padj < "
               f"{thresholds['padj']}; log2FoldChange is {spec['coefficient']}. Click a header to sort.")
    return table, sig, html_table(sig, title=f"LRT: {name}", caption=caption)


def lrt_clusters(data: ad.AnnData, counts: pd.DataFrame, size_factors: pd.Series, significant: pd.DataFrame, *,
                 name: str, design: str, spec: Mapping[str, Any], padj: float) -> tuple[pd.DataFrame, str, Figure]:
    """An LRT's significant genes clustered by their z-scored expression across a factor's levels (degPatterns).

    Parameters
    ----------
    data, counts, size_factors
        :func:`degflow.io.tables.read_bulk_dataset` (the variance-stabilised counts are clustered).
    significant
        The test's ``significant.tsv`` (:func:`lrt`).
    name, design
        The test's name and ``bulk.design``, in the titles.
    spec
        The planned test: ``reduced``, ``group_by``, ``n_clusters``, ``max_clusters``, ``min_cluster_size``,
        ``max_genes`` (:func:`degflow.bulk.patterns.lrt_patterns`).
    padj
        ``bulk.thresholds.padj``, in the title.

    Returns
    -------
    (cluster membership, its HTML page, the pattern figure).
    """
    from degflow.bulk import vst as vst

    title = f"{name}: {design} vs {spec['reduced']}: {len(significant)} genes with padj < {padj}"
    membership, fig = lrt_patterns(vst.variance_stabilised(counts, size_factors), data.obs[spec["group_by"]],
                                   significant, title=title, n_clusters=spec["n_clusters"],
                                   max_clusters=spec["max_clusters"], min_cluster_size=spec["min_cluster_size"],
                                   max_genes=spec["max_genes"])
    html = html_table(membership, title=f"LRT clusters: {name}",
                      caption="cluster 0: genes in a cluster below min_cluster_size; z_<level>: mean z-score")
    return membership, html, fig


def summary(contrasts: Mapping[str, Sequence[str] | Mapping[str, Any]], results: Sequence[pd.DataFrame], *,
            thresholds: Mapping[str, float]) -> pd.DataFrame:
    """``bulk/de/summary.tsv``: one row per contrast (genes tested, up, down, thresholds).

    Parameters
    ----------
    contrasts
        ``bulk.contrasts`` (name -> spec), in the order of ``results``.
    results
        Each contrast's results table (:func:`contrast`).
    thresholds
        ``bulk.thresholds``.

    Returns
    -------
    One :func:`degflow.de.tables.summary_row` per contrast.
    """
    return pd.DataFrame([summary_row(name, spec, res, lfc=thresholds["lfc"], padj=thresholds["padj"])
                         for (name, spec), res in zip(contrasts.items(), results, strict=False)])


def workbook_sheets(summary: pd.DataFrame, degs: Mapping[str, pd.DataFrame], lrts: Mapping[str, pd.DataFrame], *,
                    genes_of_interest: Sequence[pd.DataFrame] = ()) -> dict[str, pd.DataFrame]:
    """The sheets of ``bulk/de/deg_tables.xlsx`` (:func:`degflow.report.write_workbook`), in order.

    Parameters
    ----------
    summary
        ``bulk/de/summary.tsv`` (sheet ``summary``).
    degs
        Contrast name -> its DEG table (a sheet each, named after the contrast).
    lrts
        Likelihood-ratio test name -> its significant genes (sheet ``LRT <name>``).
    genes_of_interest
        Empty, or the genes-of-interest table and its lookup (sheets ``genes_of_interest``,
        ``genes_of_interest_lookup``).
    """
    sheets = {"summary": summary}
    sheets.update(degs)
    for name, table in lrts.items():  # likelihood-ratio tests: significant genes
        sheets[f"LRT {name}"] = table
    for name, table in zip(("genes_of_interest", "genes_of_interest_lookup"), genes_of_interest, strict=False):
        sheets[name] = table
    return sheets
