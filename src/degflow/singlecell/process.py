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
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import anndata as ad
import numpy as np
import scipy.sparse as sp

from degflow.errors import DegflowInputError
from degflow.singlecell.common import record, thread_cap, timed

__all__ = [
    "EXACT_KNN_MAX_CELLS",
    "HVG_FLAVORS",
    "PCA_BLOCK_CELLS",
    "UMAP_SPECTRAL_MAX_CELLS",
    "harmony",
    "highly_variable",
    "leiden",
    "leiden_key",
    "neighbors",
    "normalize",
    "covariance_pca",
    "pca",
    "process",
    "scale_block",
    "scaled_moments",
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


def scaled_moments(total: np.ndarray, total_sq: np.ndarray, n_obs: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene mean and standard deviation (``ddof=1``; 0 → 1) from sums and sums of squares, as scanpy's ``scale``."""
    mean = total / n_obs
    var = (total_sq / n_obs - mean**2) * (n_obs / (n_obs - 1)) if n_obs > 1 else np.zeros_like(mean)
    std = np.sqrt(np.maximum(var, 0))
    std[std == 0] = 1
    return mean, std


def scale_block(x: sp.spmatrix | np.ndarray, mean: np.ndarray | None, std: np.ndarray | None,
                clip: float | None) -> np.ndarray:
    """A block of cells (HVG columns) scaled as scanpy's ``scale(max_value=clip)``, dense float64.

    ``mean``/``std`` ``None``: the block as it is (no scaling; the PCA still centres).
    """
    z = x.toarray().astype(np.float64) if sp.issparse(x) else np.array(x, dtype=np.float64)
    if mean is None or std is None:
        return z
    z -= mean
    z /= std
    if clip is not None:
        np.clip(z, -clip, clip, out=z)
    return z


def covariance_pca(
    blocks: Callable[[], Iterator[tuple[int, int, np.ndarray]]],
    *,
    n_obs: int,
    n_comps: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """PCA by the eigen-decomposition of the covariance, accumulated over blocks of cells in float64.

    Parameters
    ----------
    blocks
        Called twice (covariance, then projection); yields ``(start, stop, z)`` with ``z`` the dense
        (scaled) values of cells ``start:stop``, in cell order.
    n_obs
        Number of cells.
    n_comps
        Number of components.

    Returns
    -------
    x_pca
        Cells × components, float32 (the centred data projected on the components).
    components
        Components × genes, float64, signs as scikit-learn's ``svd_flip(u_based_decision=False)``.
    variance
        Variance explained by each component.
    total_variance
        Sum of the per-gene variances (``variance / total_variance`` is scanpy's ``variance_ratio``).

    Notes
    -----
    The same numbers as an exact SVD of the centred matrix (ARPACK/LAPACK) to float64 rounding, on one BLAS
    thread so that no sum depends on the thread count; memory is one block plus genes × genes. The in-memory
    and the on-disk paths both use it, so they give the same PCA for the same cells.
    """
    from threadpoolctl import threadpool_limits

    gram: np.ndarray | None = None
    colsum: np.ndarray | None = None
    with threadpool_limits(limits=1):
        for _, _, z in blocks():
            if gram is None:
                gram, colsum = np.zeros((z.shape[1], z.shape[1])), np.zeros(z.shape[1])
            gram += z.T @ z
            colsum += z.sum(axis=0)
        if gram is None or colsum is None:
            raise DegflowInputError("pca: no cells")
        zmean = colsum / n_obs
        cov = (gram - n_obs * np.outer(zmean, zmean)) / (n_obs - 1)
        w, v = np.linalg.eigh(cov)
        top = np.argsort(w)[::-1][:n_comps]
        w, comps = w[top], v[:, top].T
        signs = np.sign(comps[np.arange(len(top)), np.argmax(np.abs(comps), axis=1)])
        comps *= signs[:, None]
        x_pca = np.empty((n_obs, len(top)), dtype=np.float32)
        for a, b, z in blocks():
            x_pca[a:b] = (z - zmean) @ comps.T
    return x_pca, comps, w, float(np.trace(cov))


#: Cells per block of :func:`pca` in memory (the dense scaled HVG values of one block: ~320 MB for 2,000 HVGs).
PCA_BLOCK_CELLS = 20_000


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

    Works on the HVG columns of ``X`` (``X`` itself stays log-normalised, all genes): regress out
    ``regress_out`` (e.g. ``["total_counts", "pct_counts_mt"]`` as the tutorial; a dense copy), scale each
    gene to unit variance clipping at ``scale_max`` as scanpy's ``scale`` (no scaling when ``scale_max`` is
    ``None`` and nothing is regressed out), then the exact PCA of :func:`covariance_pca` (float64, one BLAS
    thread, block by block: no dense copy without ``regress_out``). Deterministic whatever the thread count,
    and the same numbers as the on-disk path (:func:`degflow.singlecell.ondisk.process`). ``seed`` is recorded
    (the PCA itself has no randomness). ``n_comps`` is lowered (with a warning) for data with fewer cells or genes.

    Writes ``obsm["X_pca"]`` (float32, cells × n_comps), ``varm["PCs"]`` (loadings; 0 for non-HVGs),
    ``uns["pca"]`` (``variance``, ``variance_ratio``), ``uns["degflow"]["pca"]``.
    """
    import scanpy as sc

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
    n_obs = adata.n_obs
    with timed("pca"), thread_cap(n_threads):
        X = adata.X[:, hvg]
        if regress_out:
            sub = ad.AnnData(X.toarray().astype(np.float64) if sp.issparse(X) else np.array(X, dtype=np.float64),
                             obs=adata.obs[list(regress_out)].copy())
            sc.pp.regress_out(sub, list(regress_out))
            X = sub.X
        X = X.tocsr() if sp.issparse(X) else X
        mean = std = None
        if scale_max is not None or regress_out:
            if sp.issparse(X):
                total = np.bincount(X.indices, weights=X.data, minlength=X.shape[1])
                total_sq = np.bincount(X.indices, weights=np.square(X.data, dtype=np.float64), minlength=X.shape[1])
            else:
                total, total_sq = X.sum(axis=0, dtype=np.float64), np.square(X, dtype=np.float64).sum(axis=0)
            mean, std = scaled_moments(total, total_sq, n_obs)

        def blocks() -> Iterator[tuple[int, int, np.ndarray]]:
            for a in range(0, n_obs, PCA_BLOCK_CELLS):
                b = min(a + PCA_BLOCK_CELLS, n_obs)
                yield a, b, scale_block(X[a:b], mean, std, scale_max)

        x_pca, comps, variance, total_var = covariance_pca(blocks, n_obs=n_obs, n_comps=n)
    adata.obsm["X_pca"] = x_pca
    pcs = np.zeros((adata.n_vars, len(variance)), dtype=np.float32)
    pcs[hvg] = comps.T
    adata.varm["PCs"] = pcs
    adata.uns["pca"] = {"variance": variance, "variance_ratio": variance / total_var,
                        "params": {"zero_center": True, "use_highly_variable": True, "mask_var": "highly_variable"}}
    record(adata, "pca", {"n_comps": n, "regress_out": list(regress_out), "scale_max": scale_max, "seed": seed,
                          "svd_solver": "covariance eigh"})


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


#: Above this many cells UMAP starts from the first two components of the neighbour graph's representation
#: (umap-learn's ``init="pca"`` recipe) instead of the spectral layout: ARPACK on the graph Laplacian of a million
#: cells ran over 40 minutes on one core (benchmarks/singlecell_scale.py), the PCA start costs nothing.
UMAP_SPECTRAL_MAX_CELLS = 200_000


def umap(adata: ad.AnnData, *, seed: int = 0, min_dist: float = 0.5, n_threads: int | None = None) -> None:
    """UMAP embedding of the neighbour graph, seeded (umap-learn then runs single-threaded).

    Starts from the spectral layout of the graph (scanpy's default) up to :data:`UMAP_SPECTRAL_MAX_CELLS` cells,
    above from the first two columns of the graph's representation (``X_pca`` or ``X_pca_harmony``) scaled as
    umap-learn's ``init="pca"`` (largest coordinate 10, seeded noise of 1e-4); the log and
    ``uns["degflow"]["umap"]["init"]`` say which.

    Writes ``obsm["X_umap"]`` (cells × 2), ``uns["umap"]``, ``uns["degflow"]["umap"]``.
    """
    import scanpy as sc

    if "neighbors" not in adata.uns:
        raise DegflowInputError("umap needs the neighbour graph: run neighbors first")
    init: str | np.ndarray = "spectral"
    if adata.n_obs > UMAP_SPECTRAL_MAX_CELLS:
        rep = adata.uns["neighbors"].get("params", {}).get("use_rep", "X_pca")
        start = np.asarray(adata.obsm[rep][:, :2], dtype=np.float64)
        start = (start * (10.0 / np.abs(start).max())).astype(np.float32)
        start += np.random.RandomState(seed).normal(scale=1e-4, size=start.shape).astype(np.float32)
        init = start
        log.info("umap: %d cells > %d: starting from the first two columns of %s (umap-learn's pca init) instead "
                 "of the spectral layout", adata.n_obs, UMAP_SPECTRAL_MAX_CELLS, rep)
    with timed("umap"), thread_cap(n_threads):
        sc.tl.umap(adata, random_state=seed, min_dist=min_dist, init_pos=init)
    record(adata, "umap", {"seed": seed, "min_dist": min_dist,
                           "init": "spectral" if isinstance(init, str) else "pca"})


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
