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

=============================  ==========================================================================
:func:`plan_composition`       parse-time check of ``singlecell.composition`` against the sample sheet
:func:`cell_counts`            cells per replicate × cell type (long table with the design columns)
:func:`transformed_proportions`  speckle's ``getTransformedProps``: proportions and their transform
:func:`propeller`              every contrast (moderated t) and all-levels test (moderated F)
=============================  ==========================================================================

The figure (per-replicate proportions per cell type and level, with the FDR) is drawn by
:func:`degflow.pl.singlecell.composition_figure`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError

__all__ = [
    "CompositionPlan",
    "CompositionTest",
    "cell_counts",
    "metadata_frame",
    "metadata_records",
    "plan_composition",
    "propeller",
    "tests_to_records",
    "tests_from_records",
    "transformed_proportions",
]

log = logging.getLogger("degflow")

KEY = "singlecell.composition"


@dataclass(frozen=True)
class CompositionTest:
    """One test: a contrast ``[factor, test, ref]`` (moderated t) or all levels of a factor (moderated F)."""

    name: str
    factor: str
    levels: tuple[str, ...]
    kind: Literal["t", "F"]


@dataclass
class CompositionPlan:
    """What the composition rule needs, after validation."""

    groupby: str
    sample_key: str
    design: str
    tests: list[CompositionTest]
    metadata: pd.DataFrame = field(repr=False)
    transform: str = "logit"
    robust: bool = True

    @property
    def names(self) -> list[str]:
        """Output folder of each test, in order (contrasts in config order, then the all-levels tests)."""
        return [t.name for t in self.tests]


# ----------------------------------------------------------------------------------------------
# parse time
# ----------------------------------------------------------------------------------------------


def metadata_records(meta: pd.DataFrame) -> dict:
    """Plain lists for a Snakemake ``params`` entry: replicate names, each column's values, factor levels."""
    return {"index": [str(i) for i in meta.index],
            "columns": {str(c): [v if isinstance(v, float | int) and not isinstance(v, bool) else str(v)
                                 for v in meta[c].tolist()] for c in meta.columns},
            "levels": {str(c): [str(lv) for lv in meta[c].cat.categories] for c in meta.columns
                       if isinstance(meta[c].dtype, pd.CategoricalDtype)}}


def metadata_frame(records: Mapping) -> pd.DataFrame:
    """The replicate table back from :func:`metadata_records` (factors categorical, reference level first)."""
    meta = pd.DataFrame(dict(records["columns"]), index=pd.Index(list(records["index"]), name=None))
    for col, levels in records["levels"].items():
        meta[col] = pd.Categorical(meta[col].astype(str), categories=list(levels))
    return meta


def tests_to_records(tests: Sequence[CompositionTest]) -> list[dict]:
    """Plain dicts of :class:`CompositionTest` for a Snakemake ``params`` entry (:func:`tests_from_records`)."""
    return [{"name": t.name, "factor": t.factor, "levels": list(t.levels), "kind": t.kind} for t in tests]


def tests_from_records(records: Sequence[Mapping]) -> list[CompositionTest]:
    """:class:`CompositionTest` objects back from :func:`tests_to_records`."""
    return [CompositionTest(name=r["name"], factor=r["factor"], levels=tuple(r["levels"]), kind=r["kind"])
            for r in records]


