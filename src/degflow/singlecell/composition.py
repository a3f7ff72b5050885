"""Differential cell-type composition: propeller (Phipson et al. 2022) on per-replicate cell-type proportions.

Which populations expand or shrink between conditions is a question about replicates (samples, donors),
not cells. propeller (R package speckle) answers it per cell type: the proportion of each replicate's
cells in the cell type, a variance-stabilising transform (logit of ``(n + 0.5) / (N + 0.5 k)``, or the
arcsine square root), and a linear model per cell type with limma's empirical-Bayes moderated statistics
(a moderated t for two levels, a moderated F for all levels of a factor with three or more), robust
hyper-parameter estimation by default, covariates such as donor in the design, Benjamini-Hochberg FDR.

The linear model and the empirical Bayes step are limma's ``lmFit`` / ``contrasts.fit`` / ``eBayes``
(``robust=TRUE``: ``fitFDistRobustly``), from pylimma, a Python port that reproduces limma 3.54 in R to
~1e-9 (checked by ``tests/test_composition.py`` against ``tests/data/propeller_*``).

The parse-time check of ``singlecell.composition`` and the tests it plans are :mod:`degflow.plan.composition`.

=============================  ==========================================================================
:func:`cell_counts`            cells per replicate × cell type (long table with the design columns)
:func:`transformed_proportions`  speckle's ``getTransformedProps``: proportions and their transform
:func:`propeller`              every contrast (moderated t) and all-levels test (moderated F)
=============================  ==========================================================================

The figure (per-replicate proportions per cell type and level, with the FDR) is drawn by
:func:`degflow.pl.singlecell.composition_figure`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError
from degflow.plan.composition import CompositionTest

__all__ = [
    "cell_counts",
    "propeller",
    "transformed_proportions",
]

log = logging.getLogger("degflow")


# ----------------------------------------------------------------------------------------------
# counts and proportions
# ----------------------------------------------------------------------------------------------


def cell_counts(obs: pd.DataFrame, *, groupby: str, sample_key: str, metadata: pd.DataFrame) -> pd.DataFrame:
    """Cells of each cell type in each replicate, as a long table.

    Parameters
    ----------
    obs
        The cells' ``obs`` (``groupby`` and ``sample_key`` columns).
    metadata
        One row per replicate (index: ``sample_key`` values) with the design columns
        (:attr:`degflow.plan.composition.CompositionPlan.metadata`).

    Returns
    -------
    DataFrame
        ``sample``, ``cell_type``, ``n_cells`` (zeros included) and the design columns; replicates in
        ``metadata`` order, cell types in category order (else first appearance). Replicates of
        ``metadata`` without any cell are kept with zero counts (:func:`propeller` leaves them out, loudly).
    """
    for col in (groupby, sample_key):
        if col not in obs.columns:
            raise DegflowInputError(f"composition: '{col}' is not an obs column of the single-cell data")
    types = obs[groupby]
    cats = list(types.cat.categories) if isinstance(types.dtype, pd.CategoricalDtype) \
        else list(dict.fromkeys(types.astype(str)))
    cats = [str(c) for c in cats]
    samples = obs[sample_key].astype(str)
    unknown = sorted(set(samples) - set(metadata.index))
    if unknown:
        raise DegflowInputError(f"composition: {sample_key} '{unknown[0]}' of the cells is not in the sample sheet")
    tab = pd.crosstab(samples, types.astype(str)).reindex(index=list(metadata.index), columns=cats, fill_value=0)
    tab = tab.loc[:, tab.sum(axis=0) > 0]
    long = tab.stack().rename("n_cells").reset_index()
    long.columns = ["sample", "cell_type", "n_cells"]
    long["n_cells"] = long["n_cells"].astype(np.int64)
    meta = metadata.copy()
    for c in meta.columns:
        if isinstance(meta[c].dtype, pd.CategoricalDtype):
            meta[c] = meta[c].astype(str)
    meta = meta.drop(columns=[c for c in meta.columns if c in ("sample", "cell_type", "n_cells")])
    return long.join(meta, on="sample").reset_index(drop=True)


def transformed_proportions(counts: pd.DataFrame, *, transform: Literal["logit", "asin"] = "logit"
                            ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """speckle's ``getTransformedProps``: each replicate's cell-type proportions and their transform.

    Parameters
    ----------
    counts
        Cells, replicates (rows) × cell types (columns).
    transform
        ``logit``: ``log(p / (1 - p))`` of ``p = (n + 0.5) / sum(n + 0.5)`` (the pseudo-count keeps zeros
        finite); ``asin``: ``arcsin(sqrt(n / N))``.

    Returns
    -------
    ``(proportions, transformed)``, both replicates × cell types.
    """
    n = counts.to_numpy(dtype=float)
    total = n.sum(axis=1, keepdims=True)
    if (total <= 0).any():
        raise DegflowInputError(f"composition: replicate '{counts.index[(total[:, 0] <= 0)][0]}' has no cells")
    props = n / total
    if transform == "logit":
        pseudo = (n + 0.5) / (n + 0.5).sum(axis=1, keepdims=True)
        trans = np.log(pseudo / (1 - pseudo))
    elif transform == "asin":
        trans = np.arcsin(np.sqrt(props))
    else:
        raise DegflowInputError(f"composition: transform must be logit or asin, not {transform!r}")
    return (pd.DataFrame(props, index=counts.index, columns=counts.columns),
            pd.DataFrame(trans, index=counts.index, columns=counts.columns))


# ----------------------------------------------------------------------------------------------
# the test
# ----------------------------------------------------------------------------------------------


def _level_rows(mm, meta: pd.DataFrame, factor: str, levels: Sequence[str]) -> np.ndarray:
    """Design-matrix rows of one replicate with ``factor`` set to each of ``levels`` (others as the first)."""
    template = meta.iloc[[0] * len(levels)].copy()
    template[factor] = pd.Categorical(list(levels), categories=meta[factor].cat.categories)
    return np.asarray(mm.model_spec.get_model_matrix(template), dtype=float)


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (R's ``p.adjust(p, "BH")``)."""
    p = np.asarray(p, dtype=float)
    n = len(p)
    order = np.argsort(-p, kind="stable")
    adj = np.minimum.accumulate(p[order] * n / np.arange(n, 0, -1))
    out = np.empty(n)
    out[order] = np.minimum(adj, 1.0)
    return out


