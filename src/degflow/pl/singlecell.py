"""Single-cell figures (drawing only): UMAPs, QC violins and scatter, marker dot plots, genes of interest,
cell-type composition.

Each function returns a :class:`matplotlib.figure.Figure`; the caller saves it (:func:`degflow.pl.base.save`).
The scanpy figures (UMAP, dot plots, violins) keep scanpy's own look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anndata as ad
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from degflow.errors import DegflowInputError
from degflow.pl.base import PALETTE, figure, message_figure, style

if TYPE_CHECKING:
    from degflow.singlecell.composition import CompositionTest

__all__ = [
    "composition_figure",
    "genes_of_interest_figures",
    "marker_dotplot_figure",
    "qc_scatter_figure",
    "qc_violin_figure",
    "umap_figure",
]


def umap_figure(adata: ad.AnnData, color: str | Sequence[str], *, ncols: int = 2, legend_on_data: bool = False,
                point_size: float | None = None):
    """UMAP coloured by each ``obs`` column or gene in ``color``; returns the Figure."""
    import scanpy as sc

    if "X_umap" not in adata.obsm:
        raise DegflowInputError("umap_figure needs obsm['X_umap']: run umap first")
    color = [color] if isinstance(color, str) else list(color)
    bad = [c for c in color if c not in adata.obs.columns and c not in adata.var_names]
    if bad:
        raise DegflowInputError(f"umap_figure: {bad} are neither obs columns nor genes")
    fig = sc.pl.umap(adata, color=color, ncols=ncols, show=False, return_fig=True, frameon=False,
                     legend_loc="on data" if legend_on_data else "right margin", size=point_size,
                     legend_fontsize=8)
    return fig


def qc_violin_figure(adata: ad.AnnData, *, keys: Sequence[str] = ("n_genes_by_counts", "total_counts",
                                                                  "pct_counts_mt"),
                     groupby: str = "sample", thresholds: Mapping[str, Sequence[float]] | None = None,
                     title: str | None = None):
    """Violins of QC metrics per sample, with threshold lines (``{metric: [values]}``); returns the Figure."""
    import matplotlib.pyplot as plt

    groups = adata.obs[groupby].astype("category") if groupby in adata.obs.columns else pd.Series(
        pd.Categorical(["all"] * adata.n_obs), index=adata.obs_names)
    cats = [c for c in groups.cat.categories if (groups == c).any()]
    fig, axes = plt.subplots(1, len(keys), figsize=(max(3.0, 0.6 * len(cats) + 1.5) * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        data = [adata.obs.loc[(groups == c).to_numpy(), key].to_numpy(dtype=float) for c in cats]
        parts = ax.violinplot(data, showmedians=True, widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.6)
        ax.set_xticks(range(1, len(cats) + 1), [str(c) for c in cats], rotation=90 if len(cats) > 4 else 0)
        ax.set_title(key)
        for value in (thresholds or {}).get(key, []):
            if value is not None:
                ax.axhline(value, color="crimson", lw=1, ls="--")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def qc_scatter_figure(adata: ad.AnnData, *, x: str = "total_counts", y: str = "n_genes_by_counts",
                      color: str = "pct_counts_mt", title: str | None = None):
    """Scatter of two QC metrics coloured by a third (the tutorial's QC scatter); returns the Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4))
    sca = ax.scatter(adata.obs[x], adata.obs[y], c=adata.obs[color], s=3, cmap="viridis", rasterized=True)
    fig.colorbar(sca, ax=ax, label=color)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def marker_dotplot_figure(adata: ad.AnnData, groupby: str, *, marker_genes: Mapping[str, Sequence[str]] | None = None,
                          n_genes: int = 4):
    """Dot plot of marker genes per cluster; returns the Figure.

    ``marker_genes`` (a marker YAML) shows those genes grouped by cell type; otherwise the top
    ``n_genes`` of :func:`degflow.singlecell.annotate.markers` (run it first) for every cluster.
    """
    import scanpy as sc

    if marker_genes is not None:
        var_names = {t: [g for g in gs if g in adata.var_names] for t, gs in marker_genes.items()}
        var_names = {t: gs for t, gs in var_names.items() if gs}
        dp = sc.pl.dotplot(adata, var_names, groupby=groupby, show=False, return_fig=True)
    else:
        key = f"rank_genes_groups_{groupby}"
        if key not in adata.uns:
            raise DegflowInputError(f"marker_dotplot_figure: run markers(adata, {groupby!r}) first")
        dp = sc.pl.rank_genes_groups_dotplot(adata, groupby=groupby, key=key, n_genes=n_genes, show=False,
                                             return_fig=True)
    dp.make_figure()
    return dp.fig


def genes_of_interest_figures(adata: ad.AnnData, genes: Sequence[str], *, groupby: str,
                              condition_key: str | None = None) -> dict:
    """Figures of a few genes: UMAP feature plots, a dot plot and stacked violins by ``groupby`` (x condition).

    ``genes`` must be ``var_names`` (see :func:`degflow.singlecell.genes.match_genes`). With ``condition_key`` (an ``obs``
    column, e.g. ``condition``) the dot plot and violins have one row per cell type and condition.

    Returns ``{"umap": Figure, "dotplot": Figure, "violin": Figure}``. With no gene (none of the genes of
    interest is in the data; not fatal) each is a figure saying so.

    Raises
    ------
    DegflowInputError
        ``groupby`` or ``condition_key`` not an obs column.
    """
    import scanpy as sc

    for key in (groupby, condition_key):
        if key is not None and key not in adata.obs.columns:
            raise DegflowInputError(f"genes of interest: obs column {key!r} not found")
    if not genes:
        text = "None of the genes of interest was found in the data:\nsee genes_of_interest/genes.tsv"
        return {name: message_figure(text, title=f"Genes of interest ({title})")
                for name, title in (("umap", "UMAP"), ("dotplot", "dot plot"), ("violin", "violins"))}
    by = [groupby] if condition_key is None else [groupby, condition_key]
    figs = {"umap": umap_figure(adata, list(genes), ncols=min(3, len(genes)))}
    dp = sc.pl.dotplot(adata, list(genes), groupby=by, show=False, return_fig=True)
    dp.make_figure()
    figs["dotplot"] = dp.fig
    sv = sc.pl.stacked_violin(adata, list(genes), groupby=by, show=False, return_fig=True)
    sv.make_figure()
    figs["violin"] = sv.fig
    return figs


def composition_figure(counts: pd.DataFrame, results: pd.DataFrame, *, test: CompositionTest,
                       pair_by: str | None = None, title: str | None = None) -> Figure:
    """Per-replicate proportions of each cell type by level, one panel per cell type, FDR in the panel title.

    Parameters
    ----------
    counts
        The long table of :func:`degflow.singlecell.composition.cell_counts` (with the ``test.factor`` column).
    results
        The test's table from :func:`degflow.singlecell.composition.propeller` (panels in its order, smallest p-value first).
    pair_by
        A design column whose replicates are measured at several levels (e.g. ``donor``): their points are
        joined by grey lines.
    """
    levels = list(test.levels[::-1]) if test.kind == "t" else list(test.levels)
    c = counts.copy()
    c["fraction"] = c["n_cells"] / c.groupby("sample")["n_cells"].transform("sum")
    c = c[c[test.factor].astype(str).isin(levels)]
    types = list(results["cell_type"])
    ncol = min(4, len(types))
    nrow = int(np.ceil(len(types) / ncol))
    with style():
        fig = figure((2.5 * ncol + 0.6, 2.4 * nrow + 0.7))
        axes = fig.subplots(nrow, ncol, squeeze=False)
        for i, ax in enumerate(axes.ravel()):
            if i >= len(types):
                ax.set_axis_off()
                continue
            ct = types[i]
            sub = c[c["cell_type"] == ct]
            x = sub[test.factor].astype(str).map({lv: j for j, lv in enumerate(levels)}).to_numpy(dtype=float)
            y = sub["fraction"].to_numpy()
            if pair_by is not None and pair_by in sub.columns:
                for _, g in sub.groupby(pair_by, sort=False):
                    if len(g) > 1:
                        gx = g[test.factor].astype(str).map({lv: j for j, lv in enumerate(levels)})
                        o = np.argsort(gx.to_numpy())
                        ax.plot(gx.to_numpy()[o], g["fraction"].to_numpy()[o], color="0.75", lw=0.8, zorder=1)
            colors = [PALETTE[j % len(PALETTE)] for j in x.astype(int)]
            ax.scatter(x, y, c=colors, s=22, zorder=2, edgecolors="white", linewidths=0.4)
            for j in range(len(levels)):
                m = y[x == j].mean() if (x == j).any() else np.nan
                ax.plot([j - 0.25, j + 0.25], [m, m], color="black", lw=1.4, zorder=3)
            row = results.iloc[i]
            ax.set_title(f"{ct}\nFDR = {row['padj']:.2g}", fontsize=9,
                         fontweight="bold" if row["padj"] < 0.05 else "normal")
            ax.set_xticks(range(len(levels)), levels, fontsize=8)
            ax.set_xlim(-0.6, len(levels) - 0.4)
            ax.set_ylim(bottom=0)
            ax.tick_params(axis="y", labelsize=8)
            if i % ncol == 0:
                ax.set_ylabel("share of the replicate's cells", fontsize=8)
        stat = "moderated t" if test.kind == "t" else "moderated F"
        fig.suptitle(title or f"cell-type proportions, {test.name} (propeller, {stat}; bar = mean, "
                              "FDR = BH over cell types)", fontsize=10)
    return fig
