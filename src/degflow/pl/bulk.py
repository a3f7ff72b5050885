"""Figures of bulk RNA-seq samples and genes: drawing only.

Sample QC (:func:`qc_bars`, :func:`pca`, :func:`distance_heatmap`), expression heatmaps of selected genes
(:func:`deg_heatmap`), one gene's counts per group (:func:`gene_counts`, DESeq2's ``plotCounts``) and the LRT
gene patterns (:func:`plot_patterns`). Every function takes tables computed elsewhere (:mod:`degflow.bulk.qc`,
:mod:`degflow.bulk.degs`, :mod:`degflow.bulk.patterns`), draws them in the house style (:mod:`degflow.pl.base`)
and returns a :class:`matplotlib.figure.Figure`; :func:`degflow.pl.base.save` writes it (byte-reproducible
PNG/PDF) and closes it. Nothing here fits a model or filters genes. Volcano and MA plots: :mod:`degflow.pl.de`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from degflow.bulk import degs, qc
from degflow.checks import check_matrix
from degflow.errors import DegflowInputError
from degflow.pl.base import (
    COLORS,
    PALETTE,
    check_sheet,
    figure,
    fmt,
    freeze_layout,
    message_figure,
    place_labels,
    style,
)

__all__ = ["deg_heatmap", "distance_heatmap", "gene_counts", "pca", "plot_patterns", "qc_bars"]

_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _level_colors(values: pd.Series) -> dict[object, str]:
    levels = list(pd.unique(values.dropna()))
    if isinstance(values.dtype, pd.CategoricalDtype):
        levels = [lv for lv in values.cat.categories if lv in set(levels)]
    else:
        levels = sorted(levels, key=str)
    return {lv: PALETTE[i % len(PALETTE)] for i, lv in enumerate(levels)}


def _annotation_colors(sheet: pd.DataFrame, variables: Sequence[str]) -> tuple[pd.DataFrame, list[tuple[str, dict]]]:
    """Colour per sample for each annotation variable, plus legend entries.

    Categorical variables get the Okabe-Ito palette, shifted by 3 per variable so adjacent
    annotation bars differ; numeric variables with many values a viridis ramp.
    """
    cols = {}
    legends = []
    for i, v in enumerate(variables):
        vals = sheet[v]
        if pd.api.types.is_numeric_dtype(vals) and vals.nunique() > len(PALETTE):
            cmap = mpl.colormaps["viridis"]
            lo, hi = float(vals.min()), float(vals.max())
            span = hi - lo or 1.0
            cols[v] = [mpl.colors.to_hex(cmap((x - lo) / span)) if pd.notna(x) else "#FFFFFF" for x in vals]
            legends.append((v, {f"{lo:g}": cmap(0.0), f"{hi:g}": cmap(1.0)}))
            continue
        sv = vals if isinstance(vals.dtype, pd.CategoricalDtype) else vals.astype("string")
        levels = list(_level_colors(sv))
        mapping = {lv: PALETTE[(j + 3 * i) % len(PALETTE)] for j, lv in enumerate(levels)}
        cols[v] = [mapping[x] if pd.notna(x) else "#FFFFFF" for x in sv]
        legends.append((v, mapping))
    return pd.DataFrame(cols, index=sheet.index), legends


def deg_heatmap(
    matrix: pd.DataFrame,
    genes: Sequence[str],
    sample_sheet: pd.DataFrame,
    *,
    annotate_by: Sequence[str] = (),
    gene_names: pd.Series | Mapping[str, str] | None = None,
    max_row_labels: int = 60,
    cluster_samples: bool = True,
    vmax: float = 3.0,
    title: str | None = None,
) -> Figure:
    """Heatmap of selected genes, z-scored per gene, samples annotated by design variables.

    Each row is one gene scaled to mean 0 and standard deviation 1 across samples
    (:func:`degflow.bulk.degs.zscore_rows`), so colours show which samples are high or low *for that
    gene*, not absolute expression. Colours saturate at ``+-vmax``. Genes are clustered
    (Euclidean, average linkage, seaborn ``clustermap``); samples too unless
    ``cluster_samples=False`` (then sorted by ``annotate_by``). Row labels are gene names
    (``gene_names``, else ids) when there are at most ``max_row_labels`` genes.

    Parameters
    ----------
    matrix
        Variance-stabilised (or log-normalised) expression, genes x samples.
    genes
        Genes to show, e.g. ``degs.top_genes(res, 50).index``.
    sample_sheet
        Indexed by sample.
    annotate_by
        Sample-sheet columns drawn as colour bars above the heatmap.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import seaborn as sns  # imported here: seaborn import is slow and only these two plots use it

    genes = [str(g) for g in genes]
    if not genes:  # a contrast without DEGs is an answer, not an error: say so in the figure
        return message_figure("No gene passes the DEG thresholds in this contrast: no heatmap to draw.", title=title)
    check_matrix(matrix, "matrix")
    missing = [g for g in genes if g not in matrix.index]
    if missing:
        raise DegflowInputError(f"{len(missing)} of the genes are not in matrix (e.g. {missing[:3]})")
    annotate_by = [annotate_by] if isinstance(annotate_by, str) else list(annotate_by)
    sheet = check_sheet(sample_sheet, list(matrix.columns), annotate_by, "matrix")
    z = degs.zscore_rows(matrix.loc[genes])
    if not cluster_samples and annotate_by:
        order = sheet.sort_values(annotate_by, kind="stable").index
        z, sheet = z[order], sheet.loc[order]
    if gene_names is not None:
        gn = pd.Series(gene_names) if not isinstance(gene_names, pd.Series) else gene_names
        gn = gn.reindex(z.index).astype("string")
        z.index = gn.where(gn.notna(), pd.Series(z.index, index=z.index)).astype(str).to_numpy()
    n_g, n_s = z.shape
    show_rows = n_g <= max_row_labels
    col_colors, legends = _annotation_colors(sheet, annotate_by) if annotate_by else (None, [])
    height = min(max(4.0, 0.22 * n_g + 2.5), 14.0) if show_rows else 9.0
    with style():
        g = sns.clustermap(
            z,
            method="average",
            metric="euclidean",
            row_cluster=n_g >= 2,
            col_cluster=cluster_samples and n_s >= 2,
            col_colors=col_colors,
            cmap="RdBu_r",  # symmetric vmin/vmax centre it on 0 (seaborn's center= warns on matplotlib 3.11)
            vmin=-vmax,
            vmax=vmax,
            yticklabels=show_rows,
            xticklabels=True,
            figsize=(max(6.0, 0.45 * n_s + 4.0), height),
            dendrogram_ratio=(0.12, 0.08),
            colors_ratio=0.025,
            cbar_kws={},
            rasterized=n_g > 200,
        )
        g.ax_cbar.set_title("z-score\n(per gene)", fontsize=9, fontweight="normal")
        g.ax_cbar.yaxis.set_ticks_position("left")  # keep tick labels off the row dendrogram
        g.ax_heatmap.set_ylabel(f"{fmt(n_g)} genes" if not show_rows else "")
        g.ax_heatmap.set_xlabel("")
        g.ax_heatmap.tick_params(axis="y", labelsize=8 if n_g > 30 else 10)
        _annotation_legends(g.figure, legends)
        if title:
            g.figure.suptitle(title, fontweight="bold", y=1.02)
    return g.figure


