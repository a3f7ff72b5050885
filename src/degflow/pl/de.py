"""Figures of differential-expression results, bulk and pseudobulk: drawing only.

Volcano and MA plots of one results table, DEG counts per contrast, the overlap of DEG sets (Venn/UpSet).
Every function takes tables computed elsewhere (the DE step, :mod:`degflow.bulk.degs`), draws them in the
house style (:mod:`degflow.pl.base`) and returns a :class:`matplotlib.figure.Figure`;
:func:`degflow.pl.base.save` writes it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle

from degflow.bulk import degs
from degflow.bulk.degs import regulation
from degflow.checks import check_results, check_thresholds
from degflow.errors import DegflowInputError
from degflow.pl.base import COLORS, PALETTE, figure, fmt, freeze_layout, label_text, place_labels, style, thin

__all__ = ["MAX_HIGHLIGHT_LABELS", "deg_counts_bar", "deg_overlap", "ma", "volcano"]

logger = logging.getLogger(__name__)


#: Most genes of interest labelled on one volcano or MA plot (those with the smallest padj); the legend says so.
MAX_HIGHLIGHT_LABELS = 40


class _Highlight(NamedTuple):
    requested: int  # genes of interest in the table
    drawn: np.ndarray  # their row positions that have a place on the plot
    labelled: np.ndarray  # the positions labelled (<= MAX_HIGHLIGHT_LABELS, smallest padj first)


def _highlight_positions(res: pd.DataFrame, highlight: Sequence[str], shown: np.ndarray) -> _Highlight:
    wanted = [str(g) for g in highlight]
    if isinstance(highlight, str):
        wanted = [highlight]
    pos = res.index.astype(str).get_indexer(pd.Index(list(dict.fromkeys(wanted))))
    pos = pos[pos >= 0]
    drawn = pos[shown[pos]]
    p = res["padj"].to_numpy(dtype=float)[drawn]
    order = np.lexsort((drawn, np.where(np.isnan(p), np.inf, p)))
    labelled = drawn[order[:MAX_HIGHLIGHT_LABELS]]
    if len(drawn) > MAX_HIGHLIGHT_LABELS:
        logger.warning("%d genes of interest on one plot: the %d with the smallest padj are labelled", len(drawn),
                       MAX_HIGHLIGHT_LABELS)
    return _Highlight(len(pos), drawn, labelled)


def _highlight_handle(hl: _Highlight, hidden_reason: str) -> Line2D:
    text = f"genes of interest ({fmt(hl.requested)}"
    if len(hl.labelled) < len(hl.drawn):
        text += f"; {fmt(len(hl.labelled))} labelled"
    if len(hl.drawn) < hl.requested:
        text += f"; {fmt(hl.requested - len(hl.drawn))} {hidden_reason}, not shown"
    return Line2D([], [], ls="", marker="o", ms=7, markerfacecolor="none", markeredgecolor=COLORS["accent"],
                  label=text + ")")


# --------------------------------------------------------------------------------------
# DE figures
# --------------------------------------------------------------------------------------
def volcano(
    res: pd.DataFrame,
    *,
    lfc: float = 1.0,
    padj: float = 0.05,
    top_n: int = 15,
    label: str | None = "gene_name",
    lfc_col: str = "log2FoldChange",
    title: str | None = None,
    max_points: int | None = 20_000,
    figsize: tuple[float, float] = (7.0, 6.0),
    highlight: Sequence[str] = (),
) -> Figure:
    """Volcano plot: log2 fold change against -log10 adjusted p-value.

    Genes are coloured by the table's ``regulation`` column (else by the thresholds, see
    :func:`degflow.bulk.degs.classify`); the legend gives the number of up and down genes. Dashed
    lines mark ``|log2FC| = lfc`` and ``padj = padj``. The ``top_n`` most significant DE
    genes (:func:`degflow.bulk.degs.top_genes`) are labelled by ``label`` (gene id when missing)
    without overlaps.

    Genes with NaN ``padj`` (not tested: all-zero, independent filtering, outliers) are not
    drawn; their number is given in the legend. ``padj == 0`` (-log10 is infinite) is drawn
    as a triangle at the top of the axis. At most ``max_points`` non-significant genes are
    drawn (every DE gene always is): the most extreme quarter plus an even subset of the rest,
    rasterized, so a 60k-gene PNG stays well under 1 MB.

    Parameters
    ----------
    res
        DE results indexed by gene id: ``log2FoldChange`` (or ``lfc_col``), ``padj``,
        optional ``regulation`` and ``label`` columns.
    lfc, padj
        Thresholds (drawn; used for colours only if ``regulation`` is absent).
    top_n
        Genes to label (0 for none).
    label
        Column with gene names.
    lfc_col
        Fold-change column, e.g. ``log2FoldChange_shrunk``.
    title
        Axes title.
    max_points
        Cap on drawn non-significant points (``None``: all).
    figsize
        Inches.
    highlight
        Genes of interest (index values of ``res``): ringed in black and labelled first, whatever their
        significance (at most :data:`MAX_HIGHLIGHT_LABELS` labels, smallest padj first; the legend says so).

    Returns
    -------
    matplotlib.figure.Figure
    """
    res = check_results(res, columns=(lfc_col, "padj"))
    check_thresholds(lfc, padj)
    reg = regulation(res, lfc, padj, lfc_col=lfc_col).to_numpy(dtype=object)
    x = res[lfc_col].to_numpy(dtype=float)
    p = res["padj"].to_numpy(dtype=float)
    shown = ~np.isnan(p) & np.isfinite(x)
    n_hidden = int((~shown).sum())
    with np.errstate(divide="ignore"):
        y = -np.log10(p)
    is_zero = shown & (p == 0)
    finite_y = y[shown & ~is_zero]
    y_top = max(float(finite_y.max()) if finite_y.size else 1.0, -math.log10(padj) * 1.5, 1.0)
    y_cap = y_top * 1.04
    y = np.where(is_zero, y_cap, y)
    x_max = max(float(np.abs(x[shown]).max()) if shown.any() else 1.0, lfc * 1.5, 1.0)

    with style():
        fig = figure(figsize)
        ax = fig.add_subplot()
        handles = []
        for cls in ("ns", "down", "up"):
            idx = np.flatnonzero(shown & (reg == cls) & ~is_zero)
            n_cls = int((shown & (reg == cls)).sum())
            if cls == "ns":
                score = y[idx] / y_top + np.abs(x[idx]) / x_max
                draw = thin(idx, score, max_points)
                ax.scatter(x[draw], y[draw], s=5, c=COLORS["ns"], lw=0, rasterized=True, zorder=1)
                lab = f"not significant ({fmt(n_cls)})"
                if len(draw) < len(idx):
                    lab += f"; {fmt(len(draw) + int((is_zero & (reg == 'ns')).sum()))} drawn"
            else:
                ax.scatter(x[idx], y[idx], s=9, c=COLORS[cls], lw=0, rasterized=True, zorder=2)
                lab = f"{cls} ({fmt(n_cls)})"
            zero = np.flatnonzero(is_zero & (reg == cls))
            if zero.size:
                ax.scatter(x[zero], y[zero], s=22, marker="^", c=COLORS[cls], lw=0, zorder=3)
            handles.append(Line2D([], [], ls="", marker="o", ms=6, color=COLORS[cls], label=lab))
        handles = handles[::-1]  # up, down, ns
        if is_zero.any():
            handles.append(
                Line2D([], [], ls="", marker="^", ms=6, color="0.4", label=f"padj = 0, drawn at top ({fmt(is_zero.sum())})")
            )
        if n_hidden:
            handles.append(Line2D([], [], ls="", label=f"padj NA, not shown ({fmt(n_hidden)})"))
        hl = _highlight_positions(res, highlight, shown)
        if hl.requested:
            ax.scatter(x[hl.drawn], y[hl.drawn], s=46, facecolor="none", edgecolor=COLORS["accent"], lw=1.1, zorder=5)
            handles.append(_highlight_handle(hl, "padj NA"))
        ythr = -math.log10(padj)
        ax.axhline(ythr, ls="--", lw=1, color="0.3", zorder=4)
        if lfc > 0:
            for v in (-lfc, lfc):
                ax.axvline(v, ls="--", lw=1, color="0.3", zorder=4)
        ax.set_xlim(-x_max * 1.08, x_max * 1.08)
        ax.set_ylim(0, y_cap * 1.12)
        ax.set_xlabel(f"log2 fold change{' (shrunken)' if 'shrunk' in lfc_col else ''}")
        ax.set_ylabel("-log10 adjusted p-value")
        if title:
            ax.set_title(title)
        ax.legend(
            handles=handles,
            title=f"padj < {padj:g}, |log2FC| > {lfc:g}",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            handletextpad=0.3,
            alignment="left",
        )
        freeze_layout(fig)
        pos = hl.labelled
        if top_n:
            top = degs.top_genes(res, top_n, lfc=lfc, padj=padj, lfc_col=lfc_col)
            extra = res.index.get_indexer(top.index)
            extra = extra[shown[extra] & ~np.isin(extra, pos)]
            pos = np.concatenate([pos, extra]).astype(int)
        if len(pos):
            names = label_text(res, label).to_numpy()[pos]
            place_labels(ax, x[pos], y[pos], list(names))
    return fig


def ma(
    res: pd.DataFrame,
    *,
    lfc: float = 1.0,
    padj: float = 0.05,
    lfc_col: str = "log2FoldChange",
    title: str | None = None,
    max_points: int | None = 20_000,
    ylim: float | None = None,
    figsize: tuple[float, float] = (7.0, 5.0),
    highlight: Sequence[str] = (),
    label: str | None = "gene_name",
) -> Figure:
    """MA plot: mean expression (log10 baseMean) against log2 fold change.

    DE genes (``regulation`` column, else the thresholds) are coloured up/down; dashed lines
    mark ``log2FC = +-lfc``. Genes with ``baseMean == 0`` have no position and are not drawn
    (counted in the legend). With ``ylim``, fold changes beyond ``+-ylim`` are drawn as
    triangles on the edge, as DESeq2's ``plotMA``. Non-significant points are capped at
    ``max_points`` as in :func:`volcano`; all points are rasterized. ``highlight`` genes (genes of interest,
    index values of ``res``) are ringed in black and labelled by ``label`` as in :func:`volcano`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    res = check_results(res, columns=(lfc_col, "padj", "baseMean"))
    check_thresholds(lfc, padj)
    reg = regulation(res, lfc, padj, lfc_col=lfc_col).to_numpy(dtype=object)
    bm = res["baseMean"].to_numpy(dtype=float)
    yv = res[lfc_col].to_numpy(dtype=float)
    shown = (bm > 0) & np.isfinite(yv)
    n_hidden = int((~shown).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        xv = np.log10(bm)
    lim = float(ylim) if ylim is not None else max(float(np.abs(yv[shown]).max()) if shown.any() else 1.0, lfc * 1.5)
    clipped = shown & (np.abs(yv) > lim)
    yd = np.clip(yv, -lim, lim)
    with style():
        fig = figure(figsize)
        ax = fig.add_subplot()
        handles = []
        for cls in ("ns", "down", "up"):
            idx = np.flatnonzero(shown & (reg == cls))
            if cls == "ns":
                draw = thin(idx, np.abs(yv[idx]), max_points)
                size, z = 5, 1
            else:
                draw, size, z = idx, 9, 2
            inner = draw[~clipped[draw]]
            edge = draw[clipped[draw]]
            ax.scatter(xv[inner], yd[inner], s=size, c=COLORS[cls], lw=0, rasterized=True, zorder=z)
            # triangles on the edge point the way the value left the axis
            for sel, mk in ((edge[yv[edge] > 0], "^"), (edge[yv[edge] < 0], "v")):
                if sel.size:
                    ax.scatter(xv[sel], yd[sel], s=size * 2.5, marker=mk, c=COLORS[cls], lw=0, zorder=z)
            name = "not significant" if cls == "ns" else cls
            lab = f"{name} ({fmt(idx.size)})"
            if cls == "ns" and draw.size < idx.size:
                lab += f"; {fmt(draw.size)} drawn"
            handles.append(Line2D([], [], ls="", marker="o", ms=6, color=COLORS[cls], label=lab))
        handles = handles[::-1]
        if clipped.any():
            handles.append(Line2D([], [], ls="", marker="^", ms=6, color="0.4",
                                  label=f"|log2FC| > {lim:g}, at edge ({fmt(clipped.sum())})"))
        if n_hidden:
            handles.append(Line2D([], [], ls="", label=f"baseMean 0, not shown ({fmt(n_hidden)})"))
        hl = _highlight_positions(res, highlight, shown)
        if hl.requested:
            ax.scatter(xv[hl.drawn], yd[hl.drawn], s=46, facecolor="none", edgecolor=COLORS["accent"], lw=1.1,
                       zorder=5)
            handles.append(_highlight_handle(hl, "baseMean 0"))
        ax.axhline(0, lw=1, color="0.2", zorder=3)
        if lfc > 0:
            for v in (-lfc, lfc):
                ax.axhline(v, ls="--", lw=1, color="0.3", zorder=3)
        ax.set_ylim(-lim * 1.08, lim * 1.08)
        ax.set_xlabel("mean of normalised counts (log10 baseMean)")
        ax.set_ylabel(f"log2 fold change{' (shrunken)' if 'shrunk' in lfc_col else ''}")
        if title:
            ax.set_title(title)
        ax.legend(handles=handles, title=f"padj < {padj:g}, |log2FC| > {lfc:g}", loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), handletextpad=0.3, alignment="left")
        if len(hl.labelled):
            freeze_layout(fig)
            names = label_text(res, label).to_numpy()[hl.labelled]
            place_labels(ax, xv[hl.labelled], yd[hl.labelled], list(names))
    return fig


