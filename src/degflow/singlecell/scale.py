"""Which path a single-cell step takes at this size: in memory (one AnnData) or on disk (:mod:`.ondisk`).

``singlecell.scale.on_disk`` is ``auto`` (on disk above :data:`degflow.singlecell.ondisk.ON_DISK_AUTO_CELLS` cells),
``true`` or ``false``. Each function here is what one rule's script calls: it counts the cells of its input
(:func:`degflow.singlecell.ondisk.h5ad_cells`, from the file's metadata only) and takes one path or the other, so the
in-memory path stays exactly what it was for data that fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from degflow.runtime import note
from degflow.singlecell import ondisk

if TYPE_CHECKING:  # anndata is slow to import
    import anndata as ad


def on_disk(scale: Mapping[str, Any], paths: str | Path | Sequence[str | Path]) -> bool:
    """Whether the on-disk path is taken for these input files.

    Parameters
    ----------
    scale
        The ``singlecell.scale`` block.
    paths
        The step's ``.h5ad`` input(s).
    """
    return ondisk.wanted(scale["on_disk"], ondisk.h5ad_cells(paths))


def merge(cells: Sequence[str | Path], genes: pd.DataFrame, out: str | Path, *,
          categories: Mapping[str, Sequence[str]], min_cells: int | None, scale: Mapping[str, Any]) -> None:
    """Merge the samples' QC-passed cells into ``out`` (in memory, or one sample at a time on disk).

    Parameters
    ----------
    cells
        The samples' ``.h5ad`` files, in sheet order.
    genes
        The ``sc_genes`` table (``kept`` column).
    out
        The merged ``.h5ad`` written.
    categories, min_cells
        As :func:`degflow.singlecell.steps.merge_samples` takes them.
    scale
        The ``singlecell.scale`` block.
    """
    if on_disk(scale, cells):
        ondisk.merge(cells, out, categories=categories,
                     uns_update={"min_cells": min_cells, "n_genes_removed": int((~genes["kept"]).sum())})
        return
    import anndata as ad

    from degflow.singlecell.steps import merge_samples

    merge_samples([ad.read_h5ad(f) for f in cells], genes, categories=categories,
                  min_cells=min_cells).write_h5ad(out)


def process(src: str | Path, dst: str | Path, *, process: Mapping[str, Any], scale: Mapping[str, Any],
            n_threads: int) -> None:
    """Normalise ... UMAP (:func:`degflow.singlecell.process.process`), in memory or in chunks of cells on disk.

    Parameters
    ----------
    src, dst
        The merged ``.h5ad`` read and the processed one written.
    process
        The options of :func:`degflow.singlecell.process.process` (the rule's ``process`` params).
    scale
        The ``singlecell.scale`` block.
    n_threads
        The rule's threads.
    """
    if on_disk(scale, src):
        ondisk.process(src, dst, **process, chunk_cells=scale["chunk_cells"], n_threads=n_threads)
        return
    import anndata as ad

    from degflow.singlecell.process import process as in_memory

    adata = ad.read_h5ad(src)
    in_memory(adata, **process, n_threads=n_threads)
    adata.write_h5ad(dst)


def markers(path: str | Path, grouping: str, *, test: Mapping[str, Any], scale: Mapping[str, Any],
            seed: int) -> pd.DataFrame:
    """Marker genes of one clustering; on disk, on at most ``scale.marker_cells_per_group`` cells per group.

    A cap that takes effect is announced on the terminal (:func:`degflow.runtime.note`) and in the log.

    Parameters
    ----------
    path
        The annotated ``.h5ad``.
    grouping
        The obs column.
    test
        ``singlecell.marker_test`` (``method``, ``n_genes``).
    scale
        The ``singlecell.scale`` block.
    seed
        ``singlecell.seed``: which cells the cap keeps.
    """
    if on_disk(scale, path):
        cap = scale["marker_cells_per_group"]
        table, capped = ondisk.markers(path, grouping, method=test["method"], n_genes=test["n_genes"],
                                       max_cells_per_group=cap, seed=seed, chunk_cells=scale["chunk_cells"])
        if capped:
            note(f"markers of {grouping}: {len(capped)} group(s) larger than {cap} cells tested on a random {cap} of "
                 "their cells (singlecell.scale.marker_cells_per_group)")
        return table
    import anndata as ad

    from degflow.singlecell.annotate import markers as in_memory

    return in_memory(ad.read_h5ad(path), grouping, method=test["method"], n_genes=test["n_genes"])


def read_for_figures(path: str | Path, *, scale: Mapping[str, Any], genes: Sequence[str] | None = None
                     ) -> ad.AnnData:
    """The cells a figure step draws: all of it in memory; on disk obs, obsm and only ``genes``' columns.

    Parameters
    ----------
    path
        The processed or annotated ``.h5ad``.
    scale
        The ``singlecell.scale`` block.
    genes
        The genes the figures draw (on disk; ``None``: none, e.g. UMAPs coloured by obs columns).
    """
    if on_disk(scale, path):
        return ondisk.read_light(path, genes=list(genes or ()), chunk_cells=scale["chunk_cells"])
    import anndata as ad

    return ad.read_h5ad(path)


def annotation_cells(path: str | Path, *, scale: Mapping[str, Any], genes: Sequence[str]) -> ad.AnnData:
    """The cells ``sc_annotate`` names: all of it in memory; on disk obs, obsm and only the marker genes' columns.

    Parameters
    ----------
    path
        The processed ``.h5ad``.
    scale
        The ``singlecell.scale`` block.
    genes
        The marker YAML's genes (the cluster scores read no other column of ``X``).
    """
    return read_for_figures(path, scale=scale, genes=genes)


def write_annotated(adata: ad.AnnData, src: str | Path, dst: str | Path, *, scale: Mapping[str, Any]) -> None:
    """Write the annotated cells: the whole AnnData in memory; on disk a copy of ``src`` with ``adata``'s obs and uns.

    Parameters
    ----------
    adata
        What :func:`annotation_cells` returned, annotated (``obs`` and ``uns`` changed only).
    src
        The processed ``.h5ad`` it was read from.
    dst
        The annotated ``.h5ad`` written.
    scale
        The ``singlecell.scale`` block.
    """
    if on_disk(scale, src):
        ondisk.copy_with(src, dst, obs=adata.obs, uns=adata.uns)
    else:
        adata.write_h5ad(dst)


def var_names(path: str | Path) -> pd.Index:
    """The genes of an ``.h5ad`` without reading its matrix.

    Parameters
    ----------
    path
        The ``.h5ad``.
    """
    return ondisk.var_names(path)


def dotplot_cells(path: str | Path, marker_tables: Sequence[pd.DataFrame], *, n_genes: int,
                  markers: Mapping[str, Sequence[str]] | None, scale: Mapping[str, Any]) -> ad.AnnData:
    """The cells the dot plots draw: on disk only the top ``n_genes`` of every group and the marker YAML's genes.

    Parameters
    ----------
    path
        The annotated ``.h5ad``.
    marker_tables
        Each clustering's marker table (``group``, ``rank``, ``gene``).
    n_genes
        Top genes per group drawn.
    markers
        The marker YAML's genes per cell type (``None`` without annotation).
    scale
        The ``singlecell.scale`` block.
    """
    genes = {g for t in marker_tables for g in t.loc[t["rank"] <= n_genes, "gene"]}
    genes |= {g for gs in (markers or {}).values() for g in gs}
    return read_for_figures(path, scale=scale, genes=sorted(genes))


def genes_of_interest_cells(path: str | Path, genes: Sequence[str], *, scale: Mapping[str, Any]) -> ad.AnnData:
    """The cells the genes-of-interest figures draw: on disk only the columns of the genes found.

    Parameters
    ----------
    path
        The annotated ``.h5ad``.
    genes
        ``singlecell.genes_of_interest`` (matched as :func:`degflow.singlecell.genes.match_genes` does).
    scale
        The ``singlecell.scale`` block.
    """
    if not on_disk(scale, path):
        return read_for_figures(path, scale=scale)
    from degflow.singlecell.genes import match_genes

    found, _ = match_genes(var_names(path), genes)
    return read_for_figures(path, scale=scale, genes=list(found.values()))
