"""Pseudobulk planning: ``singlecell.pseudobulk`` against the single-cell sample sheet, before the DAG
(``workflow/rules/pseudobulk_common.smk``), and what the rules read.

=============================  ==========================================================================
:func:`plan_pseudobulk`        grouping, replicates, design, levels, contrasts, residual degrees of freedom
:func:`check_groupby`          the cell grouping will exist (shared with :mod:`degflow.plan.composition`)
:func:`replicate_design`       the design variables per replicate (shared with composition)
:func:`tested_cell_types`      the cell types the ``pb_aggregate`` checkpoint found testable
:func:`pseudobulk_targets`     the final outputs known before the checkpoint (``rule all``)
=============================  ==========================================================================
"""

from __future__ import annotations

import csv
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError
from degflow.plan.design import check_design, design_variables


@dataclass
class PseudobulkPlan:
    """What the pseudobulk rules need, after validation."""

    groupby: str
    sample_key: str
    contrasts: dict[str, list[str]]
    factors: list[str]
    metadata: pd.DataFrame


def check_groupby(groupby: str, *, key: str, annotated: bool, reference: bool, clusterings: Sequence[str]) -> None:
    """Check that the cell grouping ``groupby`` will exist in the processed data.

    Parameters
    ----------
    groupby
        ``cell_type`` (marker annotation), ``cell_type_reference`` (reference labels) or a ``leiden_<res>`` column.
    key
        Config section named in messages (``singlecell.pseudobulk``, ``singlecell.composition``).
    annotated, reference
        Whether marker annotation / reference labels are configured.
    clusterings
        The clustering columns the run makes.

    Raises
    ------
    DegflowInputError
        A grouping that the configured run will not make, with the setting that would make it.
    """
    if groupby == "cell_type" and not annotated:
        raise DegflowInputError(f"config key '{key}.groupby': cell_type needs singlecell.markers (the annotation); "
                                f"set markers, or group by a clustering ({', '.join(clusterings)})")
    if groupby == "cell_type_reference" and not reference:
        raise DegflowInputError(f"config key '{key}.groupby': cell_type_reference needs singlecell.reference (a "
                                "labelled reference); set it, or group by cell_type")
    if groupby not in ("cell_type", "cell_type_reference") and groupby not in clusterings:
        raise DegflowInputError(f"config key '{key}.groupby': '{groupby}' is neither cell_type, cell_type_reference "
                                f"nor one of the clusterings {', '.join(clusterings)}")


def replicate_design(table: pd.DataFrame, *, sample_key: str, design: str, key: str, source: str) -> pd.DataFrame:
    """The design variables of each replicate (one row per ``sample_key`` value) from the single-cell sample sheet.

    Parameters
    ----------
    table
        The sample sheet with ``sample`` as a column.
    sample_key
        The column naming the replicates (``sample`` or e.g. ``donor``).
    design
        The design formula; its variables must be sheet columns, constant within a replicate.
    key
        Config section named in messages (``singlecell.pseudobulk``, ``singlecell.composition``).
    source
        The sample sheet's path, named in messages.

    Raises
    ------
    DegflowInputError
        A design variable that is not a sheet column (the nearest is suggested), or one that takes several values
        within a replicate.
    """
    variables = design_variables(design, section=key)
    for v in variables:
        if v not in table.columns:
            near = difflib.get_close_matches(v, [str(c) for c in table.columns], n=1)
            hint = (f" (did you mean '{near[0]}'?)" if near
                    else f"; its columns are: {', '.join(map(str, table.columns))}")
            raise DegflowInputError(f"config key '{key}.design': variable '{v}' is not a column of the single-cell "
                                    f"sample sheet '{source}'{hint}; add it (e.g. condition: ctrl/stim per sample)")
        varies = table.groupby(sample_key)[v].nunique()
        if (varies > 1).any():
            raise DegflowInputError(f"config key '{key}.design': '{v}' takes several values within {sample_key} "
                                    f"'{varies.index[varies > 1][0]}'; a design variable must be constant per "
                                    "replicate")
    meta = table.groupby(sample_key, sort=False)[variables].first()
    meta.index = meta.index.astype(str)
    return meta


