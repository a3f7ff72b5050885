"""Single-cell processing: counts → normalised ``X``, HVGs, PCA (Harmony), neighbours, Leiden, UMAP.

:func:`process` runs the steps in workflow order; each is also callable alone: :func:`normalize`,
:func:`highly_variable`, :func:`pca`, :func:`harmony` (between PCA and neighbours), :func:`neighbors`,
:func:`leiden`, :func:`umap`. Defaults follow the scanpy PBMC 3k tutorial.

Every step records its parameters in ``adata.uns["degflow"][<step>]``. Fixed seeds make a run
repeatable on one machine: the same input gives the same ``obs`` and cluster labels with 1 or 2
threads (tested on PBMC 3k). UMAP coordinates and Leiden labels may still differ between CPU
models or library builds (floating-point differences in the kNN graph; a known scanpy/umap
limitation), so compare clusterings across machines with the adjusted Rand index, not equality.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Literal

import anndata as ad
import numpy as np
import scipy.sparse as sp

from degflow.errors import DegflowInputError
from degflow.singlecell.common import record, thread_cap, timed

__all__ = [
    "EXACT_KNN_MAX_CELLS",
    "HVG_FLAVORS",
    "harmony",
    "highly_variable",
    "leiden",
    "leiden_key",
    "neighbors",
    "normalize",
    "pca",
    "process",
    "umap",
]

log = logging.getLogger("degflow")

HVG_FLAVORS = ("seurat_v3", "seurat", "cell_ranger", "pearson_residuals")


def leiden_key(resolution: float) -> str:
    """The ``obs`` column of a Leiden clustering: ``leiden_<resolution>`` (``leiden_1.0``, ``leiden_0.5``)."""
    return f"leiden_{float(resolution)}"


def normalize(adata: ad.AnnData, *, target_sum: float | None = 1e4, n_threads: int | None = None) -> None:
    """Keep raw counts in ``layers["counts"]``; make ``X`` = log1p(counts scaled to ``target_sum`` per cell).

    ``target_sum=None`` scales to the median total count (scanpy's default). Computed by the numba
    kernel :func:`degflow.kernels.sparse.normalize_log1p` (equal to scanpy's ``normalize_total`` +
    ``log1p`` to float rounding, one parallel pass, independent of ``n_threads``).

    Writes ``layers["counts"]`` (the raw counts, if not already there), ``X`` (float32 CSR,
    natural log), ``uns["log1p"]`` (``{"base": None}``, as scanpy), ``uns["degflow"]["normalize"]``.
    """
    from degflow.kernels.sparse import normalize_log1p

    if "counts" not in adata.layers:
        adata.layers["counts"] = adata.X.copy()
    counts = adata.layers["counts"]
    if not sp.issparse(counts):
        counts = sp.csr_matrix(counts)
    with timed("normalise + log1p"):
        counts = counts if counts.dtype == np.float32 else counts.astype(np.float32)
        adata.X = normalize_log1p(counts, target_sum=target_sum, n_threads=n_threads)
    adata.uns["log1p"] = {"base": None}
    record(adata, "normalize", {"target_sum": target_sum, "log": "natural log1p",
                                "implementation": "degflow.kernels.sparse.normalize_log1p"})


def highly_variable(
    adata: ad.AnnData,
    *,
    flavor: Literal["seurat_v3", "seurat", "cell_ranger", "pearson_residuals"] = "seurat_v3",
    n_top_genes: int | None = 2000,
    min_mean: float = 0.0125,
    max_mean: float = 3.0,
    min_disp: float = 0.5,
    batch_key: str | None = "sample",
    span: float | None = None,
) -> None:
    """Flag highly variable genes.

    ``seurat_v3`` (default, Seurat v3's VST) and ``pearson_residuals`` run on the raw counts
    (``layers["counts"]``); ``seurat`` and ``cell_ranger`` on log-normalised ``X`` (run
    :func:`normalize` first). With ``flavor="seurat"`` and ``n_top_genes=None`` the cut-offs
    ``min_mean``/``max_mean``/``min_disp`` decide (the PBMC 3k tutorial: 0.0125, 3, 0.5 → 1,838
    genes). ``batch_key`` makes the selection batch-aware (ignored when there is one batch).

    ``span`` is the loess span of ``seurat_v3`` (Seurat's and scanpy's 0.3). ``None`` means 0.3,
    or, when the loess fit of some batch is singular at 0.3 (small batches: a few hundred cells,
    many genes seen once), the smallest of 0.5, 0.8, 1.0 that fits every batch; a warning says
    so and ``uns["degflow"]["highly_variable"]["span"]`` records the span used. A given number
    is used as is (a failing fit then raises, naming the batch).

    Writes ``var["highly_variable"]`` (bool) and the flavour's statistics (``means``,
    ``dispersions``/``variances``, ``highly_variable_rank``…), ``uns["hvg"]``,
    ``uns["degflow"]["highly_variable"]``.
    """
    import scanpy as sc

    if flavor not in HVG_FLAVORS:
        raise DegflowInputError(f"hvg flavor {flavor!r} is not one of {', '.join(HVG_FLAVORS)}")
    if flavor in ("seurat_v3", "pearson_residuals") and n_top_genes is None:
        raise DegflowInputError(f"hvg flavor {flavor} needs n_top_genes (e.g. 2000)")
    if batch_key is not None and (batch_key not in adata.obs.columns or adata.obs[batch_key].nunique() < 2):
        batch_key = None
    with timed(f"highly variable genes ({flavor})"):
        if flavor == "pearson_residuals":
            sc.experimental.pp.highly_variable_genes(adata, flavor="pearson_residuals", n_top_genes=n_top_genes,
                                                     layer="counts", batch_key=batch_key)
        elif flavor == "seurat_v3":
            span = _seurat_v3(adata, n_top_genes=n_top_genes, batch_key=batch_key, span=span)
        else:
            if "log1p" not in adata.uns:
                raise DegflowInputError(f"hvg flavor {flavor} needs log-normalised X: run normalize first")
            sc.pp.highly_variable_genes(adata, flavor=flavor, n_top_genes=n_top_genes, min_mean=min_mean,
                                        max_mean=max_mean, min_disp=min_disp, batch_key=batch_key)
    n = int(adata.var["highly_variable"].sum())
    log.info("%d highly variable genes", n)
    record(adata, "highly_variable", {"flavor": flavor, "n_top_genes": n_top_genes, "min_mean": min_mean,
                                      "max_mean": max_mean, "min_disp": min_disp, "batch_key": batch_key,
                                      "span": span if flavor == "seurat_v3" else None, "n_highly_variable": n})


_LOESS_SPANS = (0.3, 0.5, 0.8, 1.0)


def _seurat_v3(adata: ad.AnnData, *, n_top_genes: int, batch_key: str | None, span: float | None) -> float:
    """scanpy's seurat_v3 HVG on ``layers["counts"]``; returns the loess span used (see :func:`highly_variable`)."""
    import scanpy as sc

    spans = _LOESS_SPANS if span is None else (float(span),)
    for i, s in enumerate(spans):
        try:
            sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n_top_genes, layer="counts",
                                        batch_key=batch_key, span=s)
        except ValueError as e:
            # skmisc loess reports a singular fit as "reciprocal condition number ..." or, measured on the
            # 16 Kang samples (475-3,134 cells), "There are other near singularities as well"
            if "reciprocal condition number" not in str(e) and "near singularities" not in str(e):
                raise
            if i + 1 < len(spans):
                log.warning("highly variable genes: the seurat_v3 loess fit is singular with span %s (a small "
                            "batch?); retrying with span %s", s, spans[i + 1])
                continue
            raise DegflowInputError(
                f"highly variable genes: the seurat_v3 loess fit is singular with span {s}"
                f"{_failing_batches(adata, n_top_genes, batch_key, s)}; set the hvg span higher (0.5-1.0), "
                "leave it unset (automatic), or select HVGs without batch_key") from None
        return s
    raise AssertionError("unreachable")


