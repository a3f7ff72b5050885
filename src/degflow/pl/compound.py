"""Figures of the compound study: rescue plot, pathway scores, enrichment dot plot, qPCR concordance.

Drawing only, in the house style of :mod:`degflow.pl.base` (reused: :func:`degflow.pl.base.style`,
its colours and non-overlapping labels; save with :func:`degflow.pl.base.save`). Panel heatmaps
use :func:`degflow.pl.bulk.deg_heatmap` directly. Every function returns a Figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from degflow.errors import DegflowInputError
from degflow.pl.base import PALETTE, check_sheet, figure, fmt, freeze_layout, label_text, place_labels, style, thin

__all__ = ["CLASS_COLORS", "enrichment_dotplot", "pathway_scores", "qpcr_concordance", "rescue"]

#: Colours of the rescue classes (Okabe-Ito: bluish green = reversed, vermillion = aggravated).
CLASS_COLORS: dict[str, str] = {
    "reversed": "#009E73",
    "partially_reversed": "#56B4E9",
    "aggravated": "#D55E00",
    "not_rescued": "#7F7F7F",
    "treatment_only": "#E69F00",
    "unchanged": "#DDDDDD",
}
_LABELS = {"reversed": "reversed", "partially_reversed": "partially reversed", "aggravated": "aggravated",
           "not_rescued": "not rescued", "treatment_only": "treatment only", "unchanged": "other genes"}


def rescue(
    genes: pd.DataFrame,
    *,
    lfc: float = 1.0,
    top_n: int = 15,
    title: str | None = None,
    disease_label: str = "disease log2 fold change (model vs control)",
    treatment_label: str = "treatment log2 fold change (treated vs model)",
    max_points: int | None = 20_000,
    figsize: tuple[float, float] = (7.2, 6.6),
) -> Figure:
    """The rescue plot: disease log2FC (x) against treatment log2FC (y), one point per gene.

    The two quadrants where the treatment opposes the disease change (x > 0, y < 0 and
    x < 0, y > 0) are shaded green: genes there move back toward control. Dashed lines mark
    ``|log2FC| = lfc`` on both axes; the dotted diagonal ``y = -x`` is full rescue (back to
    the control level). Points are coloured by ``rescue_class``; the legend gives the count
    of each class. The ``top_n`` reversed genes with the smallest max(padj) are labelled.

    Parameters
    ----------
    genes
        Table of :func:`degflow.compound.rescue.classify_rescue`.
    lfc
        Threshold drawn.
    top_n
        Reversed genes labelled (0: none).
    max_points
        Cap on drawn ``unchanged`` genes (every other class is always drawn).

    Returns
    -------
    matplotlib.figure.Figure
    """
    need = ("log2FC_disease", "log2FC_treatment", "rescue_class")
    miss = [c for c in need if c not in genes.columns]
    if miss:
        raise DegflowInputError(f"genes lacks column(s) {miss}; pass the table of rescue.classify_rescue")
    x = genes["log2FC_disease"].to_numpy(dtype=float)
    y = genes["log2FC_treatment"].to_numpy(dtype=float)
    cls = genes["rescue_class"].astype(str).to_numpy()
    ok = np.isfinite(x) & np.isfinite(y)
    lim_x = max(float(np.nanmax(np.abs(x[ok]))) if ok.any() else 1.0, 2 * lfc, 1.0) * 1.08
    lim_y = max(float(np.nanmax(np.abs(y[ok]))) if ok.any() else 1.0, 2 * lfc, 1.0) * 1.08
    with style():
        fig = figure(figsize)
        ax = fig.add_subplot()
        shade = "#009E73"
        ax.fill_between([0, lim_x], -lim_y, 0, color=shade, alpha=0.07, lw=0, zorder=0)
        ax.fill_between([-lim_x, 0], 0, lim_y, color=shade, alpha=0.07, lw=0, zorder=0)
        ax.text(0.98, 0.02, "reversal", transform=ax.transAxes, ha="right", va="bottom", color=shade, fontsize=9)
        ax.text(0.02, 0.98, "reversal", transform=ax.transAxes, ha="left", va="top", color=shade, fontsize=9)
        ax.axhline(0, color="0.6", lw=0.8, zorder=1)
        ax.axvline(0, color="0.6", lw=0.8, zorder=1)
        for v in (-lfc, lfc):
            ax.axhline(v, color="0.3", lw=0.8, ls="--", zorder=1)
            ax.axvline(v, color="0.3", lw=0.8, ls="--", zorder=1)
        d = np.array([-min(lim_x, lim_y), min(lim_x, lim_y)])
        ax.plot(d, -d, color="0.2", lw=0.9, ls=":", zorder=1)
        handles = []
        for c in reversed(list(CLASS_COLORS)):
            m = ok & (cls == c)
            idx = np.flatnonzero(m)
            if c == "unchanged":
                idx = thin(idx, np.abs(x[idx]) + np.abs(y[idx]), max_points)
            if m.sum() == 0:
                continue
            ax.scatter(x[idx], y[idx], s=6 if c == "unchanged" else 12, color=CLASS_COLORS[c], lw=0,
                       alpha=0.6 if c == "unchanged" else 0.85, zorder=2 if c == "unchanged" else 3,
                       rasterized=len(idx) > 2000)
            handles.append(Line2D([], [], ls="", marker="o", color=CLASS_COLORS[c],
                                  label=f"{_LABELS[c]} ({fmt(int(m.sum()))})"))
        handles.append(Line2D([], [], color="0.2", ls=":", label="full rescue (y = -x)"))
        ax.legend(handles=list(reversed(handles[:-1])) + handles[-1:], loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_xlim(-lim_x, lim_x)
        ax.set_ylim(-lim_y, lim_y)
        ax.set_xlabel(disease_label)
        ax.set_ylabel(treatment_label)
        if title:
            ax.set_title(title)
        freeze_layout(fig)
        if top_n > 0:
            rev = genes.loc[ok & (cls == "reversed")].copy()
            if len(rev):
                worst = np.fmax(rev["padj_disease"].to_numpy(float), rev["padj_treatment"].to_numpy(float))
                rev = rev.assign(_w=worst).sort_values(["_w", "gene_id"], kind="mergesort").head(top_n)
                names = label_text(rev.set_index("gene_id"), "gene_name")
                place_labels(ax, rev["log2FC_disease"].to_numpy(float), rev["log2FC_treatment"].to_numpy(float),
                             list(names), fontsize=8)
    return fig


def pathway_scores(
    scores: pd.DataFrame,
    sample_sheet: pd.DataFrame,
    *,
    group_by: str,
    order: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Per-sample pathway scores, one panel per gene set, samples grouped by a design variable.

    Each dot is a sample; the bar is the group mean. Scores are means of per-gene z-scores
    (:func:`degflow.compound.pathways.panel_scores`): 0 is the average over all samples.

    Parameters
    ----------
    scores
        Samples x gene sets.
    sample_sheet
        Indexed by sample, with column ``group_by``.
    order
        Group levels in drawing order (default: sheet order of appearance / categories).

    Returns
    -------
    matplotlib.figure.Figure
    """
    sheet = check_sheet(sample_sheet, [str(s) for s in scores.index], [group_by], "pathway scores")
    g = sheet[group_by]
    levels = list(order) if order is not None else (
        list(g.cat.categories) if isinstance(g.dtype, pd.CategoricalDtype) else list(pd.unique(g.astype(str))))
    g = g.astype(str)
    sets = list(scores.columns)
    if not sets:
        raise DegflowInputError("scores has no gene-set column")
    ncol = min(3, len(sets))
    nrow = math.ceil(len(sets) / ncol)
    with style():
        fig = figure((4.0 * ncol, 3.0 * nrow + 0.4))
        axes = fig.subplots(nrow, ncol, squeeze=False)
        for k, ax in enumerate(axes.flat):
            if k >= len(sets):
                ax.set_visible(False)
                continue
            s = sets[k]
            for j, lv in enumerate(levels):
                v = scores.loc[g.index[g == str(lv)], s].to_numpy(dtype=float)
                col = PALETTE[j % len(PALETTE)]
                jitter = (np.arange(len(v)) - (len(v) - 1) / 2) * 0.08
                ax.scatter(j + jitter, v, s=28, color=col, edgecolor="white", lw=0.5, zorder=3)
                if np.isfinite(v).any():
                    ax.hlines(np.nanmean(v), j - 0.3, j + 0.3, color=col, lw=2, zorder=2)
            ax.axhline(0, color="0.8", lw=0.8, zorder=0)
            ax.set_xticks(range(len(levels)), [str(lv) for lv in levels], rotation=30, ha="right")
            ax.set_title(str(s).replace("HALLMARK_", "").replace("_", " ").lower(), fontsize=10, fontweight="bold")
            if k % ncol == 0:
                ax.set_ylabel("pathway score\n(mean gene z-score)")
        if title:
            fig.suptitle(title, fontweight="bold")
    return fig


