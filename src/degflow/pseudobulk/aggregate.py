"""Pseudobulk differential expression per cell type: raw counts summed per sample × cell type, DESeq2 on the sums.

Cell-level tests treat cells as replicates and inflate significance; the field's recommendation
(Squair et al. 2021, Crowell et al. 2020) is to sum the counts of each cell type in each sample and
test the sums with a bulk method, the samples being the replicates. degflow does this with its one
DE engine (:func:`degflow.de.fit.fit_deseq` / :func:`degflow.de.results.contrast_results`, R-faithful
DESeq2) and writes the bulk tables (:func:`degflow.de.tables.annotate_results`).

The steps, each one function a thin Snakemake script calls (the parse-time check of the config against the
sample sheet is :func:`degflow.plan.pseudobulk.plan_pseudobulk`):

=========================  ==========================================================================
:func:`aggregate`          cells → pseudo-samples: summed raw counts, ``n_cells``, ``passed``/``reason``
:func:`testable`           which cell types can be tested (>= ``min_replicates`` pseudo-samples per
                           contrast level, estimable design); the others get a reason
:func:`design_data`        one cell type's counts (genes × pseudo-samples), design table, gene names
:func:`size_factors`       ``poscounts`` (DESeq2 ``type="poscounts"``) for sparse sums, or None
:func:`proportions`        cells per cell type as a share of each sample
=========================  ==========================================================================

Figures: :func:`degflow.pl.pseudobulk.proportions_figure`, :func:`degflow.pl.pseudobulk.deg_count_heatmap`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from degflow.errors import DegflowInputError

__all__ = [
    "aggregate",
    "cell_type_folders",
    "design_data",
    "genes_of_interest_table",
    "proportions",
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

    from degflow.plan.design import design_variables

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
    """One cell type's counts and design table for :func:`degflow.de.fit.fit_deseq`.

    Only ``passed`` pseudo-samples are used; genes need >= ``min_count`` summed counts in >=
    ``min_samples`` of them (``min_count = 0`` keeps every gene; DESeq2 skips all-zero genes).

    Returns
    -------
    ``(counts, samples, gene_names)``: counts genes × pseudo-samples (int64; index ``var["gene_ids"]``
    when unique, else ``var_names``), the design variables per pseudo-sample (strings), and gene id →
    symbol (``var_names``).
    """
    from degflow.plan.design import design_variables

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
    """Size factors for :func:`degflow.de.fit.fit_deseq`: DESeq2 ``poscounts`` (numba kernel), or None for ``ratio``.

    ``poscounts`` (each gene's geometric mean over its positive counts) suits sparse pseudobulk,
    where many genes have a zero in some pseudo-sample and median-of-ratios would use few genes.
    ``ratio`` returns None: ``fit_deseq`` then computes median-of-ratios itself.
    """
    if kind == "ratio":
        return None
    if kind != "poscounts":
        raise DegflowInputError(f"size_factors must be poscounts or ratio, not {kind!r}")
    from degflow.kernels.sizefactors import size_factors_poscounts

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
