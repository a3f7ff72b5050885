"""The workflow's single-cell steps that combine several library calls, one function per ``sc_*`` script.

Each function is the one library call of a ``workflow/scripts/sc_*.py`` script (the script reads the inputs and
writes what it returns): ``sc_genes``, ``sc_sample``, ``sc_merge``, ``sc_cells_removed``, ``sc_qc_plots``,
``sc_reference``, ``sc_annotate``, ``sc_umaps``, ``sc_dotplots``, ``sc_genes_of_interest``, ``sc_composition``.
Figures come back unsaved (generators where a rule draws many) for the script to write.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from degflow.errors import DegflowInputError
from degflow.pl import singlecell as pl_sc
from degflow.report import html_table
from degflow.runtime import note, warn
from degflow.singlecell import annotate as sc_annotate
from degflow.singlecell import genes as sc_genes
from degflow.singlecell import qc as sc_qc

if TYPE_CHECKING:
    import anndata as ad
    from matplotlib.figure import Figure

__all__ = ["annotate_with_markers", "cells_removed", "composition_tests", "detected_genes", "dotplot_figures",
           "genes_of_interest", "merge_samples", "qc_figures", "sample_qc", "transfer_labels", "umap_figures"]

log = logging.getLogger("degflow")


def detected_genes(sheet: pd.DataFrame, *, min_cells: int | None, source: str | Path | None = None) -> pd.DataFrame:
    """Genes detected in >= ``min_cells`` cells over all samples, before cell QC (the tutorials' order).

    The table of the ``sc_genes`` step (``gene``, ``n_cells``, ``kept``), reading one sample at a time (memory:
    the largest sample, at any number of samples).

    The genes shared by all samples, in the first sample's order (``anndata.concat(join="inner")``), each with the
    cells (all samples, before cell QC) where it is detected; ``kept`` when ``n_cells >= min_cells``. The same table
    as ``scanpy.pp.filter_genes`` on :func:`degflow.io.singlecell.read_samples` of the whole sheet, without holding every
    sample's counts at once.

    Parameters
    ----------
    sheet
        The validated single-cell sample sheet.
    min_cells
        ``singlecell.qc.min_cells`` (``None``: 0).
    source
        The sheet's path, for messages.

    Returns
    -------
    ``gene``, ``n_cells``, ``kept``.

    Raises
    ------
    DegflowInputError
        What :func:`degflow.io.singlecell.read_samples` raises; samples sharing no gene.
    """
    from degflow.io.singlecell import read_samples

    order: pd.Index | None = None
    counts: dict[str, int] = {}
    shared: set[str] = set()
    for i in range(len(sheet)):
        a = read_samples(sheet.iloc[[i]])
        x = sp.csr_matrix(a.X)
        detected = np.bincount(x.indices[x.data > 0], minlength=a.n_vars)
        names = pd.Index(a.var_names.astype(str))
        if order is None:
            order, shared = names, set(names)
        else:
            shared &= set(names)
        for g, c in zip(names, detected, strict=True):
            counts[g] = counts.get(g, 0) + int(c)
        del a, x
    if not shared:
        raise DegflowInputError(f"{source}: the samples share no gene names; were they quantified against different "
                                "references (or some with IDs, some with symbols)?")
    genes = [g for g in order if g in shared]
    if len(genes) < len(counts):
        log.warning("%d of %d genes are missing from some samples; keeping the %d shared genes",
                    len(counts) - len(genes), len(counts), len(genes))
    n_cells = np.array([counts[g] for g in genes], dtype=np.int64)
    return pd.DataFrame({"gene": genes, "n_cells": n_cells, "kept": n_cells >= (min_cells or 0)})


def sample_qc(adata: ad.AnnData, genes: pd.DataFrame, *, overrides: Mapping[str, Any] | None,
              qc: Mapping[str, Any], doublets: Mapping[str, Any], seed: int, n_threads: int = 1
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, ad.AnnData]:
    """One sample: keep the genes of ``qc/genes.tsv``, QC metrics, remove low-quality cells, then scrublet doublets.

    Parameters
    ----------
    adata
        The sample's cells (:func:`degflow.io.singlecell.read_samples`).
    genes
        ``singlecell/qc/genes.tsv`` (:func:`detected_genes`).
    overrides
        The sample sheet's per-sample QC thresholds (:func:`degflow.io.singlecell.qc_overrides`).
    qc
        ``singlecell.qc`` thresholds (``min_genes``, ``max_genes``, ``max_pct_mt``, ``nmads``); the gene filter
        was :func:`detected_genes`.
    doublets
        ``singlecell.doublets`` (``method``, ``remove``, ``expected_rate``, ``threshold``).
    seed, n_threads
        ``singlecell.seed`` and the rule's threads.

    Returns
    -------
    (every barcode's obs with ``passed_qc``, the QC rules' removals, the doublet table -- no rows without
    doublet detection --, the cells kept).
    """
    adata = adata[:, genes.loc[genes["kept"], "gene"].to_numpy()].copy()
    sc_qc.qc_metrics(adata)
    kept, removed = sc_qc.qc_filter(adata, min_cells=None, overrides=overrides, **qc)  # genes: detected_genes
    cells = adata.obs.assign(passed_qc=adata.obs_names.isin(kept.obs_names)).rename_axis("cell")
    table = pd.DataFrame(columns=["sample", "n_cells", "n_doublets", "threshold", "removed", "n_after"])
    if doublets["method"] == "scrublet":
        kept, table = sc_qc.doublets(kept, batch_key="sample", remove=doublets["remove"], seed=seed, n_threads=n_threads,
                                   expected_doublet_rate=doublets["expected_rate"], threshold=doublets["threshold"])
    return cells, removed, table, kept


def merge_samples(cells: Sequence[ad.AnnData], genes: pd.DataFrame, *, categories: Mapping[str, Sequence[str]],
                  min_cells: int | None) -> ad.AnnData:
    """All samples' kept cells in one AnnData of raw counts (obs categories in sheet order); per-gene QC redone.

    Parameters
    ----------
    cells
        Each sample's kept cells (:func:`sample_qc`), in sheet order.
    genes
        ``singlecell/qc/genes.tsv`` (the genes removed are counted in ``uns["degflow"]["qc_filter"]``).
    categories
        obs column -> its levels in sheet order.
    min_cells
        ``singlecell.qc.min_cells``, recorded in ``uns``.
    """
    import anndata as ad

    adata = ad.concat(list(cells), join="inner", merge="same", uns_merge="same")
    for col, levels in categories.items():  # sheet order, not alphabetical
        adata.obs[col] = pd.Categorical(adata.obs[col].astype(str), categories=levels)
    sc_qc.qc_metrics(adata)
    adata.uns.setdefault("degflow", {}).setdefault("qc_filter", {}).update(
        min_cells=min_cells, n_genes_removed=int((~genes["kept"]).sum()))
    return adata


def cells_removed(qc_tables: Sequence[pd.DataFrame], doublet_tables: Sequence[pd.DataFrame]
                  ) -> tuple[pd.DataFrame, str]:
    """Cells removed per sample by each QC rule and by doublet removal, in one table and page (samples in order).

    Parameters
    ----------
    qc_tables, doublet_tables
        Per sample: the QC rules' removals and the doublet table of :func:`sample_qc`.
    """
    parts = []
    for qc, d in zip(qc_tables, doublet_tables, strict=False):  # per sample: QC rules, then doublets
        parts.append(qc)
        if len(d):  # no rows when doublets.method is none
            parts.append(pd.DataFrame({"sample": d["sample"], "rule": "doublets", "metric": "doublet_score",
                                       "threshold": d["threshold"], "n_removed": d["removed"],
                                       "n_before": d["n_cells"], "n_after": d["n_after"]}))
    table = pd.concat(parts, ignore_index=True)
    return table, html_table(table, title="Cells removed by QC and doublet detection")


def qc_figures(before: pd.DataFrame, after: pd.DataFrame, *, samples: Sequence[str],
               thresholds: Mapping[str, Any]) -> Iterator[tuple[str, Figure, Figure]]:
    """QC metrics per sample before QC (every barcode) and after (cells kept): (stage, violins, scatter).

    A generator (stage ``before``, then ``after``), so that each figure can be saved before the next is drawn.

    Parameters
    ----------
    before
        Every barcode's obs (the samples' ``qc/cells`` tables).
    after
        The merged cells' obs.
    samples
        Sample order.
    thresholds
        The QC thresholds drawn on the violins.
    """
    import anndata as ad

    for stage, obs in (("before", before), ("after", after)):
        obs["sample"] = pd.Categorical(obs["sample"].astype(str), categories=samples)
        cells, title = ad.AnnData(obs=obs), f"{stage.capitalize()} QC: {len(obs):,} cells"
        yield (stage, pl_sc.qc_violin_figure(cells, thresholds=thresholds, title=title),
               pl_sc.qc_scatter_figure(cells, title=title))


def transfer_labels(adata: ad.AnnData, reference: ad.AnnData, *, seed: int, target_sum: float | None,
                    options: Mapping[str, Any], reference_file: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Transfer cell-type labels from a labelled reference: (labels per cell, summary, the summary's page).

    Parameters
    ----------
    adata, reference
        The processed cells and the labelled reference.
    seed, target_sum
        ``singlecell.seed`` and ``singlecell.normalize.target_sum`` (the reference is normalised as the query).
    options
        ``singlecell.reference`` without ``path`` (:func:`degflow.singlecell.annotate.transfer_labels`).
    reference_file
        The reference's path, in the page's title.
    """
    summary = sc_annotate.transfer_labels(adata, reference, seed=seed, target_sum=target_sum, **options)
    labels = pd.DataFrame({"cell": adata.obs_names, "cell_type_reference": adata.obs["cell_type_reference"].astype(str),
                           "confidence": adata.obs["cell_type_reference_confidence"].to_numpy()})
    return labels, summary, html_table(summary, title=f"Labels transferred from {reference_file}")