def propeller(counts: pd.DataFrame, *, design: str, tests: Sequence[CompositionTest], metadata: pd.DataFrame,
              transform: Literal["logit", "asin"] = "logit", robust: bool = True, trend: bool = False,
              ) -> dict[str, pd.DataFrame]:
    """propeller: a moderated t (contrast) or F (all levels) per cell type on transformed proportions.

    Parameters
    ----------
    counts
        The long table of :func:`cell_counts` (``sample``, ``cell_type``, ``n_cells``).
    design
        Formula over ``metadata`` columns (``"~ donor + condition"``); covariates enter the model.
    tests
        :attr:`degflow.plan.composition.CompositionPlan.tests`.
    metadata
        One row per replicate (index ``sample``), factors categorical, reference level first.
    transform, robust, trend
        speckle's options (robust empirical Bayes needs >= 3 cell types; with fewer it is turned off, as
        in speckle, and the log says so).

    Returns
    -------
    dict
        Test name -> DataFrame, smallest p-value first (ties in cell-type order): ``cell_type``,
        ``baseline_prop`` (share of all cells), ``prop_<level>`` (mean of the replicates' proportions) for
        each tested level, ``ratio`` (test / reference; contrasts only), ``statistic`` (moderated t or F),
        ``pvalue``, ``padj`` (BH over cell types).
    """
    from formulaic import model_matrix
    from pylimma import contrasts_fit, e_bayes, lm_fit

    wide = counts.pivot_table(index="sample", columns="cell_type", values="n_cells", aggfunc="sum", sort=False,
                              observed=True).fillna(0)
    wide = wide.reindex(index=[s for s in metadata.index if s in wide.index])
    empty = wide.index[wide.sum(axis=1) == 0]
    if len(empty):
        log.warning("composition: %d replicate(s) without cells left out: %s", len(empty), ", ".join(empty))
        wide = wide.drop(index=empty)
    meta = metadata.loc[wide.index].copy()
    for test in tests:
        for level in test.levels:
            n = int((meta[test.factor].astype(str) == level).sum())
            if n < 2:
                raise DegflowInputError(f"composition test '{test.name}': {test.factor} '{level}' keeps {n} "
                                        "replicate with cells; the test needs >= 2 per tested level")
    props, trans = transformed_proportions(wide, transform=transform)
    mm = model_matrix(design.split("~", 1)[1], meta)
    X = np.asarray(mm, dtype=float)
    if np.linalg.matrix_rank(X) < X.shape[1] or X.shape[0] <= X.shape[1]:
        raise DegflowInputError(f"composition: design '{design}' is not estimable on the {X.shape[0]} replicates "
                                "with cells (not of full rank, or no residual degrees of freedom)")
    n_types = trans.shape[1]
    if robust and n_types <= 2:
        log.warning("composition: %d cell types; robust empirical Bayes needs >= 3, so robust = false (as speckle)",
                    n_types)
        robust = False
    fit = lm_fit(trans.to_numpy().T, X)
    total = wide.sum(axis=0)
    baseline = (total / total.sum()).to_numpy()
    out: dict[str, pd.DataFrame] = {}
    for test in tests:
        rows = _level_rows(mm, meta, test.factor, test.levels)
        if test.kind == "t":
            cmat = (rows[0] - rows[1])[:, None]
        else:
            cmat = (rows[1:] - rows[0]).T
        eb = e_bayes(contrasts_fit(fit, contrasts=cmat), robust=robust, trend=trend)
        if test.kind == "t":
            stat, pval = np.asarray(eb["t"])[:, 0], np.asarray(eb["p_value"])[:, 0]
        else:
            stat, pval = np.asarray(eb["F"]), np.asarray(eb["F_p_value"])
        res = pd.DataFrame({"cell_type": list(wide.columns), "baseline_prop": baseline})
        group = meta[test.factor].astype(str).to_numpy()
        means = {lv: props.to_numpy()[group == lv].mean(axis=0) for lv in test.levels}
        for lv in (test.levels if test.kind == "F" else test.levels[::-1]):
            res[f"prop_{lv}"] = means[lv]
        if test.kind == "t":
            with np.errstate(divide="ignore", invalid="ignore"):
                res["ratio"] = means[test.levels[0]] / means[test.levels[1]]
        res["statistic"] = stat
        res["pvalue"] = pval
        res["padj"] = _bh(pval)
        order = np.lexsort((np.arange(len(res)), res["pvalue"].to_numpy()))
        out[test.name] = res.iloc[order].reset_index(drop=True)
        log.info("composition %s (%s): %d cell types, %d replicates, df prior %s, padj < 0.05: %s", test.name,
                 "moderated t" if test.kind == "t" else "moderated F", n_types, len(meta),
                 np.round(np.atleast_1d(eb["df_prior"]), 3).tolist()[:3],
                 ", ".join(res.loc[res["padj"] < 0.05, "cell_type"]) or "none")
    return out