def _failing_batches(adata: ad.AnnData, n_top_genes: int, batch_key: str | None, span: float) -> str:
    import scanpy as sc

    if batch_key is None:
        return ""
    bad = []
    for b in adata.obs[batch_key].astype("category").cat.categories:
        sub = adata[(adata.obs[batch_key] == b).to_numpy()]
        sub = ad.AnnData(sub.layers["counts"].copy())
        try:
            sc.pp.highly_variable_genes(sub, flavor="seurat_v3", n_top_genes=n_top_genes, span=span)
        except ValueError:
            bad.append(f"{b} ({sub.n_obs} cells)")
    return f" for batch {', '.join(bad)}" if bad else ""


def pca(
    adata: ad.AnnData,
    *,
    n_comps: int = 50,
    regress_out: Sequence[str] = (),
    scale_max: float | None = 10.0,
    seed: int = 0,
    n_threads: int | None = None,
) -> None:
    """PCA of the highly variable genes (scaled, optionally after regressing out ``obs`` covariates).

    Works on a copy of the HVG columns of ``X`` (``X`` itself stays log-normalised, all genes):
    regress out ``regress_out`` (e.g. ``["total_counts", "pct_counts_mt"]`` as the tutorial),
    scale each gene to unit variance clipping at ``scale_max``, then ARPACK PCA seeded with
    ``seed`` on one BLAS thread (ARPACK's result otherwise depends on the thread count).
    ``n_comps`` is lowered (with a warning) for data with fewer cells or genes.

    Writes ``obsm["X_pca"]`` (float32, cells × n_comps), ``varm["PCs"]`` (loadings; 0 for non-HVGs),
    ``uns["pca"]`` (``variance``, ``variance_ratio``), ``uns["degflow"]["pca"]``.
    """
    import scanpy as sc
    from threadpoolctl import threadpool_limits

    if "highly_variable" not in adata.var.columns:
        raise DegflowInputError("pca needs var['highly_variable']: run highly_variable first")
    hvg = adata.var["highly_variable"].to_numpy(dtype=bool)
    missing = [k for k in regress_out if k not in adata.obs.columns]
    if missing:
        raise DegflowInputError(f"regress_out names obs column(s) {missing} that do not exist; run qc_metrics first "
                                "or fix the names")
    n = min(n_comps, adata.n_obs - 1, int(hvg.sum()) - 1)
    if n < n_comps:
        log.warning("pca: n_comps lowered from %d to %d (%d cells, %d HVGs)", n_comps, n, adata.n_obs, hvg.sum())
    with timed("pca"), thread_cap(n_threads):
        X = adata.X[:, hvg]
        sub = ad.AnnData(X.toarray() if sp.issparse(X) else np.array(X), obs=adata.obs[list(regress_out)].copy())
        if regress_out:
            sc.pp.regress_out(sub, list(regress_out))
        if scale_max is not None or regress_out:
            sc.pp.scale(sub, max_value=scale_max)
        # ARPACK's result depends on the BLAS thread count (summation order; up to 3e-2 on PBMC 3k's
        # last components), which would change the kNN graph and the clusters: one BLAS thread here.
        with threadpool_limits(limits=1):
            sc.pp.pca(sub, n_comps=n, svd_solver="arpack", random_state=seed)
    adata.obsm["X_pca"] = sub.obsm["X_pca"]
    pcs = np.zeros((adata.n_vars, n), dtype=sub.varm["PCs"].dtype)
    pcs[hvg] = sub.varm["PCs"]
    adata.varm["PCs"] = pcs
    adata.uns["pca"] = {k: v for k, v in sub.uns["pca"].items() if k in ("variance", "variance_ratio")}
    adata.uns["pca"]["params"] = {"zero_center": True, "use_highly_variable": True, "mask_var": "highly_variable"}
    record(adata, "pca", {"n_comps": n, "regress_out": list(regress_out), "scale_max": scale_max, "seed": seed,
                          "svd_solver": "arpack"})