def annotate_with_markers(adata: ad.AnnData, markers: Mapping[str, Sequence[str]], *, markers_file: str,
                          groupby: str, min_score: float, min_margin: float) -> tuple[pd.DataFrame, str]:
    """Name each cluster after the marker-YAML cell type it expresses most (obs ``cell_type``).

    A cell type with none of its marker genes in the data can never be assigned: the terminal is told
    (:func:`degflow.runtime.note`) and the page says so.

    Parameters
    ----------
    adata
        The processed cells (annotated in place).
    markers
        The marker YAML (:func:`degflow.singlecell.annotate.load_markers`).
    markers_file
        Its path, named in the notes.
    groupby, min_score, min_margin
        ``singlecell.annotation`` keys (:func:`degflow.singlecell.annotate.annotate`).

    Returns
    -------
    (the score table with the mixed clusters flagged, its HTML page).
    """
    table = sc_annotate.annotate(adata, markers, groupby=groupby, min_score=min_score, min_margin=min_margin).reset_index()
    absent = [t for t, genes in markers.items() if not any(g in adata.var_names for g in genes)]
    for cell_type in absent:  # a type with no marker gene in the data can never be assigned
        note(f"cell type '{cell_type}' of {markers_file} has none of its marker genes in the data "
             f"({', '.join(markers[cell_type][:5])}): it cannot be assigned (its score column is empty)")
    missing = adata.uns["degflow"]["annotate"]["missing_genes"]
    caption = (f"Marker genes not in the data ({len(missing)}): {', '.join(missing[:30])}"
               f"{' ...' if len(missing) > 30 else ''}. " if len(missing) else "")
    caption += (f"Cell types with none of their markers in the data, never assigned: {', '.join(absent)}."
                if absent else "")
    return table, html_table(table, title=f"Cell-type scores of the {groupby} clusters", caption=caption)


