"""Pseudobulk differential expression per cell type: raw counts summed per sample × cell type, DESeq2 on the sums.

Cell-level tests treat cells as replicates and inflate significance; the field's recommendation
(Squair et al. 2021, Crowell et al. 2020) is to sum the counts of each cell type in each sample and
test the sums with a bulk method, the samples being the replicates. degflow does this with its one
DE engine (:func:`degflow.de.deseq.fit_deseq` / :func:`degflow.de.deseq.contrast_results`, R-faithful
DESeq2) and writes the bulk tables (:func:`degflow.de.results.annotate_results`).

The steps, each one function a thin Snakemake script calls:

=========================  ==========================================================================
:func:`plan_pseudobulk`    parse-time check of the config against the sample sheet (design, levels,
                           replicates)
:func:`aggregate`          cells → pseudo-samples: summed raw counts, ``n_cells``, ``passed``/``reason``
:func:`testable`           which cell types can be tested (>= ``min_replicates`` pseudo-samples per
                           contrast level, estimable design); the others get a reason
:func:`design_data`        one cell type's counts (genes × pseudo-samples), design table, gene names
:func:`size_factors`       ``poscounts`` (DESeq2 ``type="poscounts"``) for sparse sums, or None
:func:`proportions`        cells per cell type as a share of each sample
=========================  ==========================================================================

Figures (:func:`deg_count_heatmap`, :func:`proportions_figure`) return a Figure; the caller saves it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure

from degflow.errors import DegflowInputError

__all__ = [
    "PseudobulkPlan",
    "aggregate",
    "cell_type_folders",
    "deg_count_heatmap",
    "design_data",
    "genes_of_interest_table",
    "plan_pseudobulk",
    "proportions",
    "proportions_figure",
    "size_factors",
    "testable",
]

log = logging.getLogger("degflow")

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_CELL_TYPE_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


# ----------------------------------------------------------------------------------------------
# names
# ----------------------------------------------------------------------------------------------


def cell_type_folders(names: Sequence[str]) -> dict[str, str]:
    """A filesystem-safe, unique folder name for each cell type (``"CD14+ Mono"`` -> ``"CD14_Mono"``).

    Characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_`` (runs collapsed,
    ends stripped); a name left empty becomes ``cell_type``; clashes get ``_2``, ``_3`` … in order.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = _SAFE.sub("_", str(name)).strip("_.-") or "cell_type"
        folder, k = base, 2
        while folder.lower() in used:
            folder, k = f"{base}_{k}", k + 1
        used.add(folder.lower())
        out[str(name)] = folder
    return out


# ----------------------------------------------------------------------------------------------
# parse time
# ----------------------------------------------------------------------------------------------


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
    import difflib

    from degflow.plan.config import design_variables

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
        The validated single-cell sample sheet (:class:`degflow.plan.config.SingleCellPlan` ``.sheet``).
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

    from degflow.plan.config import check_design

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


# ----------------------------------------------------------------------------------------------
# aggregation
# ----------------------------------------------------------------------------------------------


def _raw_counts(adata: ad.AnnData, layer: str | None) -> sp.csr_matrix:
    if layer is not None and layer not in adata.layers:
        raise DegflowInputError(
            f"pseudobulk needs raw counts in layers[{layer!r}], which this AnnData lacks (layers: "
            f"{', '.join(adata.layers) or 'none'}); degflow's single-cell run keeps them there: aggregate "
            "results/singlecell/adata.h5ad, or store the raw counts in that layer")
    X = adata.layers[layer] if layer is not None else adata.X
    X = sp.csr_matrix(X) if not sp.issparse(X) else X.tocsr()
    data = np.asarray(X.data)
    bad = ~np.isfinite(data) | (data < 0) | (data != np.round(data))
    if bad.any():
        where = f"layers[{layer!r}]" if layer is not None else "X"
        raise DegflowInputError(
            f"{where} holds {int(bad.sum())} non-integer or negative values (e.g. {float(data[bad][0]):.6g}): "
            "normalised data, not raw counts; pseudobulk sums raw UMI counts, never normalised values")
    return X