def _annotation_legends(fig: Figure, legends: list[tuple[str, dict]]) -> None:
    """One legend per annotation variable, stacked right of the figure."""
    y = 0.98
    for name, mapping in legends:
        handles = [Patch(facecolor=c, label=str(k)) for k, c in mapping.items()]
        fig.legend(handles=handles, title=name, loc="upper left", bbox_to_anchor=(1.0, y),
                   bbox_transform=fig.transFigure, frameon=False, alignment="left")
        y -= 0.06 * (len(handles) + 1.5) * 6 / fig.get_figheight()


def distance_heatmap(
    dist: pd.DataFrame | qc.SampleDistances,
    sample_sheet: pd.DataFrame,
    *,
    annotate_by: Sequence[str] = (),
    title: str | None = None,
) -> Figure:
    """Sample-to-sample distance heatmap, clustered, with design annotation colours.

    Dark = similar. Replicates of a condition should cluster together; a sample far from
    everything is a candidate outlier. Rows/columns follow the hierarchical clustering of
    :func:`degflow.bulk.qc.sample_distances` (pass its result to reuse its linkage; with a plain
    DataFrame, complete linkage on those distances is used). Distances are printed in the
    cells when there are at most 12 samples.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import seaborn as sns
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import squareform

    if isinstance(dist, qc.SampleDistances):
        d, link = dist.distances, dist.linkage
    elif isinstance(dist, pd.DataFrame):
        d = dist
        if d.shape[0] != d.shape[1] or list(d.index) != list(d.columns):
            raise DegflowInputError("dist must be a square samples x samples DataFrame (see qc.sample_distances)")
        if d.shape[0] < 2:
            raise DegflowInputError("dist needs at least 2 samples")
        link = hierarchy.linkage(squareform(d.to_numpy(dtype=float), checks=False), method="complete")
    else:
        raise DegflowInputError("dist must be a DataFrame or qc.SampleDistances")
    annotate_by = [annotate_by] if isinstance(annotate_by, str) else list(annotate_by)
    sheet = check_sheet(sample_sheet, [str(s) for s in d.index], annotate_by, "distance matrix") if annotate_by else None
    colors, legends = _annotation_colors(sheet, annotate_by) if annotate_by else (None, [])
    n = d.shape[0]
    size = min(max(5.5, 0.45 * n + 3.5), 16.0)
    with style():
        g = sns.clustermap(
            d,
            row_linkage=link,
            col_linkage=link,
            cmap="mako",
            row_colors=colors,
            col_colors=colors,
            annot=n <= 12,
            fmt=".0f",
            annot_kws={"fontsize": 8},
            xticklabels=True,
            yticklabels=True,
            figsize=(size, size),
            dendrogram_ratio=0.12,
            colors_ratio=0.025,
            cbar_kws={},
        )
        g.ax_heatmap.set_xlabel("")
        g.ax_heatmap.set_ylabel("")
        g.ax_cbar.set_title("Euclidean\ndistance", fontsize=9, fontweight="normal")
        g.ax_cbar.yaxis.set_ticks_position("left")
        _annotation_legends(g.figure, legends)
        if title:
            g.figure.suptitle(title, fontweight="bold", y=1.02)
    return g.figure


# --------------------------------------------------------------------------------------
# sample QC figures
# --------------------------------------------------------------------------------------
def pca(
    coords: pd.DataFrame,
    variance_ratio: pd.Series,
    sample_sheet: pd.DataFrame,
    *,
    color_by: Sequence[str],
    pcs: tuple[int, int] = (1, 2),
    label: bool = True,
    title: str | None = None,
) -> Figure:
    """PCA of samples: one panel per design variable, samples coloured by its levels.

    Axis labels give the percentage of variance each PC explains (of the genes used, see
    :func:`degflow.bulk.qc.pca`). Samples are labelled by name (non-overlapping) when ``label``.
    Numeric variables with more levels than the palette get a continuous colour bar.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(coords, pd.DataFrame):
        raise DegflowInputError("coords must be a samples x PCs DataFrame (see qc.pca)")
    color_by = [color_by] if isinstance(color_by, str) else list(color_by)
    if not color_by:
        raise DegflowInputError("color_by is empty: name at least one sample-sheet column")
    cx, cy = (f"PC{pcs[0]}", f"PC{pcs[1]}")
    for c in (cx, cy):
        if c not in coords.columns or c not in variance_ratio.index:
            raise DegflowInputError(f"{c} is not in coords/variance_ratio (have {list(coords.columns)})")
    sheet = check_sheet(sample_sheet, [str(s) for s in coords.index], color_by, "PCA coordinates")
    xs = coords[cx].to_numpy(dtype=float)
    ys = coords[cy].to_numpy(dtype=float)
    names = [str(s) for s in coords.index]
    npan = len(color_by)
    with style():
        fig = figure((5.6 * npan, 4.9))
        axes = fig.subplots(1, npan, squeeze=False)[0]
        padx = (xs.max() - xs.min()) * 0.22 or 1.0
        pady = (ys.max() - ys.min()) * 0.22 or 1.0
        for ax, var in zip(axes, color_by, strict=True):
            vals = sheet[var]
            if pd.api.types.is_numeric_dtype(vals) and vals.nunique() > len(PALETTE):
                sc = ax.scatter(xs, ys, c=vals.to_numpy(dtype=float), cmap="viridis", s=70, edgecolor="white", lw=0.6, zorder=3)
                fig.colorbar(sc, ax=ax, label=var)
            else:
                sv = vals.astype("string") if not isinstance(vals.dtype, pd.CategoricalDtype) else vals
                levels = _level_colors(sv)
                for j, (lv, col) in enumerate(levels.items()):
                    m = (sv == lv).fillna(False).to_numpy(dtype=bool)
                    ax.scatter(xs[m], ys[m], s=70, color=col, marker=_MARKERS[(j // len(PALETTE)) % len(_MARKERS)],
                               edgecolor="white", lw=0.6, label=str(lv), zorder=3)
                if vals.isna().any():
                    m = vals.isna().to_numpy()
                    ax.scatter(xs[m], ys[m], s=70, facecolor="none", edgecolor="0.4", label="NA", zorder=3)
                ax.legend(title=var, loc="upper left", bbox_to_anchor=(1.0, 1.0), alignment="left")
            ax.set_xlim(xs.min() - padx, xs.max() + padx)
            ax.set_ylim(ys.min() - pady, ys.max() + pady)
            ax.set_xlabel(f"{cx}: {100 * float(variance_ratio[cx]):.0f}% variance")
            ax.set_ylabel(f"{cy}: {100 * float(variance_ratio[cy]):.0f}% variance")
            ax.set_title(f"coloured by {var}", fontsize=11, fontweight="normal")
            ax.axhline(0, color="0.85", lw=0.8, zorder=0)
            ax.axvline(0, color="0.85", lw=0.8, zorder=0)
        if title:
            fig.suptitle(title, fontweight="bold")
        freeze_layout(fig)
        if label:
            for ax in axes:
                place_labels(ax, xs, ys, names, fontsize=8)
    return fig


def qc_bars(sample_qc_table: pd.DataFrame, *, highlight: Sequence[str] = (), title: str | None = None) -> Figure:
    """Per-sample QC bars: library size, detected genes, % counts in top genes, % mito.

    One panel per metric of :func:`degflow.bulk.qc.sample_qc` (``pct_mito`` only when computed),
    samples in table order; ``highlight`` samples (e.g. flagged outliers) are drawn in
    vermillion. Dashed lines mark the median of each metric.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(sample_qc_table, pd.DataFrame):
        raise DegflowInputError("sample_qc_table must be a DataFrame (see qc.sample_qc)")
    top_cols = [c for c in sample_qc_table.columns if str(c).startswith("pct_top")]
    need = ["library_size", "detected_genes"]
    missing = [c for c in need if c not in sample_qc_table.columns]
    if missing or not top_cols:
        raise DegflowInputError(f"sample_qc_table lacks {missing or ['pct_top*']}; pass the output of qc.sample_qc")
    panels = [("library_size", "library size (million reads)", 1e-6), ("detected_genes", "detected genes (count > 0)", 1.0),
              (top_cols[0], f"% counts in top {top_cols[0][7:]} genes", 1.0)]
    if "pct_mito" in sample_qc_table.columns and sample_qc_table["pct_mito"].notna().any():
        panels.append(("pct_mito", "% mitochondrial counts", 1.0))
    samples = [str(s) for s in sample_qc_table.index]
    hl = set(map(str, highlight))
    colors = [COLORS["up"] if s in hl else "0.35" for s in samples]
    n = len(samples)
    with style():
        fig = figure((3.4 * len(panels) + 1.5, 1.2 + 0.32 * n))
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        yy = np.arange(n)[::-1]
        for ax, (col, lab, scale) in zip(axes, panels, strict=True):
            v = sample_qc_table[col].to_numpy(dtype=float) * scale
            ax.barh(yy, np.nan_to_num(v), color=colors, height=0.7)
            if np.isfinite(v).any():
                ax.axvline(float(np.nanmedian(v)), ls="--", lw=1, color="0.1")
            ax.set_xlabel(lab)
            ax.set_yticks(yy, samples)
        if hl:
            axes[-1].legend(handles=[Patch(color=COLORS["up"], label="flagged")], loc="upper left", bbox_to_anchor=(1.0, 1.0))
        if title:
            fig.suptitle(title, fontweight="bold")
    return fig


def gene_counts(
    normalized: pd.Series,
    sample_sheet: pd.DataFrame,
    *,
    group_by: Sequence[str],
    color_by: str | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
    pseudocount: float = 0.5,
) -> Figure:
    """One gene's normalised counts per sample, by group: DESeq2's ``plotCounts``.

    As ``plotCounts(dds, gene, intgroup = group_by)``: counts divided by size factors plus ``pseudocount``
    (0.5, so zeros can be drawn) on a log axis, one column per group (the levels of ``group_by``, combined with
    ``:`` when several, in their category order), samples side by side within a group (fixed offsets, no random
    jitter) and the group's geometric mean as a short black line. A single numeric ``group_by`` column (a
    covariate such as a dose) is drawn as a scatter over its values instead. ``notes`` (e.g. every test's log2FC and padj,
    :func:`degflow.bulk.genes_of_interest.report_lines`) are printed under the axis.

    Parameters
    ----------
    normalized
        The gene's normalised counts, indexed by sample.
    sample_sheet
        Indexed by sample, with the ``group_by`` and ``color_by`` columns.
    group_by
        Sample-sheet factor(s) on the x axis.
    color_by
        Sample-sheet column colouring the dots (e.g. the batch); default the group.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not isinstance(normalized, pd.Series):
        raise DegflowInputError(f"normalized must be a Series indexed by sample, got {type(normalized).__name__}")
    group_by = [group_by] if isinstance(group_by, str) else list(group_by)
    if not group_by:
        raise DegflowInputError("group_by is empty: name at least one sample-sheet column")
    samples = [str(s) for s in normalized.index]
    sheet = check_sheet(sample_sheet, samples, group_by + ([color_by] if color_by else []), "counts")
    values = normalized.to_numpy(dtype=float) + pseudocount
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise DegflowInputError("normalized counts must be finite and >= 0")
    if len(group_by) == 1 and _is_numeric_column(sheet[group_by[0]]):
        return _gene_counts_numeric(values, sheet, covariate=group_by[0], color_by=color_by, title=title, notes=notes,
                                    pseudocount=pseudocount)
    keys = sheet[group_by].astype(str).agg(":".join, axis=1).to_numpy()
    level_lists = []
    for g in group_by:
        col = sheet[g]
        cats = list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) else sorted(col.astype(str).unique())
        level_lists.append([str(c) for c in cats])
    groups = [":".join(c) for c in itertools.product(*level_lists) if ":".join(c) in set(keys)]
    if color_by:
        labels, order = _color_levels(sheet[color_by])
    else:
        labels, order = keys, groups
    present = set(labels)
    colours = {lv: PALETTE[i % len(PALETTE)] for i, lv in enumerate(v for v in order if v in present)}
    with style():
        fig = figure((max(3.6, 0.9 * len(groups) + 2.4), 4.2))
        ax = fig.add_subplot()
        for i, grp in enumerate(groups):
            idx = np.flatnonzero(keys == grp)
            offsets = np.linspace(-0.18, 0.18, len(idx)) if len(idx) > 1 else np.zeros(1)
            for off, j in zip(offsets, idx, strict=False):
                ax.scatter(i + off, values[j], s=42, color=colours[labels[j]], edgecolor="white", lw=0.5, zorder=3)
            gm = float(np.exp(np.log(values[idx]).mean()))
            ax.plot([i - 0.3, i + 0.3], [gm, gm], color="0.1", lw=1.4, zorder=2)
        _log_count_axis(ax)
        ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 4 else 0,
                      ha="right" if len(groups) > 4 else "center")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_xlabel(" : ".join(group_by))
        ax.set_ylabel(f"normalised count + {pseudocount:g}")
        if title:
            ax.set_title(title)
        if color_by:
            _color_legend(ax, colours, color_by)
        if notes:
            ax.annotate("\n".join(notes), xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0, -48 if len(groups) <= 4
                        else -70), textcoords="offset points", va="top", ha="left", fontsize=9, color="0.15",
                        annotation_clip=False)
    return fig


