"""The house style of every degflow figure, and what the figure modules share.

:func:`style` (DejaVu Sans, bundled with matplotlib, so files are identical on every machine; fonts
readable on a slide; Okabe-Ito colours: up-regulated vermillion ``#D55E00``, down-regulated blue
``#0072B2``, not significant grey, which stay distinct under the common colour-vision deficiencies),
:data:`COLORS` and :data:`PALETTE`; :func:`figure` (a pyplot-free Figure); deterministic,
non-overlapping text labels (:func:`freeze_layout`, :func:`place_labels`); :func:`save`
(byte-reproducible PNG/PDF); :func:`message_figure` (a figure saying why there is nothing to draw).
Used by :mod:`degflow.pl.bulk`, :mod:`degflow.pl.compound`, :mod:`degflow.pl.singlecell` and
:mod:`degflow.pl.pseudobulk`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from degflow.errors import DegflowInputError

__all__ = [
    "COLORS",
    "LABEL_GID",
    "PALETTE",
    "check_sheet",
    "figure",
    "fmt",
    "freeze_layout",
    "label_text",
    "message_figure",
    "place_labels",
    "save",
    "style",
    "thin",
]

logger = logging.getLogger(__name__)

#: Colours of the DE classes (Okabe-Ito vermillion / blue, light grey).
COLORS: dict[str, str] = {"up": "#D55E00", "down": "#0072B2", "ns": "#BBBBBB", "accent": "#000000"}
#: Categorical palette (Okabe-Ito, black last), for sample groups.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
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


def figure(figsize: tuple[float, float], *, layout: str | None = "constrained") -> Figure:
    """A pyplot-free Figure with an Agg canvas (so text can be measured).

    Parameters
    ----------
    figsize
        Inches.
    layout
        matplotlib layout engine (``None``: none).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = Figure(figsize=figsize, layout=layout)
    FigureCanvasAgg(fig)
    return fig


# --------------------------------------------------------------------------------------
# label placement: deterministic, non-overlapping
# --------------------------------------------------------------------------------------
def freeze_layout(fig: Figure) -> None:
    """Run the layout engine once, then keep axes where they are (labels are placed in pixels).

    Call before :func:`place_labels`, once axis limits are final.
    """
    fig.canvas.draw()
    fig.set_layout_engine("none")


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(
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
    :func:`freeze_layout`.
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
def fmt(n: int) -> str:
    """A count as figures print it: an integer with thousands separators (``12,345``)."""
    return f"{int(n):,}"


def thin(index: np.ndarray, score: np.ndarray, max_points: int | None) -> np.ndarray:
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


def label_text(res: pd.DataFrame, label: str | None) -> pd.Series:
    """Gene names for labels; the gene id (``gene_id`` column, else the index) where missing."""
    id_src = res["gene_id"] if "gene_id" in res.columns else res.index
    ids = pd.Series(np.asarray(id_src).astype(str), index=res.index)
    if label is None or label not in res.columns:
        return ids
    names = res[label].astype("string")
    return names.where(names.notna() & (names.str.len() > 0), ids).astype(str)


def check_sheet(sample_sheet: object, samples: Sequence[str], variables: Sequence[str], what: str) -> pd.DataFrame:
    """The rows of ``samples`` of a sample sheet that has every column of ``variables``.

    Parameters
    ----------
    sample_sheet
        Indexed by sample.
    samples
        The samples drawn, in drawing order.
    variables
        Columns the figure uses (colours, groups, annotation bars).
    what
        What the samples come from, for the error message (e.g. ``"PCA coordinates"``).

    Returns
    -------
    pandas.DataFrame
        ``sample_sheet.loc[samples]``.

    Raises
    ------
    DegflowInputError
        Not a DataFrame, a sample without a row, a column missing.
    """
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


def message_figure(text: str, *, title: str | None = None, figsize: tuple[float, float] = (6.0, 2.4)) -> Figure:
    """A figure that only says why there is nothing to draw (e.g. no gene of interest was found)."""
    with style():
        fig = figure(figsize)
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