def _sample_metadata(obs: pd.DataFrame, sample_key: str, skip: Sequence[str]) -> pd.DataFrame:
    """obs columns that are constant within every sample (condition, donor, …), one row per sample."""
    cols = []
    for c in obs.columns:
        if c in skip or c == sample_key or pd.api.types.is_numeric_dtype(obs[c]) or pd.api.types.is_bool_dtype(obs[c]):
            continue
        if (obs.groupby(sample_key, observed=True)[c].nunique(dropna=False) <= 1).all():
            cols.append(c)
    return obs.groupby(sample_key, observed=True)[cols].first().astype(str)


def aggregate(
    adata: ad.AnnData,
    *,
    groupby: str = "cell_type",
    sample_key: str = "sample",
    layer: str | None = "counts",
    min_cells: int = 10,
    min_counts: int = 1000,
) -> ad.AnnData:
    """Sum the raw counts of each cell type in each sample (one pseudo-sample per non-empty pair).

    Parameters
    ----------
    groupby
        ``obs`` column of the cell types (or clusters).
    sample_key
        ``obs`` column of the replicates.
    layer
        Layer holding the raw counts (``None``: ``X``); they must be non-negative integers.
    min_cells, min_counts
        A pseudo-sample with fewer cells, or fewer summed counts, is kept in the result but marked
        ``passed = False`` (with the ``reason``) and left out of the tests.

    Returns
    -------
    AnnData, pseudo-samples × genes (the input's genes and ``var``), with

    ``X``
        summed counts, ``int64`` CSR;
    ``obs_names``
        ``"<sample>|<cell type>"``, samples in category order, cell types in category order;
    ``obs[sample_key]``, ``obs[groupby]``
        categorical, the input's categories;
    ``obs[<column>]``
        every ``obs`` column constant within each sample (``condition``, ``donor``, …);
    ``obs["n_cells"]`` : int, ``obs["total_counts"]`` : int
        cells summed and their total count;
    ``obs["passed"]`` : bool, ``obs["reason"]`` : str
        whether it meets ``min_cells`` and ``min_counts`` (else why not);
    ``uns["degflow"]["pseudobulk"]``
        the parameters.

    Raises
    ------
    DegflowInputError
        Missing ``groupby``/``sample_key`` column; counts layer missing; non-integer or negative
        values (normalised data).
    """
    for col, what in ((groupby, "groupby"), (sample_key, "sample_key")):
        if col not in adata.obs.columns:
            raise DegflowInputError(f"pseudobulk {what} {col!r} is not an obs column (columns: "
                                    f"{', '.join(map(str, adata.obs.columns))})")
    X = _raw_counts(adata, layer)
    samples = adata.obs[sample_key].astype("category")
    types = adata.obs[groupby].astype("category")
    if samples.isna().any() or types.isna().any():
        raise DegflowInputError(f"pseudobulk: some cells have no {sample_key} or {groupby}; label every cell")
    s_codes, t_codes = samples.cat.codes.to_numpy(), types.cat.codes.to_numpy()
    n_t = len(types.cat.categories)
    pair = s_codes.astype(np.int64) * n_t + t_codes
    present, inverse = np.unique(pair, return_inverse=True)
    indicator = sp.csr_matrix((np.ones(adata.n_obs), (inverse, np.arange(adata.n_obs))),
                              shape=(len(present), adata.n_obs))
    summed = (indicator @ X.astype(np.float64)).tocsr()
    summed.data = np.rint(summed.data)
    summed = summed.astype(np.int64)
    s_of, t_of = present // n_t, present % n_t
    sample_names = samples.cat.categories[s_of].astype(str)
    type_names = types.cat.categories[t_of].astype(str)
    n_cells = np.bincount(inverse, minlength=len(present))
    totals = np.asarray(summed.sum(axis=1)).ravel()
    obs = pd.DataFrame({
        sample_key: pd.Categorical(sample_names, categories=samples.cat.categories.astype(str)),
        groupby: pd.Categorical(type_names, categories=types.cat.categories.astype(str)),
    }, index=pd.Index([f"{s}|{t}" for s, t in zip(sample_names, type_names, strict=False)], name="pseudo_sample"))
    meta = _sample_metadata(adata.obs, sample_key, skip=[groupby])
    meta.index = meta.index.astype(str)
    for c in meta.columns:
        obs[c] = pd.Categorical(meta[c].reindex(sample_names).to_numpy(),
                                categories=list(dict.fromkeys(meta[c].astype(str))))
    obs["n_cells"] = n_cells.astype(np.int64)
    obs["total_counts"] = totals.astype(np.int64)
    reason = np.where(n_cells < min_cells, [f"{n} cells < min_cells {min_cells}" for n in n_cells], "")
    reason = np.where((reason == "") & (totals < min_counts),
                      [f"{t} counts < min_counts {min_counts}" for t in totals], reason)
    obs["passed"] = reason == ""
    obs["reason"] = reason.astype(str)
    out = ad.AnnData(summed, obs=obs, var=adata.var.copy())
    out.uns["degflow"] = {"pseudobulk": {"groupby": groupby, "sample_key": sample_key, "layer": layer or "X",
                                         "min_cells": int(min_cells), "min_counts": int(min_counts),
                                         "n_cells": int(adata.n_obs)}}
    log.info("pseudobulk: %d cells -> %d pseudo-samples (%d samples x %d %s), %d pass min_cells=%d, min_counts=%d",
             adata.n_obs, out.n_obs, samples.nunique(), types.nunique(), groupby, int(out.obs["passed"].sum()),
             min_cells, min_counts)
    return out