def _color_levels(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """:func:`gene_counts`' colour column: each sample's level as text, and the level order (categories, else sorted)."""
    labels = col.astype(str).to_numpy()
    order = ([str(c) for c in col.cat.categories] if isinstance(col.dtype, pd.CategoricalDtype)
             else sorted(set(labels)))
    return labels, order


def _log_count_axis(ax: mpl.axes.Axes) -> None:
    """:func:`gene_counts`' y axis: log scale, ticks at 1, 2, 5 x 10^k printed as plain numbers."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(mpl.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())


def _color_legend(ax: mpl.axes.Axes, colours: Mapping[str, str], title: str) -> None:
    """:func:`gene_counts`' legend of the ``color_by`` levels, right of the axes."""
    handles = [Line2D([], [], ls="", marker="o", ms=6, color=c, label=str(k)) for k, c in colours.items()]
    ax.legend(handles=handles, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), alignment="left")


def _is_numeric_column(col: pd.Series) -> bool:
    return not isinstance(col.dtype, pd.CategoricalDtype) and pd.api.types.is_numeric_dtype(col)


def _gene_counts_numeric(values: np.ndarray, sheet: pd.DataFrame, *, covariate: str, color_by: str | None,
                         title: str | None, notes: Sequence[str], pseudocount: float) -> Figure:
    """:func:`gene_counts` over a numeric covariate (e.g. ``~ dose``): normalised counts against its values, the
    geometric mean of the samples sharing a value as a short black line."""
    x = sheet[covariate].to_numpy(dtype=float)
    if not np.isfinite(x).all():
        raise DegflowInputError(f"sample-sheet column '{covariate}' has missing values; it cannot be the x axis")
    if color_by:
        labels, order = _color_levels(sheet[color_by])
        colours = {lv: PALETTE[i % len(PALETTE)] for i, lv in enumerate(v for v in order if v in set(labels))}
    else:
        labels, colours = np.full(len(x), ""), {"": PALETTE[0]}
    span = float(x.max() - x.min()) or 1.0
    with style():
        fig = figure((5.0, 4.2))
        ax = fig.add_subplot()
        for j in range(len(x)):
            ax.scatter(x[j], values[j], s=42, color=colours[labels[j]], edgecolor="white", lw=0.5, zorder=3)
        for v in np.unique(x):
            at = x == v
            if at.sum() > 1:
                gm = float(np.exp(np.log(values[at]).mean()))
                ax.plot([v - 0.03 * span, v + 0.03 * span], [gm, gm], color="0.1", lw=1.4, zorder=2)
        _log_count_axis(ax)
        ax.set_xlim(float(x.min()) - 0.08 * span, float(x.max()) + 0.08 * span)
        ax.set_xlabel(covariate)
        ax.set_ylabel(f"normalised count + {pseudocount:g}")
        if title:
            ax.set_title(title)
        if color_by:
            _color_legend(ax, colours, color_by)
        if notes:
            ax.annotate("\n".join(notes), xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0, -48),
                        textcoords="offset points", va="top", ha="left", fontsize=9, color="0.15",
                        annotation_clip=False)
    return fig


