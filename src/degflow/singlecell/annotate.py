"""Single-cell markers and cell types: marker genes per cluster, annotation from a marker YAML, label transfer.

========================  ===========================================================================
:func:`markers`           Wilcoxon ``rank_genes_groups`` per cluster → a long DataFrame
:func:`annotate`          cluster → cell type from a marker-gene YAML (:func:`load_markers`), by score
:func:`transfer_labels`   cell → label of a labelled reference (scanpy's ``tl.ingest`` mapping, offline);
                          :func:`add_reference_labels` puts its table back into ``obs``
:func:`cluster_sizes`     cells per cluster (and per sample) for every clustering
========================  ===========================================================================

Every step records its parameters in ``adata.uns["degflow"][<step>]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from degflow.errors import DegflowInputError
from degflow.singlecell.common import raw_counts, record, timed
from degflow.singlecell.process import normalize

__all__ = [
    "add_reference_labels",
    "annotate",
    "cluster_sizes",
    "load_markers",
    "markers",
    "transfer_labels",
]

log = logging.getLogger("degflow")


def markers(
    adata: ad.AnnData,
    groupby: str,
    *,
    method: Literal["wilcoxon", "t-test", "t-test_overestim_var", "logreg"] = "wilcoxon",
    n_genes: int | None = 100,
    key_added: str | None = None,
) -> pd.DataFrame:
    """Marker genes of every group (cluster) against the rest: :func:`scanpy.tl.rank_genes_groups`.

    Runs on log-normalised ``X`` (all genes), with Benjamini–Hochberg adjustment.

    Returns
    -------
    A long DataFrame, groups in category order, genes by rank: ``group``, ``rank`` (1 = best),
    ``gene``, ``score``, ``logfoldchange``, ``pval``, ``pval_adj``, ``pct_in_group``,
    ``pct_out_group`` (fractions of cells with a non-zero count), at most ``n_genes`` per group
    (``None``: all). Also writes ``uns[key_added or "rank_genes_groups_<groupby>"]`` and
    ``uns["degflow"]["markers_<groupby>"]``.

    Groups with fewer than 2 cells (e.g. a reference label given to one query cell) cannot be tested: they
    are left out (logged, and listed in ``uns["degflow"]["markers_<groupby>"]["left_out"]``); their cells
    stay in the "rest" of the other groups.

    Raises
    ------
    DegflowInputError
        ``groupby`` missing; X not log-normalised; a single group; no group with 2 or more cells.
    """
    import scanpy as sc

    if groupby not in adata.obs.columns:
        raise DegflowInputError(f"markers: obs column {groupby!r} not found (columns: {', '.join(adata.obs.columns)})")
    if "log1p" not in adata.uns:
        raise DegflowInputError("markers need log-normalised X: run normalize (or process) first")
    key = key_added or f"rank_genes_groups_{groupby}"
    groups = adata.obs[groupby].astype("category")
    if groups.nunique() < 2:
        raise DegflowInputError(f"markers: {groupby!r} has a single group; markers need at least two clusters")
    if not isinstance(adata.obs[groupby].dtype, pd.CategoricalDtype):
        adata.obs[groupby] = groups
    sizes = groups.value_counts()
    kept = [c for c in groups.cat.categories if sizes[c] >= 2]
    small = [c for c in groups.cat.categories if sizes[c] < 2]
    if not kept:
        raise DegflowInputError(f"markers: no group of {groupby!r} has 2 or more cells; markers cannot be tested")
    if small:  # scanpy's rank_genes_groups raises on a group of one cell
        log.warning("markers: %d group(s) of %s left out, fewer than 2 cells (cannot be tested): %s", len(small),
                    groupby, ", ".join(f"{c} ({sizes[c]} cell{'' if sizes[c] == 1 else 's'})" for c in small))
    with timed(f"markers ({method}) by {groupby}"):
        sc.tl.rank_genes_groups(adata, groupby, groups=kept if small else "all", method=method, use_raw=False,
                                pts=True, key_added=key, n_genes=n_genes, corr_method="benjamini-hochberg")
    df = sc.get.rank_genes_groups_df(adata, group=None, key=key)
    if "group" not in df.columns:  # one group only: scanpy drops the column
        df.insert(0, "group", kept[0])
    df = df.rename(columns={"names": "gene", "scores": "score", "logfoldchanges": "logfoldchange",
                            "pvals": "pval", "pvals_adj": "pval_adj", "pct_nz_group": "pct_in_group",
                            "pct_nz_reference": "pct_out_group"})
    df["group"] = df["group"].astype(str)
    df.insert(1, "rank", df.groupby("group", sort=False).cumcount() + 1)
    cols = ["group", "rank", "gene", "score", "logfoldchange", "pval", "pval_adj", "pct_in_group", "pct_out_group"]
    df = df[[c for c in cols if c in df.columns]].reset_index(drop=True)
    record(adata, f"markers_{groupby}", {"method": method, "n_genes": n_genes, "key": key,
                                         "left_out": [str(c) for c in small]})
    return df


def load_markers(path: str | Path) -> dict[str, list[str]]:
    """Read a marker-gene YAML: ``{cell type: [gene, …]}`` (optionally under a top-level ``cell_types:``).

    Raises
    ------
    DegflowInputError
        Missing file, not a mapping, a cell type without a list of gene names.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DegflowInputError(f"{path}: marker file not found; check singlecell.markers in the config")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DegflowInputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(data, Mapping) and "cell_types" in data:
        data = data["cell_types"]
    if not isinstance(data, Mapping) or not data:
        raise DegflowInputError(f"{path}: expected a mapping 'cell type: [gene, gene, ...]'")
    out: dict[str, list[str]] = {}
    for name, genes in data.items():
        if isinstance(genes, str):
            genes = [genes]
        if not isinstance(genes, list) or not genes or not all(isinstance(g, str) and g for g in genes):
            raise DegflowInputError(f"{path}: cell type {name!r} must list gene names, e.g. '{name}: [CD3E, CD4]'")
        out[str(name)] = list(genes)
    return out


