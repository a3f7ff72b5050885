"""Composition planning: ``singlecell.composition`` against the single-cell sample sheet, before the DAG
(``workflow/rules/composition.smk``), and the tests it plans.

=============================  ==========================================================================
:func:`plan_composition`       grouping, replicates, design, contrasts, all-levels tests, degrees of freedom
:func:`metadata_records`       the replicate table as plain lists for a Snakemake ``params`` entry
:func:`metadata_frame`         ... and back
:func:`tests_to_records`       the tests as plain dicts for a ``params`` entry
:func:`tests_from_records`     ... and back
=============================  ==========================================================================

The test itself (propeller) is :mod:`degflow.singlecell.composition`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError
from degflow.plan.design import check_design
from degflow.plan.pseudobulk import check_groupby, replicate_design

#: The config section named in messages.
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