def harmony(adata: ad.AnnData, *, batch_key: str = "sample", seed: int = 0, max_iter: int = 10,
            n_threads: int | None = None) -> None:
    """Harmony integration of ``obsm["X_pca"]`` by ``batch_key`` (harmonypy 2.1, C++ backend).

    harmonypy documents its result as independent of the thread count.

    Writes ``obsm["X_pca_harmony"]`` (float32, cells × n_comps) and ``uns["degflow"]["harmony"]``;
    :func:`process` then builds the neighbour graph on it.
    """
    try:
        import harmonypy
    except ImportError:
        raise DegflowInputError("integration: harmony needs the harmonypy package (pip install harmonypy==2.1.0) "
                                "or set singlecell.integration to none") from None
    if batch_key not in adata.obs.columns:
        raise DegflowInputError(f"harmony: batch_key {batch_key!r} is not an obs column")
    if adata.obs[batch_key].nunique() < 2:
        raise DegflowInputError(f"harmony: obs[{batch_key!r}] has a single batch; there is nothing to integrate "
                                "(set singlecell.integration to none)")
    if "X_pca" not in adata.obsm:
        raise DegflowInputError("harmony needs obsm['X_pca']: run pca first")
    with timed(f"harmony by {batch_key}"):
        ho = harmonypy.run_harmony(np.asarray(adata.obsm["X_pca"], dtype=np.float64),
                                   adata.obs[[batch_key]].astype(str), [batch_key], max_iter_harmony=max_iter,
                                   random_state=seed, verbose=False, ncores=n_threads or 0)
        z = np.asarray(ho.Z_corr)
    if z.shape != adata.obsm["X_pca"].shape:
        raise AssertionError(f"harmonypy returned shape {z.shape}, expected {adata.obsm['X_pca'].shape}")
    adata.obsm["X_pca_harmony"] = z.astype(np.float32)
    record(adata, "harmony", {"batch_key": batch_key, "seed": seed, "max_iter": max_iter,
                              "version": _version("harmonypy")})


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


