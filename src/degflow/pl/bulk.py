"""Figures for bulk RNA-seq QC and differential expression: drawing only.

Every function takes tables computed elsewhere (:mod:`degflow.bulk.qc`, the DE step), draws them
in the house style and returns a :class:`matplotlib.figure.Figure`; :func:`save` writes it
(byte-reproducible PNG/PDF) and closes it. Nothing here fits a model or filters genes.

House style (:func:`style`): DejaVu Sans (bundled with matplotlib, so files are identical on
every machine), fonts readable on a slide, Okabe-Ito colours - up-regulated vermillion
``#D55E00``, down-regulated blue ``#0072B2``, not significant grey - which stay distinct
under the common colour-vision deficiencies.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Patch

from degflow import checks
from degflow.bulk import qc
from degflow.errors import DegflowInputError

__all__ = [
    "COLORS",
    "PALETTE",
    "deg_counts_bar",
    "deg_heatmap",
    "deg_overlap",
    "distance_heatmap",
    "gene_counts",
    "ma",
    "message_figure",
    "pca",
    "qc_bars",
    "save",
    "style",
    "volcano",
]

logger = logging.getLogger(__name__)

#: Colours of the DE classes (Okabe-Ito vermillion / blue, light grey).
COLORS: dict[str, str] = {"up": "#D55E00", "down": "#0072B2", "ns": "#BBBBBB", "accent": "#000000"}
#: Categorical palette (Okabe-Ito, black last), for sample groups.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LABEL_GID = "degflow-label"  # gid of gene/sample text labels (tests find them by it)

_RC: dict[str, object] = {
    "font.family": "DejaVu Sans",
    "font.size": 11,
    "axes.titlesize": 13,
    "axes.titleweight": "bold",
    "axes.labelsize": 12,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": mpl.cycler(color=list(PALETTE)),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "image.cmap": "viridis",
    "pdf.fonttype": 42,  # embed TrueType: text stays editable in Illustrator/Inkscape
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "svg.hashsalt": "degflow",
    "path.simplify": True,
}


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Context manager applying degflow's plot style (``matplotlib.rc_context``).

    Every plotting function uses it internally; use it around your own figures to match.

    Examples
    --------
    >>> with style():
    ...     fig = Figure(); ax = fig.add_subplot()
    """
    with mpl.rc_context(_RC):
        yield


def _figure(figsize: tuple[float, float], layout: str | None = "constrained") -> Figure:
    """A pyplot-free Figure with an Agg canvas (so text can be measured)."""
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