# ----------------------------------------------------------------------------------------------
# which cell types can be tested
# ----------------------------------------------------------------------------------------------


def testable(
    pb: ad.AnnData,
    *,
    design: str,
    contrasts: Mapping[str, Sequence[str]],
    groupby: str = "cell_type",
    min_replicates: int = 2,
) -> pd.DataFrame:
    """Decide, per cell type, whether its pseudo-samples support the design and every contrast.

    A cell type is tested when, among its ``passed`` pseudo-samples, every level of every contrast
    has at least ``min_replicates`` pseudo-samples, and the design (restricted to the levels present)
    is of full rank with residual degrees of freedom. Otherwise the reason is given.

    Returns
    -------
    One row per cell type (category order): ``cell_type``, ``folder`` (:func:`cell_type_folders`),
    ``n_cells``, ``n_pseudo_samples`` (passed), ``n_left_out`` (failed min_cells/min_counts),
    ``replicates`` (e.g. ``condition=ctrl: 8, condition=stim: 8``), ``tested`` (bool), ``reason``.
    """
    from formulaic import model_matrix

    from degflow.plan.config import design_variables

    if not 2 <= min_replicates:
        raise DegflowInputError(f"min_replicates must be >= 2, got {min_replicates}")
    variables = design_variables(design, section="singlecell.pseudobulk")
    missing = [v for v in variables if v not in pb.obs.columns]
    if missing:
        raise DegflowInputError(f"pseudobulk: design variable(s) {missing} are not obs columns of the pseudo-samples "
                                "(they must be constant within each sample)")
    cats = [str(c) for c in pb.obs[groupby].cat.categories]
    folders = cell_type_folders(cats)
    rows = []
    for ct in cats:
        in_ct = (pb.obs[groupby].astype(str) == ct).to_numpy()
        sub = pb.obs.loc[in_ct & pb.obs["passed"].to_numpy()]
        counts = {}
        for factor, test, ref in contrasts.values():
            for level in (ref, test):
                counts[f"{factor}={level}"] = int((sub[factor].astype(str) == level).sum())
        reason = ""
        few = {k: n for k, n in counts.items() if n < min_replicates}
        if few:
            k, n = next(iter(few.items()))
            reason = (f"{k} has {n} pseudo-sample{'s' if n != 1 else ''} with >= min_cells cells and >= min_counts "
                      f"counts; needs >= {min_replicates}")
        else:
            meta = sub[variables].astype(str).astype("category")
            X = np.asarray(model_matrix(design.split("~", 1)[1], meta), dtype=float)
            if np.linalg.matrix_rank(X) < X.shape[1]:
                reason = f"the design '{design}' is not of full rank for its {len(sub)} pseudo-samples"
            elif X.shape[0] <= X.shape[1]:
                reason = (f"the design '{design}' has {X.shape[1]} coefficients for {len(sub)} pseudo-samples: "
                          "no residual degrees of freedom")
        rows.append({"cell_type": ct, "folder": folders[ct], "n_cells": int(pb.obs.loc[in_ct, "n_cells"].sum()),
                     "n_pseudo_samples": len(sub), "n_left_out": int(in_ct.sum()) - len(sub),
                     "replicates": ", ".join(f"{k}: {n}" for k, n in counts.items()), "tested": reason == "",
                     "reason": reason})
        if reason:
            log.warning("pseudobulk: %s not tested: %s", ct, reason)
    return pd.DataFrame(rows, columns=["cell_type", "folder", "n_cells", "n_pseudo_samples", "n_left_out",
                                       "replicates", "tested", "reason"])