def _type_scores(means: np.ndarray, groups: Sequence[str], genes: Sequence[str],
                 present: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Mean z-score (across the given groups) of each type's marker genes: groups x types."""
    sd = means.std(axis=0, ddof=0)
    z = np.divide(means - means.mean(axis=0), sd, out=np.zeros_like(means), where=sd > 0)
    z = pd.DataFrame(z, index=pd.Index(list(groups)), columns=list(genes))
    return pd.DataFrame({t: z[list(gs)].mean(axis=1) if gs else np.nan for t, gs in present.items()})


def annotate(
    adata: ad.AnnData,
    marker_genes: Mapping[str, Sequence[str]],
    groupby: str,
    *,
    key_added: str = "cell_type",
    min_score: float = 0.0,
    min_margin: float = 0.5,
    unassigned: str = "Unassigned",
) -> pd.DataFrame:
    """Name each cluster after the cell type whose marker genes it expresses most, by score.

    For every cluster the mean log-normalised expression of each marker gene is standardised
    across clusters (z-score per gene); a cell type's score in a cluster is the mean z-score of its
    marker genes found in the data. A cluster gets the best-scoring type, or ``unassigned`` when
    no score exceeds ``min_score``. Several clusters may get the same type.

    **Mixed clusters.** A cluster whose best and second-best scores differ by less than
    ``min_margin`` is flagged ``mixed``: its markers do not tell the two types apart (it may hold
    both, or be one the marker file cannot separate). When the second type of a mixed cluster was
    given to no cluster, the clusters named after its best type are compared *among themselves*
    on the two types' markers (z-scores over those clusters only) and each takes the better of the
    two; this is the comparison a person makes on a dot plot. Scored against every cluster, a
    marker shared with another lineage (S100A4 is highest in monocytes; IL7R is in both naive and
    memory CD4 T cells) hides the difference between two subtypes of one lineage (CCR7 vs S100A4);
    among the candidate clusters it shows. Clusters renamed so are flagged ``refined``.

    Returns
    -------
    The score table (clusters × cell types), then ``cell_type`` (the name given), ``best_type``,
    ``second_type``, ``margin`` (best minus second score), ``mixed`` and ``refined`` (bool). With a single cell
    type in ``marker_genes`` there is no runner-up: ``second_type`` is ``""``, ``margin`` ``inf``, nothing mixed.
    Writes ``obs[key_added]`` (categorical, cell types in ``marker_genes`` order),
    ``uns["degflow"]["annotate"]`` (``groupby``, ``scores``, ``assignment``, ``mixed``,
    ``missing_genes``). Mixed clusters are logged as a warning.

    Raises
    ------
    DegflowInputError
        ``groupby`` missing; none of the marker genes in the data.
    """
    if groupby not in adata.obs.columns:
        raise DegflowInputError(f"annotate: obs column {groupby!r} not found; run leiden first")
    present = {t: [g for g in genes if g in adata.var_names] for t, genes in marker_genes.items()}
    missing = sorted({g for genes in marker_genes.values() for g in genes if g not in adata.var_names})
    if missing:
        log.warning("annotate: %d marker genes not in the data: %s", len(missing), ", ".join(missing[:20]))
    if not any(present.values()):
        raise DegflowInputError("annotate: none of the marker genes is in the data (are var_names gene symbols "
                                "of the same species?)")
    genes = sorted({g for gs in present.values() for g in gs})
    groups = adata.obs[groupby].astype("category")
    cats = [str(c) for c in groups.cat.categories]
    X = adata[:, genes].X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    codes = groups.cat.codes.to_numpy()
    means = np.vstack([X[codes == i].mean(axis=0) for i in range(len(cats))])  # clusters × genes
    scores = _type_scores(means, cats, genes, present).rename_axis(groupby)
    values = scores.to_numpy(dtype=float)
    order_idx = np.argsort(-np.nan_to_num(values, nan=-np.inf), axis=1, kind="stable")
    types = np.asarray(scores.columns)
    best = pd.Series(types[order_idx[:, 0]], index=scores.index)
    has_second = scores.shape[1] > 1
    second = pd.Series(types[order_idx[:, 1]] if has_second else [""] * len(cats), index=scores.index)
    rows = np.arange(len(cats))
    # one cell type only: no runner-up, so nothing to confuse it with (margin +inf, never mixed)
    margin = pd.Series(values[rows, order_idx[:, 0]] - values[rows, order_idx[:, 1]] if has_second
                       else np.full(len(cats), np.inf), index=scores.index)
    mixed = margin < min_margin
    name = best.copy()
    refined = pd.Series(False, index=scores.index)
    for c in scores.index[mixed.to_numpy()]:
        pair = [best[c], second[c]]
        if pair[1] == "" or pair[1] in set(best):  # the runner-up has clusters of its own: nothing to tell apart
            continue
        among = [k for k in scores.index if best[k] == pair[0]]
        if len(among) < 2:
            continue
        idx = [cats.index(k) for k in among]
        sub = _type_scores(means[idx], among, genes, {t: present[t] for t in pair})
        for k in among:
            new = str(sub.loc[k].idxmax())
            if new != name[k]:
                name[k], refined[k] = new, True
    name[scores.max(axis=1) <= min_score] = unassigned
    labels = groups.astype(str).map(name).to_numpy()
    order = [t for t in marker_genes if t in set(name)] + ([unassigned] if unassigned in set(name) else [])
    adata.obs[key_added] = pd.Categorical(labels, categories=order)
    table = scores.assign(cell_type=name, best_type=best, second_type=second, margin=margin, mixed=mixed,
                          refined=refined)
    record(adata, "annotate", {"groupby": groupby, "key_added": key_added, "min_score": min_score,
                               "min_margin": min_margin, "scores": scores.reset_index(), "missing_genes": missing,
                               "assignment": {str(k): str(v) for k, v in name.items()},
                               "mixed": [str(k) for k in scores.index[mixed.to_numpy()]]})
    log.info("annotate: %s", ", ".join(f"{k}->{v}" for k, v in name.items()))
    for c in scores.index[mixed.to_numpy()]:
        log.warning("annotate: cluster %s of %s is mixed: %s and %s score within %.2f (min_margin %.2f)%s", c,
                    groupby, best[c], second[c], margin[c], min_margin,
                    f"; named {name[c]} by comparing the {best[c]} clusters among themselves" if refined[c] else "")
    return table


def transfer_labels(
    adata: ad.AnnData,
    reference: ad.AnnData,
    *,
    label_key: str,
    key_added: str = "cell_type_reference",
    min_confidence: float = 0.5,
    n_top_genes: int = 2000,
    n_comps: int = 50,
    n_neighbors: int = 15,
    target_sum: float | None = 1e4,
    seed: int = 0,
    unassigned: str = "Unassigned",
) -> pd.DataFrame:
    """Label the cells of ``adata`` from a labelled reference with raw counts (scanpy's ``tl.ingest`` mapping).

    Offline and model-free: the reference is processed as degflow processes data (counts →
    log1p of counts per ``target_sum``; ``n_top_genes`` seurat_v3 HVGs on its counts, kept if
    the query has them too; PCA, ``n_comps`` components, ARPACK seeded, on one BLAS thread).
    The query's log-normalised cells are projected on the reference PCs, centred on the
    reference means (the mapping of :func:`scanpy.tl.ingest`), and each takes the majority
    label of its ``n_neighbors`` nearest reference cells (ingest's kNN vote, with an exact
    search; ties go to the label met first in the reference). Its **confidence** is the share
    of those neighbours that carry the label given; below ``min_confidence`` the cell is
    ``unassigned``. No other random step: the same input gives the same labels.

    Parameters
    ----------
    adata
        The query, log-normalised ``X`` (run :func:`normalize` first); not changed except for
        the ``obs`` columns written.
    reference
        Raw counts in ``layers["counts"]`` or ``X``, the labels in ``obs[label_key]``; gene
        symbols as ``var_names``, as the query.
    target_sum
        Counts per cell of the reference's normalisation: the query's (``singlecell.normalize.target_sum``),
        so that both are on one scale; ``None``: the reference's median total count.

    Returns
    -------
    Per label: ``label``, ``n_reference`` (reference cells), ``n_cells`` (query cells given it),
    ``n_unassigned`` (query cells whose best label it was, below ``min_confidence``),
    ``median_confidence``. Writes ``obs[key_added]`` (categorical, reference label order, then
    ``unassigned``), ``obs[key_added + "_confidence"]`` (0-1), ``obsm["X_pca_" + key_added]`` (the
    query in the reference PCA space), ``uns["degflow"]["transfer_labels"]``.

    Raises
    ------
    DegflowInputError
        ``label_key`` not in the reference; a normalised reference; fewer than 50 shared genes.
    """
    import scanpy as sc
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    if label_key not in reference.obs.columns:
        raise DegflowInputError(f"reference: obs column {label_key!r} not found (columns: "
                                f"{', '.join(map(str, reference.obs.columns))}); set singlecell.reference.label_key")
    if "log1p" not in adata.uns:
        raise DegflowInputError("transfer_labels needs the query log-normalised: run normalize (or process) first")
    counts = raw_counts(reference)
    data = counts.data if sp.issparse(counts) else np.asarray(counts).ravel()
    if data.size and (data.min() < 0 or not np.array_equal(data, np.round(data))):
        raise DegflowInputError("reference: X / layers['counts'] must hold raw integer counts (found non-integer "
                                "or negative values); give the reference's raw counts")
    labels = reference.obs[label_key]
    keep = labels.notna().to_numpy()
    obs = pd.DataFrame({"label": labels[keep].astype(str).to_numpy()}, index=reference.obs_names[keep])
    ref = ad.AnnData(sp.csr_matrix(counts[keep]), obs=obs,
                     var=pd.DataFrame(index=reference.var_names.astype(str)))
    ref = ref[:, ~ref.var_names.duplicated()].copy()
    start = time.perf_counter()
    normalize(ref, target_sum=target_sum)
    sc.pp.highly_variable_genes(ref, flavor="seurat_v3", n_top_genes=min(n_top_genes, ref.n_vars), layer="counts")
    query_genes = pd.Index(adata.var_names.astype(str))
    genes = [g for g in ref.var_names[ref.var["highly_variable"].to_numpy()] if g in query_genes]
    if len(genes) < 50:
        raise DegflowInputError(f"reference: only {len(genes)} of its {n_top_genes} highly variable genes are in the "
                                "query; are both gene symbols of the same species?")
    ref = ref[:, genes].copy()
    query = adata[:, genes]
    n = min(n_comps, ref.n_obs - 1, len(genes) - 1)
    with threadpool_limits(limits=1):
        sc.pp.pca(ref, n_comps=n, svd_solver="arpack", random_state=seed)
        # ingest's PCA mapping (query centred on the reference means, times the reference loadings) and its kNN
        # label vote, with exact neighbours: scanpy 1.11.5's tl.ingest fails with pynndescent 0.7.0 (its index
        # rebuild passes n_search_trees=None to make_forest), and exact search does not depend on the threads
        ref_x = ref.X.toarray() if sp.issparse(ref.X) else np.asarray(ref.X)
        query_x = query.X.toarray() if sp.issparse(query.X) else np.asarray(query.X)
        projected = (query_x - ref_x.mean(axis=0)) @ ref.varm["PCs"]
        nn = NearestNeighbors(n_neighbors=min(n_neighbors, ref.n_obs)).fit(ref.obsm["X_pca"])
        _, idx = nn.kneighbors(projected)
    ref_labels = ref.obs["label"].to_numpy()
    codes, uniques = pd.factorize(ref_labels)  # codes in order of first appearance: argmax ties go to the first
    votes = np.zeros((idx.shape[0], len(uniques)), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), codes[idx].ravel()), 1)
    best = np.asarray(uniques, dtype=object)[votes.argmax(axis=1)].astype(str)
    confidence = votes.max(axis=1) / idx.shape[1]
    adata.obsm[f"X_pca_{key_added}"] = projected.astype(np.float32)
    called = np.where(confidence >= min_confidence, best, unassigned)
    # label order: the reference's categories if it has them (kept ones), else sorted
    present = set(ref_labels)
    cats = [str(c) for c in (labels.cat.categories if isinstance(labels.dtype, pd.CategoricalDtype)
                             else sorted(present)) if str(c) in present]
    used = set(called)
    adata.obs[key_added] = pd.Categorical(called, categories=[c for c in dict.fromkeys([*cats, unassigned])
                                                              if c in used])
    adata.obs[f"{key_added}_confidence"] = confidence
    table = pd.DataFrame({
        "label": [*cats, unassigned],
        "n_reference": [int((ref_labels == c).sum()) for c in cats] + [0],
        "n_cells": [int((called == c).sum()) for c in [*cats, unassigned]],
        "n_unassigned": [int(((best == c) & (called == unassigned)).sum()) for c in cats] + [0],
        "median_confidence": [float(np.median(confidence[called == c])) if (called == c).any() else np.nan
                              for c in [*cats, unassigned]],
    })
    record(adata, "transfer_labels", {"label_key": label_key, "key_added": key_added,
                                      "method": "ingest (PCA projection, exact kNN vote)",
                                      "min_confidence": min_confidence, "n_top_genes": n_top_genes,
                                      "n_genes_used": len(genes), "n_comps": n, "n_neighbors": n_neighbors,
                                      "seed": seed, "n_reference_cells": int(ref.n_obs),
                                      "target_sum": target_sum})
    log.info("transfer_labels: %d reference cells (normalised to target_sum %s), %d shared HVGs, %d of %d query "
             "cells assigned (min_confidence %.2f) in %.1fs", ref.n_obs, target_sum, len(genes),
             int((called != unassigned).sum()), adata.n_obs, min_confidence, time.perf_counter() - start)
    return table