# --------------------------------------------------------------------------------------
# label placement: deterministic, non-overlapping
# --------------------------------------------------------------------------------------
def _freeze_layout(fig: Figure) -> None:
    """Run the layout engine once, then keep axes where they are (labels are placed in pixels)."""
    fig.canvas.draw()
    fig.set_layout_engine("none")


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place_labels(
    ax: mpl.axes.Axes,
    x: Sequence[float],
    y: Sequence[float],
    texts: Sequence[str],
    *,
    fontsize: float | None = None,
    avoid: np.ndarray | None = None,
) -> list[mpl.text.Annotation]:
    """Label points without overlaps; returns the annotations (gid ``LABEL_GID``).

    Greedy and deterministic: labels are placed in the order given (most important first).
    For each, candidate boxes are tried at growing distance from its point (12 radii) and
    16 directions, starting with the direction pointing away from the axes' centre; the
    first box that stays inside the axes, overlaps no placed label and covers none of the
    labelled points (nor ``avoid``, display coordinates) is taken. If none fits, every
    position on a grid over the axes is tried, nearest first. Labels away from their point
    get a thin leader line. Axis limits and the figure layout must be final: call after
    :func:`_freeze_layout`.
    """
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    px_per_pt = fig.dpi / 72.0
    pad = 1.5 * px_per_pt
    pts = ax.transData.transform(np.column_stack([np.asarray(x, float), np.asarray(y, float)])) if len(texts) else np.empty((0, 2))
    avoid_pts = pts if avoid is None or len(avoid) == 0 else np.vstack([pts, avoid])
    point_r = 3.0 * px_per_pt
    bb = ax.get_window_extent(renderer)
    inner = (bb.x0 + pad, bb.y0 + pad, bb.x1 - pad, bb.y1 - pad)
    centre = np.array([(bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2])
    radii = np.array([4, 8, 13, 19, 27, 37, 50, 66, 85, 110, 140, 180]) * px_per_pt
    steps = [0] + [s for k in range(1, 8) for s in (k, -k)] + [8]
    placed: list[tuple[float, float, float, float]] = []
    anns: list[mpl.text.Annotation] = []
    fs = fontsize if fontsize is not None else mpl.rcParams["font.size"] * 0.85

    def free(box: tuple[float, float, float, float], own: int) -> bool:
        if box[0] < inner[0] or box[1] < inner[1] or box[2] > inner[2] or box[3] > inner[3]:
            return False
        grown = (box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad)
        if any(_overlaps(grown, p) for p in placed):
            return False
        inside = (
            (avoid_pts[:, 0] > box[0] - point_r)
            & (avoid_pts[:, 0] < box[2] + point_r)
            & (avoid_pts[:, 1] > box[1] - point_r)
            & (avoid_pts[:, 1] < box[3] + point_r)
        )
        inside[own] = False  # a label may sit next to its own point
        return not inside.any()

    for i, (p, s) in enumerate(zip(pts, texts, strict=False)):
        tmp = ax.text(0, 0, s, fontsize=fs)
        ext = tmp.get_window_extent(renderer)
        tmp.remove()
        w, h = ext.width, ext.height
        base = math.atan2(p[1] - centre[1], p[0] - centre[0])
        choice = None
        for r in radii:
            for k in steps:
                a = base + k * math.pi / 8
                u = (math.cos(a), math.sin(a))
                cx = p[0] + u[0] * (r + w / 2)
                cy = p[1] + u[1] * (r + h / 2)
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                if free(box, i):
                    choice = (cx, cy)
                    break
            if choice is not None:
                break
        if choice is None:  # scan the whole axes, nearest position first
            gx = np.arange(inner[0] + w / 2, inner[2] - w / 2 + 1e-9, max(h / 2, 1.0))
            gy = np.arange(inner[1] + h / 2, inner[3] - h / 2 + 1e-9, max(h / 2, 1.0))
            cand = np.array(list(itertools.product(gx, gy))) if len(gx) and len(gy) else np.empty((0, 2))
            if len(cand):
                cand = cand[np.lexsort((cand[:, 1], cand[:, 0], np.hypot(*(cand - p).T)))]
            for cx, cy in cand:
                if free((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), i):
                    choice = (float(cx), float(cy))
                    break
        if choice is None:
            logger.warning("label %r could not be placed without overlap; drawn at its point", s)
            choice = (p[0] + w / 2 + point_r, p[1])
        cx, cy = choice
        placed.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
        far = math.hypot(cx - p[0], cy - p[1]) > (max(w, h) / 2 + 10 * px_per_pt)
        ann = ax.annotate(
            s,
            xy=(float(x[i]), float(y[i])),
            xytext=((cx - p[0]) / px_per_pt, (cy - p[1]) / px_per_pt),
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=fs,
            color="0.1",
            zorder=6,
            annotation_clip=False,
            arrowprops=(
                {"arrowstyle": "-", "color": "0.35", "lw": 0.6, "shrinkA": 1, "shrinkB": 2} if far else None
            ),
        )
        ann.set_gid(LABEL_GID)
        anns.append(ann)
    return anns


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _fmt(n: int) -> str:
    return f"{int(n):,}"


def _thin(index: np.ndarray, score: np.ndarray, max_points: int | None) -> np.ndarray:
    """Deterministically keep at most ``max_points`` of ``index``.

    Keeps the quarter with the highest ``score`` (the edges of the cloud, which carry its
    shape) and an evenly strided subset of the rest (gene order is unrelated to the values).
    """
    if max_points is None or len(index) <= max_points:
        return index
    n_edge = max_points // 4
    order = np.argsort(-score, kind="stable")
    edge = order[:n_edge]
    rest = np.sort(order[n_edge:])
    pick = rest[np.linspace(0, len(rest) - 1, max_points - n_edge).round().astype(int)]
    return index[np.sort(np.concatenate([edge, pick]))]


def _label_text(res: pd.DataFrame, label: str | None) -> pd.Series:
    """Gene names for labels; the gene id (``gene_id`` column, else the index) where missing."""
    id_src = res["gene_id"] if "gene_id" in res.columns else res.index
    ids = pd.Series(np.asarray(id_src).astype(str), index=res.index)
    if label is None or label not in res.columns:
        return ids
    names = res[label].astype("string")
    return names.where(names.notna() & (names.str.len() > 0), ids).astype(str)


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
    text = f"genes of interest ({_fmt(hl.requested)}"
    if len(hl.labelled) < len(hl.drawn):
        text += f"; {_fmt(len(hl.labelled))} labelled"
    if len(hl.drawn) < hl.requested:
        text += f"; {_fmt(hl.requested - len(hl.drawn))} {hidden_reason}, not shown"
    return Line2D([], [], ls="", marker="o", ms=7, markerfacecolor="none", markeredgecolor=COLORS["accent"],
                  label=text + ")")


def _check_sheet(sample_sheet: object, samples: Sequence[str], variables: Sequence[str], what: str) -> pd.DataFrame:
    if not isinstance(sample_sheet, pd.DataFrame):
        raise DegflowInputError(f"sample_sheet must be a DataFrame indexed by sample, got {type(sample_sheet).__name__}")
    missing = [s for s in samples if s not in sample_sheet.index]
    if missing:
        raise DegflowInputError(f"sample_sheet has no row for sample(s) {list(missing)[:3]} of the {what}")
    bad = [v for v in variables if v not in sample_sheet.columns]
    if bad:
        raise DegflowInputError(
            f"sample_sheet has no column(s) {bad}; choose among {list(sample_sheet.columns)}"
        )
    return sample_sheet.loc[list(samples)]


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
    :func:`degflow.bulk.qc.classify`); the legend gives the number of up and down genes. Dashed
    lines mark ``|log2FC| = lfc`` and ``padj = padj``. The ``top_n`` most significant DE
    genes (:func:`degflow.bulk.qc.top_genes`) are labelled by ``label`` (gene id when missing)
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
    res = checks.check_results(res, columns=(lfc_col, "padj"))
    checks.check_thresholds(lfc, padj)
    reg = qc._regulation(res, lfc, padj, lfc_col).to_numpy(dtype=object)
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
        fig = _figure(figsize)
        ax = fig.add_subplot()
        handles = []
        for cls in ("ns", "down", "up"):
            idx = np.flatnonzero(shown & (reg == cls) & ~is_zero)
            n_cls = int((shown & (reg == cls)).sum())
            if cls == "ns":
                score = y[idx] / y_top + np.abs(x[idx]) / x_max
                draw = _thin(idx, score, max_points)
                ax.scatter(x[draw], y[draw], s=5, c=COLORS["ns"], lw=0, rasterized=True, zorder=1)
                lab = f"not significant ({_fmt(n_cls)})"
                if len(draw) < len(idx):
                    lab += f"; {_fmt(len(draw) + int((is_zero & (reg == 'ns')).sum()))} drawn"
            else:
                ax.scatter(x[idx], y[idx], s=9, c=COLORS[cls], lw=0, rasterized=True, zorder=2)
                lab = f"{cls} ({_fmt(n_cls)})"
            zero = np.flatnonzero(is_zero & (reg == cls))
            if zero.size:
                ax.scatter(x[zero], y[zero], s=22, marker="^", c=COLORS[cls], lw=0, zorder=3)
            handles.append(Line2D([], [], ls="", marker="o", ms=6, color=COLORS[cls], label=lab))
        handles = handles[::-1]  # up, down, ns
        if is_zero.any():
            handles.append(
                Line2D([], [], ls="", marker="^", ms=6, color="0.4", label=f"padj = 0, drawn at top ({_fmt(is_zero.sum())})")
            )
        if n_hidden:
            handles.append(Line2D([], [], ls="", label=f"padj NA, not shown ({_fmt(n_hidden)})"))
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
        _freeze_layout(fig)
        pos = hl.labelled
        if top_n:
            top = qc.top_genes(res, top_n, lfc=lfc, padj=padj, lfc_col=lfc_col)
            extra = res.index.get_indexer(top.index)
            extra = extra[shown[extra] & ~np.isin(extra, pos)]
            pos = np.concatenate([pos, extra]).astype(int)
        if len(pos):
            names = _label_text(res, label).to_numpy()[pos]
            _place_labels(ax, x[pos], y[pos], list(names))
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
    res = checks.check_results(res, columns=(lfc_col, "padj", "baseMean"))
    checks.check_thresholds(lfc, padj)
    reg = qc._regulation(res, lfc, padj, lfc_col).to_numpy(dtype=object)
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
        fig = _figure(figsize)
        ax = fig.add_subplot()
        handles = []
        for cls in ("ns", "down", "up"):
            idx = np.flatnonzero(shown & (reg == cls))
            if cls == "ns":
                draw = _thin(idx, np.abs(yv[idx]), max_points)
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
            lab = f"{name} ({_fmt(idx.size)})"
            if cls == "ns" and draw.size < idx.size:
                lab += f"; {_fmt(draw.size)} drawn"
            handles.append(Line2D([], [], ls="", marker="o", ms=6, color=COLORS[cls], label=lab))
        handles = handles[::-1]
        if clipped.any():
            handles.append(Line2D([], [], ls="", marker="^", ms=6, color="0.4",
                                  label=f"|log2FC| > {lim:g}, at edge ({_fmt(clipped.sum())})"))
        if n_hidden:
            handles.append(Line2D([], [], ls="", label=f"baseMean 0, not shown ({_fmt(n_hidden)})"))
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
            _freeze_layout(fig)
            names = _label_text(res, label).to_numpy()[hl.labelled]
            _place_labels(ax, xv[hl.labelled], yd[hl.labelled], list(names))
    return fig