#: Largest data set whose kNN graph is computed exactly (brute force, one BLAS thread): ~8 s for
#: 29k cells x 40 PCs here; the time grows with the square of the number of cells.
EXACT_KNN_MAX_CELLS = 50_000


def _pynndescent_transformer(n_obs: int, n_neighbors: int, seed: int):
    """pynndescent on one thread, with its result converted to ``csr_matrix``.

    Two problems with scanpy's own choice above 8,192 cells (``PyNNDescentTransformer`` with
    ``n_jobs`` threads), both measured on the 29k Kang cells:

    * scanpy 1.11.5 + pynndescent 0.7.0 + scipy 1.17: ``transform`` returns a ``csr_array``, and
      scanpy calls ``.getnnz(axis=1)`` on it, which scipy removed from sparse *arrays*
      (``AttributeError: 'csr_array' object has no attribute 'getnnz'``);
    * pynndescent builds its random-projection forest on ``n_jobs`` threads, so the graph (and
      the Leiden clusters: ARI 0.95 between 1 and 2 threads) depends on the thread count.

    Same parameters as scanpy's default (UMAP's ``n_trees``/``n_iters``) otherwise.
    """
    from pynndescent import PyNNDescentTransformer

    class _CSRPyNNDescentTransformer(PyNNDescentTransformer):
        def transform(self, X, y=None):
            return sp.csr_matrix(super().transform(X, y))

    return _CSRPyNNDescentTransformer(
        n_neighbors=n_neighbors, metric="euclidean", random_state=seed, n_jobs=1,
        n_trees=min(64, 5 + round(n_obs**0.5 / 20.0)), n_iters=max(5, round(np.log2(n_obs))),
    )