def add_reference_labels(adata: ad.AnnData, labels: pd.DataFrame, *, categories: Sequence[str] | None = None,
                         key_added: str = "cell_type_reference") -> None:
    """Put the labels of :func:`transfer_labels` (a table ``cell``, ``cell_type_reference``, ``confidence``, as the
    workflow writes it) into ``obs[key_added]`` (categorical, ``categories`` order) and ``obs[key_added +
    "_confidence"]``.

    Raises
    ------
    DegflowInputError
        The table does not hold exactly the cells of ``adata``.
    """
    table = labels.set_index("cell")
    if not table.index.is_unique or set(table.index) != set(adata.obs_names):
        raise DegflowInputError("reference labels: the table's cells are not the cells of the data; re-run the "
                                "reference step")
    table = table.reindex(adata.obs_names)
    values = table["cell_type_reference"].astype(str)
    cats = [c for c in (categories if categories is not None else sorted(set(values))) if c in set(values)]
    adata.obs[key_added] = pd.Categorical(values.to_numpy(), categories=cats)
    adata.obs[f"{key_added}_confidence"] = table["confidence"].to_numpy(dtype=float)


def cluster_sizes(adata: ad.AnnData, *, keys: Sequence[str] | None = None, sample_key: str = "sample"
                  ) -> pd.DataFrame:
    """Cells per cluster for each clustering (default: every ``leiden_*`` column and ``cell_type``).

    Returns a DataFrame: ``clustering``, ``cluster``, ``n_cells``, ``fraction`` (of all cells),
    then one ``n_<sample>`` column per sample when ``obs[sample_key]`` exists.
    """
    if keys is None:
        keys = [c for c in adata.obs.columns if c.startswith("leiden_")] + (
            ["cell_type"] if "cell_type" in adata.obs.columns else [])
    rows = []
    for key in keys:
        if key not in adata.obs.columns:
            raise DegflowInputError(f"cluster_sizes: obs column {key!r} not found")
        col = adata.obs[key].astype("category")
        tab = pd.DataFrame({"clustering": key, "cluster": col.cat.categories.astype(str),
                            "n_cells": col.value_counts(sort=False).reindex(col.cat.categories).to_numpy()})
        tab["fraction"] = tab["n_cells"] / adata.n_obs
        if sample_key in adata.obs.columns:
            ct = pd.crosstab(col, adata.obs[sample_key]).reindex(col.cat.categories, fill_value=0)
            for s in ct.columns:
                tab[f"n_{s}"] = ct[s].to_numpy()
        rows.append(tab)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["clustering", "cluster", "n_cells",
                                                                                  "fraction"])