def deg_counts_bar(summary: pd.DataFrame, *, title: str | None = None) -> Figure:
    """Up- and down-regulated gene counts per contrast, as diverging horizontal bars.

    Parameters
    ----------
    summary
        Indexed by contrast with int columns ``up`` and ``down`` (:func:`degflow.bulk.qc.deg_counts`),
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
        fig = _figure((7.0, 1.2 + 0.55 * n))
        ax = fig.add_subplot()
        yy = np.arange(n)[::-1]
        ax.barh(yy, up, color=COLORS["up"], height=0.7, label="up")
        ax.barh(yy, -down, color=COLORS["down"], height=0.7, label="down")
        m = max(float(up.max()), float(down.max()), 1.0)
        for yi, u, d in zip(yy, up, down, strict=False):
            ax.text(u + m * 0.02, yi, _fmt(u), va="center", ha="left", fontsize=10)
            ax.text(-d - m * 0.02, yi, _fmt(d), va="center", ha="right", fontsize=10)
        ax.set_xlim(-m * 1.25, m * 1.25)
        ax.axvline(0, color="0.2", lw=1)
        ax.set_yticks(yy, names)
        ax.xaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: _fmt(abs(v))))
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
        ax.text(cx, cy, _fmt(lookup.get(key, 0)), ha="center", va="center", fontsize=13)
    for i, s in enumerate(sets):
        ax.text(*name_pos[i], f"{s}\n({_fmt(sizes[s])})", ha="center", va="center", fontsize=11,
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
        bool genes x sets (:func:`degflow.bulk.qc.deg_overlap`), or the ``{name: gene ids}`` mapping
        itself; intersection sizes come from :func:`degflow.bulk.qc.overlap_counts`.
    kind
        ``"auto"``, ``"venn"`` (2-3 sets) or ``"upset"``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if isinstance(membership, Mapping):
        membership = qc.deg_overlap(membership)
    counts = qc.overlap_counts(membership)
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
            fig = _figure((6.0, 5.5))
            ax = fig.add_subplot()
            _venn(ax, counts, sets, sizes)
            if title:
                ax.set_title(title)
            return fig
        shown = counts.head(max_intersections)
        m = len(shown)
        fig = _figure((max(6.0, 2.5 + 0.42 * m), 3.8 + 0.4 * k))
        gs = fig.add_gridspec(2, 2, width_ratios=[1.2, max(m, 1) * 0.42], height_ratios=[2.2, 0.4 * k + 0.2])
        ax_bar = fig.add_subplot(gs[0, 1])
        ax_dot = fig.add_subplot(gs[1, 1], sharex=ax_bar)
        ax_set = fig.add_subplot(gs[1, 0], sharey=ax_dot)
        xs = np.arange(m)
        ax_bar.bar(xs, shown["n_genes"].to_numpy(), color="0.25", width=0.7)
        for xi, v in zip(xs, shown["n_genes"].to_numpy(), strict=True):
            ax_bar.text(xi, v, _fmt(v), ha="center", va="bottom", fontsize=8, rotation=90 if m > 15 else 0)
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
    (:func:`degflow.bulk.qc.zscore_rows`), so colours show which samples are high or low *for that
    gene*, not absolute expression. Colours saturate at ``+-vmax``. Genes are clustered
    (Euclidean, average linkage, seaborn ``clustermap``); samples too unless
    ``cluster_samples=False`` (then sorted by ``annotate_by``). Row labels are gene names
    (``gene_names``, else ids) when there are at most ``max_row_labels`` genes.

    Parameters
    ----------
    matrix
        Variance-stabilised (or log-normalised) expression, genes x samples.
    genes
        Genes to show, e.g. ``qc.top_genes(res, 50).index``.
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
    checks.check_matrix(matrix, "matrix")
    missing = [g for g in genes if g not in matrix.index]
    if missing:
        raise DegflowInputError(f"{len(missing)} of the genes are not in matrix (e.g. {missing[:3]})")
    annotate_by = [annotate_by] if isinstance(annotate_by, str) else list(annotate_by)
    sheet = _check_sheet(sample_sheet, list(matrix.columns), annotate_by, "matrix")
    z = qc.zscore_rows(matrix.loc[genes])
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
        g.ax_heatmap.set_ylabel(f"{_fmt(n_g)} genes" if not show_rows else "")
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
    sheet = _check_sheet(sample_sheet, [str(s) for s in d.index], annotate_by, "distance matrix") if annotate_by else None
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
    sheet = _check_sheet(sample_sheet, [str(s) for s in coords.index], color_by, "PCA coordinates")
    xs = coords[cx].to_numpy(dtype=float)
    ys = coords[cy].to_numpy(dtype=float)
    names = [str(s) for s in coords.index]
    npan = len(color_by)
    with style():
        fig = _figure((5.6 * npan, 4.9))
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
        _freeze_layout(fig)
        if label:
            for ax in axes:
                _place_labels(ax, xs, ys, names, fontsize=8)
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
        fig = _figure((3.4 * len(panels) + 1.5, 1.2 + 0.32 * n))
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
    sheet = _check_sheet(sample_sheet, samples, group_by + ([color_by] if color_by else []), "counts")
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
        col = sheet[color_by]
        labels = col.astype(str).to_numpy()
        order = ([str(c) for c in col.cat.categories] if isinstance(col.dtype, pd.CategoricalDtype)
                 else sorted(set(labels)))
    else:
        labels, order = keys, groups
    present = set(labels)
    colours = {lv: PALETTE[i % len(PALETTE)] for i, lv in enumerate(v for v in order if v in present)}
    with style():
        fig = _figure((max(3.6, 0.9 * len(groups) + 2.4), 4.2))
        ax = fig.add_subplot()
        for i, grp in enumerate(groups):
            idx = np.flatnonzero(keys == grp)
            offsets = np.linspace(-0.18, 0.18, len(idx)) if len(idx) > 1 else np.zeros(1)
            for off, j in zip(offsets, idx, strict=False):
                ax.scatter(i + off, values[j], s=42, color=colours[labels[j]], edgecolor="white", lw=0.5, zorder=3)
            gm = float(np.exp(np.log(values[idx]).mean()))
            ax.plot([i - 0.3, i + 0.3], [gm, gm], color="0.1", lw=1.4, zorder=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(mpl.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
        ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 4 else 0,
                      ha="right" if len(groups) > 4 else "center")
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_xlabel(" : ".join(group_by))
        ax.set_ylabel(f"normalised count + {pseudocount:g}")
        if title:
            ax.set_title(title)
        if color_by:
            handles = [Line2D([], [], ls="", marker="o", ms=6, color=c, label=str(k)) for k, c in colours.items()]
            ax.legend(handles=handles, title=color_by, loc="upper left", bbox_to_anchor=(1.01, 1.0), alignment="left")
        if notes:
            ax.annotate("\n".join(notes), xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0, -48 if len(groups) <= 4
                        else -70), textcoords="offset points", va="top", ha="left", fontsize=9, color="0.15",
                        annotation_clip=False)
    return fig


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
        col = sheet[color_by]
        labels = col.astype(str).to_numpy()
        order = ([str(c) for c in col.cat.categories] if isinstance(col.dtype, pd.CategoricalDtype)
                 else sorted(set(labels)))
        colours = {lv: PALETTE[i % len(PALETTE)] for i, lv in enumerate(v for v in order if v in set(labels))}
    else:
        labels, colours = np.full(len(x), ""), {"": PALETTE[0]}
    span = float(x.max() - x.min()) or 1.0
    with style():
        fig = _figure((5.0, 4.2))
        ax = fig.add_subplot()
        for j in range(len(x)):
            ax.scatter(x[j], values[j], s=42, color=colours[labels[j]], edgecolor="white", lw=0.5, zorder=3)
        for v in np.unique(x):
            at = x == v
            if at.sum() > 1:
                gm = float(np.exp(np.log(values[at]).mean()))
                ax.plot([v - 0.03 * span, v + 0.03 * span], [gm, gm], color="0.1", lw=1.4, zorder=2)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(mpl.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
        ax.set_xlim(float(x.min()) - 0.08 * span, float(x.max()) + 0.08 * span)
        ax.set_xlabel(covariate)
        ax.set_ylabel(f"normalised count + {pseudocount:g}")
        if title:
            ax.set_title(title)
        if color_by:
            handles = [Line2D([], [], ls="", marker="o", ms=6, color=c, label=str(k)) for k, c in colours.items()]
            ax.legend(handles=handles, title=color_by, loc="upper left", bbox_to_anchor=(1.01, 1.0), alignment="left")
        if notes:
            ax.annotate("\n".join(notes), xy=(0.0, 0.0), xycoords="axes fraction", xytext=(0, -48),
                        textcoords="offset points", va="top", ha="left", fontsize=9, color="0.15",
                        annotation_clip=False)
    return fig


def message_figure(text: str, *, title: str | None = None, figsize: tuple[float, float] = (6.0, 2.4)) -> Figure:
    """A figure that only says why there is nothing to draw (e.g. no gene of interest was found)."""
    with style():
        fig = _figure(figsize)
        ax = fig.add_subplot()
        ax.axis("off")
        ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, color="0.15")
        if title:
            ax.set_title(title)
    return fig


# --------------------------------------------------------------------------------------
# saving
# --------------------------------------------------------------------------------------
def save(fig: Figure, path_png: str | Path, path_pdf: str | Path | None = None, dpi: int = 150) -> None:
    """Write ``fig`` as PNG (and PDF) with reproducible bytes, then close it.

    Metadata that would change between runs or versions is left out (PNG ``Software``; PDF
    ``CreationDate``, ``Producer``, ``Creator``), so re-running the workflow on the same
    input gives identical files. Parent folders are created.
    """
    import matplotlib.pyplot as plt

    if not isinstance(fig, Figure):
        raise DegflowInputError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    try:
        with style():
            Path(path_png).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path_png, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.1,
                        metadata={"Software": None})
            if path_pdf is not None:
                Path(path_pdf).parent.mkdir(parents=True, exist_ok=True)
                fig.savefig(path_pdf, format="pdf", dpi=dpi, bbox_inches="tight", pad_inches=0.1,
                            metadata={"CreationDate": None, "Producer": None, "Creator": None})
    finally:
        plt.close(fig)