def umap_figures(adata: ad.AnnData, panels: Mapping[str, Sequence[str]]) -> Iterator[Figure]:
    """UMAPs of the cells, one figure per panel (clusters, cell type, sample, condition/donor, QC metrics).

    A generator, in panel order.

    Parameters
    ----------
    adata
        The processed cells.
    panels
        Panel name -> the obs columns/genes it colours by (the ``clusters`` panel has its legend on the data).
    """
    for name, color in panels.items():
        yield pl_sc.umap_figure(adata, list(color), ncols=min(2, len(color)), legend_on_data=name == "clusters")


def dotplot_figures(adata: ad.AnnData, marker_tables: Sequence[pd.DataFrame], *, groupings: Sequence[str],
                    n_genes: int) -> Iterator[Figure]:
    """Dot plots of the top ``n_genes`` marker genes of each group, one per clustering (a generator, in order).

    Parameters
    ----------
    adata
        The processed cells.
    marker_tables
        Each clustering's marker table (``group``, ``gene``, ``rank``), in the order of ``groupings``.
    groupings
        The clusterings (obs columns).
    n_genes
        Top genes per group.
    """
    for grouping, table in zip(groupings, marker_tables, strict=False):
        top = table[table["rank"] <= n_genes].groupby("group", sort=False)["gene"].apply(list).to_dict()
        yield pl_sc.marker_dotplot_figure(adata, grouping, marker_genes=top)