def neighbors(
    adata: ad.AnnData,
    *,
    n_neighbors: int = 10,
    n_pcs: int | None = 40,
    use_rep: str = "X_pca",
    knn: Literal["auto", "exact", "pynndescent"] = "auto",
    seed: int = 0,
) -> None:
    """kNN graph on the first ``n_pcs`` columns of ``obsm[use_rep]`` (UMAP connectivities).

    ``knn="auto"`` searches exactly (brute force, what scanpy does below 8,192 cells) up to
    :data:`EXACT_KNN_MAX_CELLS` cells and with pynndescent above. Both run on one thread so the
    graph does not depend on the thread count (see :func:`_pynndescent_transformer` for why, and
    for the scipy ``getnnz`` workaround).

    Writes ``obsp["distances"]``, ``obsp["connectivities"]`` (CSR), ``uns["neighbors"]``,
    ``uns["degflow"]["neighbors"]``.
    """
    import scanpy as sc
    from threadpoolctl import threadpool_limits

    if use_rep not in adata.obsm:
        raise DegflowInputError(f"neighbors: obsm[{use_rep!r}] not found; run pca (or harmony) first")
    if knn not in ("auto", "exact", "pynndescent"):
        raise DegflowInputError(f"neighbors: knn must be auto, exact or pynndescent, not {knn!r}")
    if knn == "auto":
        knn = "exact" if adata.n_obs <= EXACT_KNN_MAX_CELLS else "pynndescent"
    n_pcs = None if n_pcs is None else min(n_pcs, adata.obsm[use_rep].shape[1])
    transformer = "sklearn" if knn == "exact" else _pynndescent_transformer(adata.n_obs, n_neighbors, seed)
    with timed(f"neighbours ({knn})"), thread_cap(1), threadpool_limits(limits=1):
        sc.pp.neighbors(adata, n_neighbors=n_neighbors, n_pcs=n_pcs, use_rep=use_rep, random_state=seed,
                        transformer=transformer)
    record(adata, "neighbors", {"n_neighbors": n_neighbors, "n_pcs": n_pcs, "use_rep": use_rep, "seed": seed,
                                "knn": knn})


def leiden(adata: ad.AnnData, *, resolutions: Sequence[float] = (0.5, 1.0), seed: int = 0,
           n_iterations: int = 2) -> None:
    """Leiden clustering (igraph flavour, undirected, modularity) at each resolution.

    Writes ``obs["leiden_<resolution>"]`` (categorical, e.g. ``leiden_1.0``; see :func:`leiden_key`),
    ``uns["leiden_<resolution>"]`` (scanpy's parameters), ``uns["degflow"]["leiden"]``
    (resolutions, seed, clusters found).
    """
    import scanpy as sc

    if "connectivities" not in adata.obsp:
        raise DegflowInputError("leiden needs the neighbour graph: run neighbors first")
    if not resolutions:
        raise DegflowInputError("singlecell.leiden_resolutions is empty; give at least one resolution (e.g. [1.0])")
    found = {}
    with timed(f"leiden at {list(resolutions)}"):
        for r in resolutions:
            if not r > 0:
                raise DegflowInputError(f"Leiden resolution must be > 0, got {r}")
            key = leiden_key(r)
            sc.tl.leiden(adata, resolution=float(r), flavor="igraph", n_iterations=n_iterations, directed=False,
                         random_state=seed, key_added=key)
            found[key] = int(adata.obs[key].nunique())
            log.info("leiden resolution %s: %d clusters", r, found[key])
    record(adata, "leiden", {"resolutions": [float(r) for r in resolutions], "seed": seed,
                             "n_iterations": n_iterations, "flavor": "igraph", "n_clusters": found})