# ----------------------------------------------------------------------------------------------
# one cell type's DE input
# ----------------------------------------------------------------------------------------------


def design_data(
    pb: ad.AnnData,
    cell_type: str,
    *,
    design: str,
    groupby: str = "cell_type",
    min_count: int = 10,
    min_samples: int = 2,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """One cell type's counts and design table for :func:`degflow.de.deseq.fit_deseq`.

    Only ``passed`` pseudo-samples are used; genes need >= ``min_count`` summed counts in >=
    ``min_samples`` of them (``min_count = 0`` keeps every gene; DESeq2 skips all-zero genes).

    Returns
    -------
    ``(counts, samples, gene_names)``: counts genes × pseudo-samples (int64; index ``var["gene_ids"]``
    when unique, else ``var_names``), the design variables per pseudo-sample (strings), and gene id →
    symbol (``var_names``).
    """
    from degflow.plan.config import design_variables

    if cell_type not in set(pb.obs[groupby].astype(str)):
        raise DegflowInputError(f"pseudobulk: cell type {cell_type!r} has no pseudo-sample")
    keep = ((pb.obs[groupby].astype(str) == cell_type) & pb.obs["passed"]).to_numpy()
    sub = pb[keep]
    X = sub.X.toarray() if sp.issparse(sub.X) else np.asarray(sub.X)
    X = X.astype(np.int64)
    ids = pb.var["gene_ids"].astype(str) if "gene_ids" in pb.var.columns else pd.Series(pb.var_names)
    ids = pd.Index(ids.to_numpy() if ids.is_unique else pb.var_names.to_numpy(), name="gene_id")
    genes = (X >= max(min_count, 1)).sum(axis=0) >= min_samples if min_count > 0 else np.ones(X.shape[1], bool)
    counts = pd.DataFrame(X[:, genes].T, index=ids[genes], columns=sub.obs_names)
    names = pd.Series(pb.var_names[genes].to_numpy(), index=ids[genes])
    variables = design_variables(design, section="singlecell.pseudobulk")
    samples = sub.obs[variables].astype(str)
    log.info("pseudobulk %s: %d pseudo-samples, %d of %d genes with >= %d counts in >= %d of them", cell_type,
             counts.shape[1], counts.shape[0], X.shape[1], min_count, min_samples)
    return counts, samples, names


def size_factors(counts: pd.DataFrame, *, kind: Literal["poscounts", "ratio"] = "poscounts",
                 n_threads: int | None = None) -> np.ndarray | None:
    """Size factors for :func:`degflow.de.deseq.fit_deseq`: DESeq2 ``poscounts`` (numba kernel), or None for ``ratio``.

    ``poscounts`` (each gene's geometric mean over its positive counts) suits sparse pseudobulk,
    where many genes have a zero in some pseudo-sample and median-of-ratios would use few genes.
    ``ratio`` returns None: ``fit_deseq`` then computes median-of-ratios itself.
    """
    if kind == "ratio":
        return None
    if kind != "poscounts":
        raise DegflowInputError(f"size_factors must be poscounts or ratio, not {kind!r}")
    from degflow.kernels.sparse import size_factors_poscounts

    return size_factors_poscounts(counts.to_numpy().T, flavor="deseq2", n_threads=n_threads)


# ----------------------------------------------------------------------------------------------
# cell-type proportions
# ----------------------------------------------------------------------------------------------


def proportions(adata_or_obs: ad.AnnData | pd.DataFrame, *, groupby: str = "cell_type",
                sample_key: str = "sample") -> pd.DataFrame:
    """Cells of each cell type as a share of each sample's cells.

    Returns
    -------
    A long DataFrame, samples in category order then cell types in category order: ``sample_key``,
    every obs column constant within samples (``condition``, ``donor``, …), ``groupby``, ``n_cells``,
    ``fraction`` (of the sample's cells; each sample sums to 1).
    """
    obs = adata_or_obs.obs if isinstance(adata_or_obs, ad.AnnData) else adata_or_obs
    for col in (groupby, sample_key):
        if col not in obs.columns:
            raise DegflowInputError(f"proportions: {col!r} is not an obs column")
    samples, types = obs[sample_key].astype("category"), obs[groupby].astype("category")
    tab = pd.crosstab(samples, types, dropna=False).reindex(index=samples.cat.categories, columns=types.cat.categories,
                                                            fill_value=0)
    tab = tab.loc[tab.sum(axis=1) > 0]
    long = tab.stack().rename("n_cells").reset_index()
    long.columns = [sample_key, groupby, "n_cells"]
    long["fraction"] = long["n_cells"] / long.groupby(sample_key, observed=True)["n_cells"].transform("sum")
    meta = _sample_metadata(obs, sample_key, skip=[groupby])
    meta.index = meta.index.astype(str)
    long[sample_key] = long[sample_key].astype(str)
    long = long.join(meta, on=sample_key)
    cols = [sample_key, *meta.columns, groupby, "n_cells", "fraction"]
    return long[cols].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------


def _type_colors(n: int) -> list:
    import matplotlib as mpl

    from degflow.pl.bulk import PALETTE

    if n <= len(PALETTE):
        return list(PALETTE[:n])
    cmap = mpl.colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]