def genes_of_interest(adata: ad.AnnData, genes: Sequence[str], *, groupby: str, condition: str | None
                      ) -> tuple[pd.DataFrame, dict[str, Figure]]:
    """Genes of interest: which were found, and UMAP feature plots, dot plot and violins by cell type x condition.

    None found is warned about on the terminal (:func:`degflow.runtime.warn`); some missing, in the log.

    Parameters
    ----------
    adata
        The annotated cells.
    genes
        ``singlecell.genes_of_interest``.
    groupby, condition
        The obs columns grouping the dot plot and the violins.

    Returns
    -------
    (``gene``, ``found``, ``name_in_data`` per gene; figures ``umap``, ``dotplot``, ``violin``).
    """
    found, missing = sc_genes.match_genes(adata.var_names, genes)
    if not found:
        warn(f"none of the {len(genes)} singlecell.genes_of_interest is in the data ({', '.join(genes[:10])}"
             f"{' ...' if len(genes) > 10 else ''}): the figures say so, genes_of_interest/genes.tsv lists them as "
             "not found and the pseudobulk genes_of_interest table, if any, is empty")
    elif missing:
        log.warning("genes of interest not in the data (left out): %s", ", ".join(missing))
    table = pd.DataFrame({"gene": genes, "found": [g in found for g in genes],
                          "name_in_data": [found.get(g, "") for g in genes]})
    figs = pl_sc.genes_of_interest_figures(adata, list(found.values()), groupby=groupby, condition_key=condition)
    return table, figs


def composition_tests(obs: pd.DataFrame, *, metadata: Any, tests: Any, groupby: str, sample_key: str, design: str,
                      transform: str, robust: bool) -> tuple[pd.DataFrame, list[tuple[pd.DataFrame, str, Figure]]]:
    """Differential cell-type composition (propeller): cell counts, and per test its table, page and figure.

    Parameters
    ----------
    obs
        The annotated cells' obs.
    metadata, tests
        The planned sample metadata and tests as records (:func:`degflow.plan.composition.metadata_frame`,
        :func:`~degflow.plan.composition.tests_from_records`).
    groupby, sample_key, design, transform, robust
        ``singlecell.composition`` keys (:func:`degflow.singlecell.composition.propeller`).

    Returns
    -------
    (cell counts per sample x cell type, [(results, HTML page, figure) per test, in test order]).
    """
    from degflow.plan import composition as comp_plan
    from degflow.singlecell import composition

    meta, planned = comp_plan.metadata_frame(metadata), comp_plan.tests_from_records(tests)
    counts = composition.cell_counts(obs, groupby=groupby, sample_key=sample_key, metadata=meta)
    results = composition.propeller(counts, design=design, tests=planned, metadata=meta, transform=transform,
                                    robust=robust)
    pair_by = next((c for c in meta.columns if c not in {t.factor for t in planned}
                    and isinstance(meta[c].dtype, pd.CategoricalDtype)), None)  # e.g. donor
    out = []
    for test in planned:
        res = results[test.name]
        html = html_table(res, title=f"cell-type composition, {test.name} (propeller, {transform})")
        out.append((res, html, pl_sc.composition_figure(counts, res, test=test, pair_by=pair_by)))
    return counts, out
