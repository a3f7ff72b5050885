"""Pseudobulk figures (drawing only): cell-type composition per sample, DEG counts per cell type and contrast.

Each function returns a :class:`matplotlib.figure.Figure` in the house style (:mod:`degflow.pl.base`); the caller
saves it (:func:`degflow.pl.base.save`). Volcano plots of the pseudobulk results: :func:`degflow.pl.de.volcano`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from degflow.errors import DegflowInputError
from degflow.pl.base import PALETTE, figure, style

__all__ = ["deg_count_heatmap", "proportions_figure"]


def _type_colors(n: int) -> list:
    if n <= len(PALETTE):
        return list(PALETTE[:n])
    cmap = mpl.colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def proportions_figure(props: pd.DataFrame, *, groupby: str = "cell_type", sample_key: str = "sample",
                       by: str | None = "condition", title: str | None = None) -> Figure:
    """Stacked bars: the cell-type composition of each sample, samples grouped by ``by`` (if a column).

    ``props`` is the table of :func:`degflow.pseudobulk.aggregate.proportions`.
    """
    p = props.copy()
    order = list(dict.fromkeys(p[sample_key]))
    if by is not None and by in p.columns:
        first = p.drop_duplicates(sample_key).set_index(sample_key)[by]
        order = sorted(order, key=lambda s: (list(dict.fromkeys(first)).index(first[s]), order.index(s)))
    wide = p.pivot_table(index=sample_key, columns=groupby, values="fraction", observed=False, sort=False,
                         fill_value=0.0).reindex(order)
    types = list(dict.fromkeys(p[groupby]))
    wide = wide.reindex(columns=types, fill_value=0.0)
    colors = _type_colors(len(types))
    with style():
        fig = figure((max(4.5, 0.45 * len(order) + 3.0), 4.6))
        ax = fig.add_subplot()
        x = np.arange(len(order))
        bottom = np.zeros(len(order))
        for t, c in zip(types, colors, strict=False):
            ax.bar(x, wide[t].to_numpy(), bottom=bottom, color=c, width=0.8, label=str(t), edgecolor="white", lw=0.3)
            bottom += wide[t].to_numpy()
        labels = order
        if by is not None and by in p.columns:
            first = p.drop_duplicates(sample_key).set_index(sample_key)[by]
            labels = [f"{s}\n{first[s]}" for s in order] if len(order) <= 12 else order
        ax.set_xticks(x, labels, rotation=90 if len(order) > 6 else 0, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_ylabel("fraction of the sample's cells")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title=groupby, fontsize=9)
        ax.set_title(title or f"{groupby.replace('_', ' ')} composition per {sample_key}")
    return fig


def deg_count_heatmap(summary: pd.DataFrame, *, skipped: Sequence[str] = (), title: str | None = None) -> Figure:
    """Heatmap of DEG counts: cell types (rows) × contrast up / down (columns), counts written in the cells.

    ``summary`` holds ``cell_type``, ``contrast``, ``n_up``, ``n_down`` (the workflow's
    ``pseudobulk/summary.tsv``); ``skipped`` cell types are drawn as grey "not tested" rows.
    """
    import matplotlib as mpl
    need = {"cell_type", "contrast", "n_up", "n_down"}
    if not need <= set(summary.columns):
        raise DegflowInputError(f"summary needs columns {sorted(need)}")
    contrasts = list(dict.fromkeys(summary["contrast"]))
    types = list(dict.fromkeys(summary["cell_type"])) + [t for t in skipped if t not in set(summary["cell_type"])]
    cols = [(c, d) for c in contrasts for d in ("up", "down")]
    M = np.full((len(types), len(cols)), np.nan)
    s = summary.set_index(["cell_type", "contrast"])
    for i, t in enumerate(types):
        for j, (c, d) in enumerate(cols):
            if (t, c) in s.index:
                M[i, j] = s.loc[(t, c), f"n_{d}"]
    with style():
        fig = figure((2.2 + 1.3 * len(cols), 1.4 + 0.42 * len(types)))
        ax = fig.add_subplot()
        shown = np.ma.masked_invalid(np.log10(M + 1))
        cmap = mpl.colormaps["Reds"].copy()
        cmap.set_bad("#DDDDDD")
        vmax = max(float(np.nanmax(np.log10(M + 1))) if np.isfinite(M).any() else 1.0, 1.0)
        im = ax.imshow(shown, aspect="auto", cmap=cmap, vmin=0, vmax=vmax)
        for i in range(len(types)):
            for j in range(len(cols)):
                txt = "not tested" if np.isnan(M[i, j]) else f"{int(M[i, j]):,}"
                dark = np.isfinite(M[i, j]) and np.log10(M[i, j] + 1) > 0.6 * vmax
                ax.text(j, i, txt, ha="center", va="center", fontsize=9, color="white" if dark else "black")
        ax.set_xticks(range(len(cols)), [f"{c}\n{d}" for c, d in cols], fontsize=9)
        ax.set_yticks(range(len(types)), types)
        ax.tick_params(length=0)
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(False)
        cb = fig.colorbar(im, ax=ax, shrink=0.8)
        cb.set_label("DEGs (log10(n + 1))")
        ax.set_title(title or "Differentially expressed genes per cell type")
    return fig