def proportions_figure(props: pd.DataFrame, *, groupby: str = "cell_type", sample_key: str = "sample",
                       by: str | None = "condition", title: str | None = None) -> Figure:
    """Stacked bars: the cell-type composition of each sample, samples grouped by ``by`` (if a column).

    ``props`` is the table of :func:`proportions`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from degflow.pl.bulk import style

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
        fig = Figure(figsize=(max(4.5, 0.45 * len(order) + 3.0), 4.6), layout="constrained")
        FigureCanvasAgg(fig)
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
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from degflow.pl.bulk import style

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
        fig = Figure(figsize=(2.2 + 1.3 * len(cols), 1.4 + 0.42 * len(types)), layout="constrained")
        FigureCanvasAgg(fig)
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


def genes_of_interest_table(results: Mapping[tuple[str, str], pd.DataFrame], genes: Sequence[str]) -> pd.DataFrame:
    """The pseudobulk results of a few genes in every tested cell type and contrast, in one table.

    Parameters
    ----------
    results
        ``{(cell type, contrast): results table}`` (``results.tsv``: ``gene_id``, ``gene_name``, ``baseMean``,
        ``log2FoldChange``, ``lfcSE``, ``stat``, ``pvalue``, ``padj``, ``regulation``), in output order.
    genes
        Gene symbols (matched to ``gene_id``, then ``gene_name``, as in the single-cell ``var_names``).

    Returns
    -------
    One row per gene x cell type x contrast (genes in request order): ``gene``, ``cell_type``, ``contrast``,
    ``tested`` (False when the gene was filtered out of that cell type's test: the values are then NA) and the
    results columns.
    """
    cols = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj", "regulation"]
    rows = []
    for gene in genes:
        for (cell_type, contrast), table in results.items():
            hit = table[table["gene_id"].astype(str) == gene]
            if hit.empty and "gene_name" in table.columns:
                hit = table[table["gene_name"].astype(str) == gene]
            row = {"gene": gene, "cell_type": cell_type, "contrast": contrast, "tested": not hit.empty}
            row.update({c: (hit[c].iloc[0] if not hit.empty and c in hit.columns else np.nan) for c in cols})
            rows.append(row)
    return pd.DataFrame(rows, columns=["gene", "cell_type", "contrast", "tested", *cols])