def deg_counts_bar(summary: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Up- and down-regulated gene counts per contrast, as diverging horizontal bars.

    Parameters
    ----------
    summary
        Indexed by contrast with int columns ``up`` and ``down`` (:func:`degflow.bulk.degs.deg_counts`),
        or the workflow's ``summary.tsv`` layout (columns ``contrast``, ``n_up``, ``n_down``).

    Returns
    -------
    matplotlib.figure.Figure
        Down bars extend left (negative widths), up bars right; each carries its count.
    """
    if isinstance(summary, pd.DataFrame) and {"n_up", "n_down"} <= set(summary.columns) and "up" not in summary.columns:
        summary = summary.rename(columns={"n_up": "up", "n_down": "down"})
        if "contrast" in summary.columns:
            summary = summary.set_index("contrast")
    if not isinstance(summary, pd.DataFrame) or not {"up", "down"} <= set(summary.columns):
        raise DegflowInputError("summary must be a DataFrame with columns 'up' and 'down' (see qc.deg_counts)")
    if summary.empty:
        raise DegflowInputError("summary has no contrast")
    up = summary["up"].to_numpy(dtype=float)
    down = summary["down"].to_numpy(dtype=float)
    names = [str(i) for i in summary.index]
    n = len(names)
    with style():
        fig = figure((7.0, 1.2 + 0.55 * n))
        ax = fig.add_subplot()
        yy = np.arange(n)[::-1]
        ax.barh(yy, up, color=COLORS["up"], height=0.7, label="up")
        ax.barh(yy, -down, color=COLORS["down"], height=0.7, label="down")
        m = max(float(up.max()), float(down.max()), 1.0)
        for yi, u, d in zip(yy, up, down, strict=False):
            ax.text(u + m * 0.02, yi, fmt(u), va="center", ha="left", fontsize=10)
            ax.text(-d - m * 0.02, yi, fmt(d), va="center", ha="right", fontsize=10)
        ax.set_xlim(-m * 1.25, m * 1.25)
        ax.axvline(0, color="0.2", lw=1)
        ax.set_yticks(yy, names)
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: fmt(abs(v))))
        ax.set_xlabel("number of genes (down | up)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        if title:
            ax.set_title(title)
    return fig


def _venn(ax: mpl.axes.Axes, counts: pd.DataFrame, sets: list[str], sizes: dict[str, int]) -> None:
    k = len(sets)
    if k == 2:
        centres = [(-0.55, 0.0), (0.55, 0.0)]
        regions = {(1, 0): (-0.95, 0.0), (0, 1): (0.95, 0.0), (1, 1): (0.0, 0.0)}
        name_pos = [(-0.9, 1.12), (0.9, 1.12)]
    else:
        centres = [(-0.55, 0.35), (0.55, 0.35), (0.0, -0.6)]
        regions = {
            (1, 0, 0): (-1.0, 0.6), (0, 1, 0): (1.0, 0.6), (0, 0, 1): (0.0, -1.15),
            (1, 1, 0): (0.0, 0.75), (1, 0, 1): (-0.62, -0.38), (0, 1, 1): (0.62, -0.38),
            (1, 1, 1): (0.0, 0.05),
        }
        name_pos = [(-1.05, 1.52), (1.05, 1.52), (0.0, -1.9)]
    for i, c in enumerate(centres):
        ax.add_patch(Circle(c, 1.0, facecolor=PALETTE[i], alpha=0.25, edgecolor=PALETTE[i], lw=2))
    lookup = {tuple(int(r[s]) for s in sets): int(r["n_genes"]) for _, r in counts.iterrows()}
    for key, (cx, cy) in regions.items():
        ax.text(cx, cy, fmt(lookup.get(key, 0)), ha="center", va="center", fontsize=13)
    for i, s in enumerate(sets):
        ax.text(*name_pos[i], f"{s}\n({fmt(sizes[s])})", ha="center", va="center", fontsize=11,
                color=PALETTE[i], fontweight="bold")
    ax.set_xlim(-2.1, 2.1)
    ax.set_ylim(-2.2 if k == 3 else -1.5, 1.9)
    ax.set_aspect("equal")
    ax.axis("off")


def deg_overlap(
    membership: pd.DataFrame | Mapping[str, set[str]],
    *,
    kind: str = "auto",
    max_intersections: int = 30,
    title: str | None = None,
) -> Figure:
    """Overlap of DEG sets: a Venn diagram for 2-3 sets, an UpSet plot otherwise.

    The Venn circles are equal-sized (not area-proportional): read the numbers, which count
    genes in exactly that combination of sets. The UpSet plot shows, left, each set's size;
    top, the size of each exclusive intersection (largest first, at most
    ``max_intersections``); below, dots joined by a line mark the sets of that intersection.

    Parameters
    ----------
    membership
        bool genes x sets (:func:`degflow.bulk.degs.deg_overlap`), or the ``{name: gene ids}`` mapping
        itself; intersection sizes come from :func:`degflow.bulk.degs.overlap_counts`.
    kind
        ``"auto"``, ``"venn"`` (2-3 sets) or ``"upset"``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(membership, Mapping):
        membership = degs.deg_overlap(membership)
    counts = degs.overlap_counts(membership)
    sets = [str(c) for c in membership.columns]
    counts = counts.rename(columns={c: str(c) for c in membership.columns})
    if kind not in ("auto", "venn", "upset"):
        raise DegflowInputError(f"kind must be auto, venn or upset, got {kind!r}")
    k = len(sets)
    if kind == "venn" and k not in (2, 3):
        raise DegflowInputError(f"a Venn diagram needs 2 or 3 sets, got {k}; use kind='upset'")
    use_venn = kind == "venn" or (kind == "auto" and k in (2, 3))
    sizes = {str(c): int(membership[c].sum()) for c in membership.columns}
    with style():
        if use_venn:
            fig = figure((6.0, 5.5))
            ax = fig.add_subplot()
            _venn(ax, counts, sets, sizes)
            if title:
                ax.set_title(title)
            return fig
        shown = counts.head(max_intersections)
        m = len(shown)
        fig = figure((max(6.0, 2.5 + 0.42 * m), 3.8 + 0.4 * k))
        gs = fig.add_gridspec(2, 2, width_ratios=[1.2, max(m, 1) * 0.42], height_ratios=[2.2, 0.4 * k + 0.2])
        ax_bar = fig.add_subplot(gs[0, 1])
        ax_dot = fig.add_subplot(gs[1, 1], sharex=ax_bar)
        ax_set = fig.add_subplot(gs[1, 0], sharey=ax_dot)
        xs = np.arange(m)
        ax_bar.bar(xs, shown["n_genes"].to_numpy(), color="0.25", width=0.7)
        for xi, v in zip(xs, shown["n_genes"].to_numpy(), strict=True):
            ax_bar.text(xi, v, fmt(v), ha="center", va="bottom", fontsize=8, rotation=90 if m > 15 else 0)
        ax_bar.set_ylabel("genes in exactly\nthese sets")
        ax_bar.tick_params(axis="x", bottom=False, labelbottom=False)
        ys = np.arange(k)[::-1]
        for xi, (_, row) in zip(xs, shown.iterrows(), strict=True):
            on = np.array([bool(row[s]) for s in sets])
            ax_dot.scatter(np.full(k, xi), ys, s=60, c=np.where(on, "0.15", "0.85"), zorder=2)
            if on.sum() > 1:
                ax_dot.plot([xi, xi], [ys[on].min(), ys[on].max()], color="0.15", lw=2, zorder=1)
        ax_dot.set_ylim(-0.6, k - 0.4)
        ax_dot.set_xlim(-0.6, m - 0.4)
        ax_dot.axis("off")
        ax_set.barh(ys, [sizes[s] for s in sets], color="0.45", height=0.6)
        ax_set.invert_xaxis()
        ax_set.set_yticks(ys, sets)
        ax_set.yaxis.tick_right()
        ax_set.spines["left"].set_visible(False)
        ax_set.spines["right"].set_visible(False)
        ax_set.set_xlabel("set size")
        ax_set.tick_params(axis="y", length=0)
        if len(counts) > m:
            ax_bar.set_title(f"largest {m} of {len(counts)} intersections", fontsize=10, fontweight="normal")
        if title:
            fig.suptitle(title, fontweight="bold")
    return fig