def plan_pseudobulk(pb_cfg: Mapping, sheet: pd.DataFrame, *, clusterings: Sequence[str], annotated: bool,
                    source: str = "sample sheet", reference: bool = False) -> PseudobulkPlan:
    """Check ``singlecell.pseudobulk`` against the single-cell sample sheet, before the DAG is built.

    Parameters
    ----------
    pb_cfg
        ``CFG["singlecell"]["pseudobulk"]`` (defaults filled in).
    sheet
        The validated single-cell sample sheet (:class:`degflow.plan.singlecell.SingleCellPlan` ``.sheet``).
    clusterings
        The ``leiden_<resolution>`` columns the run makes.
    annotated
        Whether ``singlecell.markers`` is set (``obs["cell_type"]`` exists).
    reference
        Whether ``singlecell.reference`` is set (``obs["cell_type_reference"]`` exists).

    Returns
    -------
    PseudobulkPlan
        ``metadata``: one row per replicate (``sample_key`` value) with the design variables,
        factor levels ordered reference-first.

    Raises
    ------
    DegflowInputError
        ``groupby`` that will not exist; ``sample_key`` not a sheet column; a design variable missing
        from the sheet or not constant within a replicate; one condition only; a contrast level
        absent; fewer than ``min_replicates`` replicates in a contrast level (no replicates); a
        design that is not of full rank or leaves no residual degrees of freedom.
    """
    from formulaic import model_matrix

    key = "singlecell.pseudobulk"
    groupby, sample_key = pb_cfg["groupby"], pb_cfg["sample_key"]
    check_groupby(groupby, key=key, annotated=annotated, reference=reference, clusterings=clusterings)
    columns = ["sample", *sheet.columns]
    if sample_key not in columns:
        raise DegflowInputError(f"config key '{key}.sample_key': '{sample_key}' is not 'sample' nor a column of "
                                f"the sample sheet '{source}'")
    meta = replicate_design(sheet.reset_index(), sample_key=sample_key, design=pb_cfg["design"], key=key,
                            source=source)
    _, _, levels = check_design(meta, pb_cfg["design"], pb_cfg["reference_levels"], pb_cfg["contrasts"],
                                sheet_path=source, section=key)
    min_rep = pb_cfg["min_replicates"]
    for name, (factor, test, ref) in pb_cfg["contrasts"].items():
        for level in (test, ref):
            n = int((levels[factor].astype(str) == level).sum())
            if n < min_rep:
                raise DegflowInputError(
                    f"config key '{key}.contrasts.{name}': {factor} '{level}' has {n} replicate "
                    f"({sample_key}) in '{source}'; pseudobulk needs >= {min_rep} per level (the {sample_key}s are the "
                    "replicates, cells are not): add samples or lower min_replicates (>= 2)")
    X = np.asarray(model_matrix(pb_cfg["design"].split("~", 1)[1], levels), dtype=float)
    if X.shape[0] <= X.shape[1]:
        raise DegflowInputError(f"config key '{key}.design': '{pb_cfg['design']}' has {X.shape[1]} coefficients but "
                                f"only {X.shape[0]} replicates: no residual degrees of freedom to estimate dispersion")
    factors = [v for v in meta.columns if isinstance(levels[v].dtype, pd.CategoricalDtype)]
    return PseudobulkPlan(groupby=groupby, sample_key=sample_key, contrasts=dict(pb_cfg["contrasts"]),
                          factors=factors, metadata=levels)


def tested_cell_types(path: str | Path) -> dict[str, str]:
    """The cell types with enough replicates, from ``cell_types.tsv`` of the ``pb_aggregate`` checkpoint.

    Parameters
    ----------
    path
        ``<results>/pseudobulk/cell_types.tsv`` (:func:`degflow.pseudobulk.aggregate.testable`).

    Returns
    -------
    dict[str, str]
        Folder -> cell type of the rows with ``tested`` True, in table order.
    """
    with open(path) as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {r["folder"]: r["cell_type"] for r in rows if r["tested"] == "True"}


def pseudobulk_targets(pb_dir: str, *, genes_of_interest: bool) -> list[str]:
    """The pseudobulk outputs known before the checkpoint (the per-cell-type ones follow from it).

    Parameters
    ----------
    pb_dir
        ``<results>/pseudobulk``.
    genes_of_interest
        Whether ``singlecell.genes_of_interest`` is set (its table and page are made).

    Returns
    -------
    list[str]
        The paths.
    """
    out = [f"{pb_dir}/{name}" for name in ("pseudobulk.h5ad", "cell_types.tsv", "skipped.tsv", "summary.tsv",
                                            "summary.html", "deg_counts.png", "proportions.tsv", "proportions.html",
                                            "proportions.png")]
    if genes_of_interest:
        out += [f"{pb_dir}/genes_of_interest.tsv", f"{pb_dir}/genes_of_interest.html"]
    return out