def umap(adata: ad.AnnData, *, seed: int = 0, min_dist: float = 0.5, n_threads: int | None = None) -> None:
    """UMAP embedding of the neighbour graph, seeded (umap-learn then runs single-threaded).

    Writes ``obsm["X_umap"]`` (cells × 2), ``uns["umap"]``, ``uns["degflow"]["umap"]``.
    """
    import scanpy as sc

    if "neighbors" not in adata.uns:
        raise DegflowInputError("umap needs the neighbour graph: run neighbors first")
    with timed("umap"), thread_cap(n_threads):
        sc.tl.umap(adata, random_state=seed, min_dist=min_dist)
    record(adata, "umap", {"seed": seed, "min_dist": min_dist})


def process(
    adata: ad.AnnData,
    *,
    target_sum: float | None = 1e4,
    hvg_flavor: Literal["seurat_v3", "seurat", "cell_ranger", "pearson_residuals"] = "seurat_v3",
    n_top_genes: int | None = 2000,
    min_mean: float = 0.0125,
    max_mean: float = 3.0,
    min_disp: float = 0.5,
    batch_key: str | None = "sample",
    hvg_span: float | None = None,
    regress_out: Sequence[str] = (),
    scale_max: float | None = 10.0,
    n_comps: int = 50,
    integration: Literal["none", "harmony"] = "none",
    n_neighbors: int = 10,
    n_pcs: int | None = 40,
    knn: Literal["auto", "exact", "pynndescent"] = "auto",
    resolutions: Sequence[float] = (0.5, 1.0),
    run_umap: bool = True,
    seed: int = 0,
    n_threads: int | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Counts → clusters and UMAP: :func:`normalize`, :func:`highly_variable`, :func:`pca`,
    (:func:`harmony`), :func:`neighbors`, :func:`leiden`, :func:`umap`, in that order.

    Defaults follow the scanpy PBMC 3k tutorial (log-normalise to 10,000, 2,000 ``seurat_v3``
    HVGs on counts, scale clipped at 10, 50 PCs, 10 neighbours on 40 PCs, igraph Leiden, UMAP);
    its legacy version is ``hvg_flavor="seurat", n_top_genes=None,
    regress_out=["total_counts", "pct_counts_mt"]``.

    Parameters
    ----------
    integration
        ``"harmony"``: correct the PCA by ``batch_key`` before the neighbour graph.
    n_threads
        numba/BLAS threads (``None``: as configured). Results do not depend on it.

    Returns
    -------
    None (or a copy with ``copy=True``). Writes everything the steps write: ``layers["counts"]``,
    log-normalised ``X``, ``var["highly_variable"]``, ``obsm["X_pca"]`` (``X_pca_harmony``),
    ``obsp["distances"]``/``["connectivities"]``, ``obs["leiden_<res>"]``, ``obsm["X_umap"]``, and
    the parameters in ``uns["degflow"][<step>]``.
    """
    if integration not in ("none", "harmony"):
        raise DegflowInputError(f"singlecell.integration must be none or harmony, not {integration!r}")
    if copy:
        adata = adata.copy()
    start = time.perf_counter()
    normalize(adata, target_sum=target_sum, n_threads=n_threads)
    highly_variable(adata, flavor=hvg_flavor, n_top_genes=n_top_genes, min_mean=min_mean, max_mean=max_mean,
                    min_disp=min_disp, batch_key=batch_key, span=hvg_span)
    pca(adata, n_comps=n_comps, regress_out=regress_out, scale_max=scale_max, seed=seed, n_threads=n_threads)
    rep = "X_pca"
    if integration == "harmony":
        harmony(adata, batch_key=batch_key or "sample", seed=seed, n_threads=n_threads)
        rep = "X_pca_harmony"
    neighbors(adata, n_neighbors=n_neighbors, n_pcs=n_pcs, use_rep=rep, knn=knn, seed=seed)
    leiden(adata, resolutions=resolutions, seed=seed)
    if run_umap:
        umap(adata, seed=seed, n_threads=n_threads)
    log.info("process: %d cells, %d genes in %.1fs", adata.n_obs, adata.n_vars, time.perf_counter() - start)
    return adata if copy else None