_CAP = 10.0  # colour scale of -log10 adjusted p: GSEA FDRs of 0 would otherwise flatten it


def _mlog(p: float) -> float:
    return min(-math.log10(max(float(p), 1e-300)), _CAP)


def enrichment_dotplot(
    ora_table: pd.DataFrame,
    gsea_table: pd.DataFrame | None = None,
    *,
    padj: float = 0.05,
    max_sets: int = 20,
    title: str | None = None,
) -> Figure:
    """Dot plot of ORA (up and down DEG lists) and, if given, preranked GSEA.

    ORA panel: one column per direction; dot size = overlap, colour = -log10 padj (grey when
    padj >= ``padj``). GSEA panel: x = NES, colour = -log10 FDR. Colours saturate at
    -log10 = 10. Gene sets are the union of the
    ``max_sets`` most significant ones, in the same order in both panels.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib as mpl

    if not {"gene_set", "direction", "overlap", "padj"} <= set(ora_table.columns):
        raise DegflowInputError("ora_table needs gene_set, direction, overlap, padj (see pathways.ora)")
    ranked = ora_table.sort_values("padj", kind="mergesort")["gene_set"].tolist()
    if gsea_table is not None and len(gsea_table):
        ranked += gsea_table.sort_values("fdr", kind="mergesort")["gene_set"].tolist()
    sets = list(dict.fromkeys(ranked))[:max_sets]
    if not sets:
        sets = ["(no gene set tested)"]
    dirs = [d for d in ("up", "down") if d in set(ora_table["direction"])] or ["up", "down"]
    cmap = mpl.colormaps["viridis_r"]
    n = len(sets)
    with_gsea = gsea_table is not None
    with style():
        fig = figure((10.5 if with_gsea else 7.0, 1.6 + 0.32 * n))
        axes = fig.subplots(1, 2 if with_gsea else 1, squeeze=False, sharey=True,
                            gridspec_kw={"width_ratios": [1, 1.3]} if with_gsea else None)[0]
        yy = {s: n - 1 - i for i, s in enumerate(sets)}
        ax = axes[0]
        norm = mpl.colors.Normalize(0, _CAP)
        for j, d in enumerate(dirs):
            sub = ora_table[(ora_table["direction"] == d) & ora_table["gene_set"].isin(sets)]
            for _, r in sub.iterrows():
                sig = r["padj"] < padj
                c = cmap(norm(_mlog(r["padj"]))) if sig else "#CCCCCC"
                ax.scatter(j, yy[r["gene_set"]], s=20 + 6 * float(r["overlap"]), color=c, edgecolor="0.3", lw=0.4,
                           zorder=3)
        ax.set_xticks(range(len(dirs)), [f"{d}-regulated\nDEGs" for d in dirs])
        ax.set_xlim(-0.6, len(dirs) - 0.4)
        ax.set_yticks(range(n), [s.replace("HALLMARK_", "").replace("_", " ").lower() for s in reversed(sets)])
        ax.set_title("over-representation (ORA)", fontsize=11, fontweight="normal")
        for k in (5, 20, 50):
            ax.scatter([], [], s=20 + 6 * k, color="#CCCCCC", edgecolor="0.3", lw=0.4, label=str(k))
        ax.legend(title="overlap", loc="upper left", bbox_to_anchor=(0.0, -0.12 - 0.02 * n / 10), ncol=3)
        if with_gsea:
            ax2 = axes[1]
            sub = gsea_table[gsea_table["gene_set"].isin(sets)] if len(gsea_table) else gsea_table
            for _, r in sub.iterrows():
                sig = r["fdr"] < padj
                c = cmap(norm(_mlog(r["fdr"]))) if sig else "#CCCCCC"
                ax2.scatter(r["NES"], yy[r["gene_set"]], s=70, color=c, edgecolor="0.3", lw=0.4, zorder=3)
            ax2.axvline(0, color="0.6", lw=0.8)
            ax2.set_xlabel("normalised enrichment score (NES)\n< 0: down in test level, > 0: up")
            ax2.set_title("preranked GSEA (Wald statistic)", fontsize=11, fontweight="normal")
            nes = gsea_table["NES"].to_numpy(dtype=float) if len(gsea_table) else np.array([1.0])
            m = max(float(np.nanmax(np.abs(nes))) if np.isfinite(nes).any() else 1.0, 1.0) * 1.15
            ax2.set_xlim(-m, m)
        sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        fig.colorbar(sm, ax=list(axes), label=f"-log10 adjusted p (FDR)\ncapped at {_CAP:g}; grey: >= {padj:g}", shrink=0.6)
        if title:
            fig.suptitle(title, fontweight="bold")
    return fig


def qpcr_concordance(pairs: pd.DataFrame, stats_table: pd.DataFrame, *, title: str | None = None) -> Figure:
    """qPCR log2FC (2^-ddCt) against RNA-seq log2FC, one colour per contrast, identity line drawn.

    The legend gives Pearson and Spearman correlations per contrast (from
    :func:`degflow.compound.qpcr.concordance`); genes are labelled.

    Returns
    -------
    matplotlib.figure.Figure
    """
    if not {"contrast", "gene", "log2FC_qpcr", "log2FC_rnaseq"} <= set(pairs.columns):
        raise DegflowInputError("pairs needs contrast, gene, log2FC_qpcr, log2FC_rnaseq (see qpcr.concordance)")
    st = stats_table.set_index("contrast") if len(stats_table) else pd.DataFrame()
    with style():
        fig = figure((7.4, 5.8))
        ax = fig.add_subplot()
        vals = pairs[["log2FC_qpcr", "log2FC_rnaseq"]].to_numpy(dtype=float)
        m = max(float(np.nanmax(np.abs(vals))) if np.isfinite(vals).any() else 1.0, 1.0) * 1.15
        ax.plot([-m, m], [-m, m], color="0.5", ls=":", lw=0.9, zorder=1)
        ax.axhline(0, color="0.85", lw=0.8, zorder=0)
        ax.axvline(0, color="0.85", lw=0.8, zorder=0)
        handles = []
        for j, c in enumerate(pd.unique(pairs["contrast"])):
            sub = pairs[pairs["contrast"] == c]
            col = PALETTE[j % len(PALETTE)]
            ax.scatter(sub["log2FC_rnaseq"], sub["log2FC_qpcr"], s=40, color=col, edgecolor="white", lw=0.6, zorder=3)
            lab = str(c)
            if c in st.index and np.isfinite(st.loc[c, "pearson_r"]):
                lab += f"\nPearson r = {st.loc[c, 'pearson_r']:.2f}, Spearman = {st.loc[c, 'spearman_r']:.2f}"
            handles.append(Patch(color=col, label=lab))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.set_xlim(-m, m)
        ax.set_ylim(-m, m)
        ax.set_xlabel("RNA-seq log2 fold change")
        ax.set_ylabel("qRT-PCR log2 fold change (-ddCt)")
        if title:
            ax.set_title(title)
        freeze_layout(fig)
        if len(pairs):
            place_labels(ax, pairs["log2FC_rnaseq"].to_numpy(float), pairs["log2FC_qpcr"].to_numpy(float),
                         list(pairs["gene"].astype(str)), fontsize=8)
    return fig