def plan_composition(comp_cfg: Mapping, sheet: pd.DataFrame, *, pseudobulk: Mapping | None = None,
                     clusterings: Sequence[str], annotated: bool, source: str = "sample sheet",
                     reference: bool = False) -> CompositionPlan:
    """Check ``singlecell.composition`` against the single-cell sample sheet, before the DAG is built.

    ``groupby``, ``sample_key``, ``design``, ``reference_levels`` and ``contrasts`` left ``null`` are taken from
    ``singlecell.pseudobulk`` (``groupby`` falls back to ``cell_type``, ``sample_key`` to ``sample``).

    Parameters
    ----------
    comp_cfg
        ``CFG["singlecell"]["composition"]`` (defaults filled in).
    sheet
        The validated single-cell sample sheet (indexed by sample).
    pseudobulk
        ``CFG["singlecell"]["pseudobulk"]`` when that section is present.
    clusterings
        The ``leiden_<resolution>`` columns the run makes.
    annotated
        Whether ``obs["cell_type"]`` will exist (``singlecell.markers`` set).
    reference
        Whether ``singlecell.reference`` is set (``obs["cell_type_reference"]`` exists).

    Returns
    -------
    CompositionPlan
        ``metadata``: one row per replicate with the design variables (factor levels reference-first);
        ``tests``: every contrast, then one all-levels test per contrast factor with >= 3 levels.

    Raises
    ------
    DegflowInputError
        ``groupby`` that will not exist; ``sample_key`` not a sheet column; no design or contrasts (here or in
        the pseudobulk section); a design variable missing from the sheet or not constant within a replicate;
        a contrast level absent; a tested level with fewer than 2 replicates; no residual degrees of freedom.
    """
    from formulaic import model_matrix

    from degflow.plan.config import check_design
    from degflow.pseudobulk.aggregate import check_groupby, replicate_design

    pb = dict(pseudobulk or {})
    groupby = comp_cfg.get("groupby") or pb.get("groupby") or "cell_type"
    sample_key = comp_cfg.get("sample_key") or pb.get("sample_key") or "sample"
    design = comp_cfg.get("design") or pb.get("design")
    contrasts = comp_cfg.get("contrasts") or pb.get("contrasts")
    refs = comp_cfg.get("reference_levels")
    refs = dict(refs if refs is not None else pb.get("reference_levels") or {})
    for key, value in (("design", design), ("contrasts", contrasts)):
        if not value:
            raise DegflowInputError(f"config key '{KEY}.{key}' is not set and there is no singlecell.pseudobulk "
                                    f"section to take it from; set it (e.g. design: \"~ condition\", contrasts: "
                                    "{stim_vs_ctrl: [condition, stim, ctrl]})")
    check_groupby(groupby, key=KEY, annotated=annotated, reference=reference, clusterings=clusterings)
    table = sheet.reset_index()
    if sample_key not in table.columns:
        raise DegflowInputError(f"config key '{KEY}.sample_key': '{sample_key}' is not 'sample' nor a column of "
                                f"the sample sheet '{source}'")
    meta = replicate_design(table, sample_key=sample_key, design=design, key=KEY, source=source)
    _, _, levels = check_design(meta, design, refs, contrasts, sheet_path=source, section=KEY)

    tests = [CompositionTest(name=str(n), factor=f, levels=(t, r), kind="t") for n, (f, t, r) in contrasts.items()]
    if comp_cfg.get("all_levels", True):
        for factor in dict.fromkeys(f for f, _, _ in contrasts.values()):
            cats = tuple(levels[factor].cat.categories)
            if len(cats) >= 3:
                name = f"{factor}_all_levels"
                if name in contrasts:
                    raise DegflowInputError(f"config key '{KEY}.contrasts.{name}': the name is taken by the "
                                            f"all-levels test of '{factor}'; rename the contrast")
                tests.append(CompositionTest(name=name, factor=factor, levels=cats, kind="F"))
    for test in tests:
        for level in test.levels:
            n = int((levels[test.factor].astype(str) == level).sum())
            if n < 2:
                where = (f"contrasts.{test.name}" if test.kind == "t" else "all_levels")
                raise DegflowInputError(
                    f"config key '{KEY}.{where}': {test.factor} '{level}' has {n} replicate ({sample_key}) in "
                    f"'{source}'; the composition test needs >= 2 per tested level (the {sample_key}s are the "
                    "replicates, cells are not): add samples" + (" or set all_levels: false" if test.kind == "F"
                                                                 else ""))
    X = np.asarray(model_matrix(design.split("~", 1)[1], levels), dtype=float)
    if X.shape[0] <= X.shape[1]:
        raise DegflowInputError(f"config key '{KEY}.design': '{design}' has {X.shape[1]} coefficients but only "
                                f"{X.shape[0]} replicates ({sample_key}): no residual degrees of freedom for the "
                                "linear model; use fewer covariates or add samples")
    return CompositionPlan(groupby=groupby, sample_key=sample_key, design=design, tests=tests, metadata=levels,
                           transform=comp_cfg.get("transform", "logit"), robust=bool(comp_cfg.get("robust", True)))


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
        (:attr:`CompositionPlan.metadata`).

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
        :attr:`CompositionPlan.tests`.
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