def plot_patterns(profiles: pd.DataFrame, *, group_label: str, title: str = "") -> Figure:
    """One panel per cluster: z-scores per sample by level (box + points), each gene's mean line, the median.

    Parameters
    ----------
    profiles
        The long table of :func:`degflow.bulk.patterns.gene_patterns`.
    group_label
        x-axis label (the grouping factor).
    title
        Figure title (e.g. the LRT's name and formulas).
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415

    clusters = sorted(c for c in profiles["cluster"].unique() if c > 0)
    if not clusters:
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.text(0.5, 0.5, "no cluster of the minimum size", ha="center", va="center")
        ax.set_axis_off()
        return fig
    levels = list(profiles["level"].cat.categories)
    ncol = min(3, len(clusters))
    nrow = int(np.ceil(len(clusters) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False, sharey=True)
    xs = np.arange(len(levels))
    for ax, c in zip(axes.ravel(), clusters, strict=False):
        sub = profiles.loc[profiles["cluster"] == c]
        n_genes = sub["gene_id"].nunique()
        gene_means = sub.groupby(["gene_id", "level"], observed=True)["z"].mean().unstack("level")[levels]
        for row in gene_means.to_numpy()[:200]:  # at most 200 thin lines per panel
            ax.plot(xs, row, color="0.6", alpha=0.25, lw=0.6)
        per_sample = sub.groupby(["sample", "level"], observed=True)["z"].mean().reset_index()
        data = [per_sample.loc[per_sample["level"] == lv, "z"].to_numpy() for lv in levels]
        ax.boxplot(data, positions=xs, widths=0.5, showfliers=False, medianprops={"color": "black"})
        for i, d in enumerate(data):
            ax.scatter(np.full(d.size, xs[i]), d, s=12, color="tab:blue", zorder=3)
        ax.plot(xs, gene_means.median(axis=0).to_numpy(), color="tab:red", lw=2, zorder=4)
        ax.set_title(f"Cluster {c} ({n_genes} genes)", fontsize=10)
        ax.set_xticks(xs)
        ax.set_xticklabels(levels, rotation=30, ha="right", fontsize=8)
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
    for ax in axes.ravel()[len(clusters):]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("z-score of expression")
    for ax in axes[-1, :]:
        ax.set_xlabel(group_label)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig
