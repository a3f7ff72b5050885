"""The on-disk single-cell path for atlas-size data: merge, process, markers and pseudobulk sums in chunks of cells.

The in-memory path (:func:`degflow.singlecell.process.process` on one AnnData) holds the counts, the log-normalised copy and
scanpy's dense scaled HVG matrix at once: ~32 GB and more for a million cells. This module computes the same
things from an ``.h5ad`` on disk, reading ``chunk_cells`` rows of the CSR counts at a time:

=====================  =========================================================================================
:func:`merge`          the per-sample ``cells.h5ad`` files appended one after the other into one ``.h5ad``
                       (one sample in memory at a time); obs/var/uns exactly as ``anndata.concat`` (inner, same)
:func:`process`        normalise + log1p (the numba kernel of the in-memory path, chunk by chunk, written to disk);
                       seurat_v3 HVGs (scanpy's algorithm from streamed per-batch sums); PCA as scanpy's
                       (zero-centred, scaled, clipped at ``scale_max``) from the HVG covariance accumulated chunk
                       by chunk, then ``eigh`` and the projection of each chunk (exact, deterministic; signs as
                       scikit-learn's ``svd_flip``); Harmony, kNN (pynndescent), Leiden and UMAP in memory on the
                       PCA (cells x 50) and the graph, with the functions of the in-memory path
:func:`markers`        ``rank_genes_groups`` on at most ``max_cells_per_group`` cells of each group (seeded sample;
                       every cell when no group is larger: then the in-memory answer)
:func:`copy_with`      the annotated ``.h5ad``: a copy of the processed one with new obs/uns (matrices untouched)
:func:`aggregate`      pseudobulk sums streamed from ``layers/counts``: the same integers as
                       :func:`degflow.pseudobulk.aggregate.aggregate` (sums of integers in float64 are exact)
=====================  =========================================================================================

Peak memory is about the output's obs/obsm/obsp plus one chunk (``chunk_cells`` x genes) and the HVG covariance,
independent of the number of cells otherwise. :func:`wanted` decides between the two paths
(``singlecell.scale.on_disk``: ``auto`` switches above :data:`ON_DISK_AUTO_CELLS` cells).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from degflow.errors import DegflowInputError
from degflow.kernels.jit import jit

__all__ = ["DEFAULT_CHUNK_CELLS", "ON_DISK_AUTO_CELLS", "aggregate", "check_config", "copy_with", "h5ad_cells", "markers", "merge",
           "read_light", "var_names",
           "process", "wanted"]

log = logging.getLogger("degflow")

#: ``singlecell.scale.on_disk: auto`` takes the on-disk path above this many cells (after QC and doublets): the
#: in-memory processing needs ~30 kB per cell of Kang-like 10x data at its peak (2.93 GiB measured on 100,000 cells:
#: the counts, their log-normalised copy, the dense scaled HVG matrix), ~6 GiB at this size.
ON_DISK_AUTO_CELLS = 200_000
#: Cells read per chunk (``singlecell.scale.chunk_cells``).
DEFAULT_CHUNK_CELLS = 20_000


# ----------------------------------------------------------------------------------------------
# which path, and CSR on disk
# ----------------------------------------------------------------------------------------------


def h5ad_cells(paths: str | Path | Sequence[str | Path]) -> int:
    """Cells in one or several ``.h5ad`` files, from their ``obs`` index (nothing else is read)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    total = 0
    for path in paths:
        with h5py.File(path, "r") as f:
            obs = f["obs"]
            total += int(obs[obs.attrs["_index"]].shape[0])
    return total


def wanted(setting: str | bool, n_cells: int) -> bool:
    """Whether to take the on-disk path: ``setting`` is ``singlecell.scale.on_disk`` (``auto``, ``true``, ``false``).

    ``auto`` takes it above :data:`ON_DISK_AUTO_CELLS` cells.

    Raises
    ------
    DegflowInputError
        Any other setting.
    """
    if setting is True or setting is False:
        return bool(setting)
    if setting == "auto":
        return n_cells > ON_DISK_AUTO_CELLS
    raise DegflowInputError(f"singlecell.scale.on_disk must be auto, true or false, not {setting!r}")


def check_config(sc: Mapping[str, Any]) -> None:
    """Stop before the DAG when ``singlecell.scale.on_disk: true`` asks for what the on-disk path cannot do.

    Raises
    ------
    DegflowInputError
        ``hvg.flavor`` other than ``seurat_v3``, or a non-empty ``pca.regress_out``, with ``on_disk: true``.
    """
    if sc.get("scale", {}).get("on_disk") is not True:
        return
    if sc["hvg"]["flavor"] != "seurat_v3":
        raise DegflowInputError(f"config key 'singlecell.scale.on_disk': true computes HVGs with flavor seurat_v3 only, "
                                f"but singlecell.hvg.flavor is {sc['hvg']['flavor']}; set the flavor to seurat_v3 or "
                                "on_disk to auto/false")
    if sc["pca"]["regress_out"]:
        raise DegflowInputError("config key 'singlecell.scale.on_disk': true has no regress_out, but "
                                f"singlecell.pca.regress_out is {list(sc['pca']['regress_out'])}; set it to [] or "
                                "on_disk to auto/false")


def _csr_group_rows(group: h5py.Group, start: int, stop: int) -> sp.csr_matrix:
    """Rows ``start:stop`` of a CSR matrix stored by anndata (``data``, ``indices``, ``indptr``)."""
    indptr = group["indptr"][start:stop + 1].astype(np.int64)
    lo, hi = int(indptr[0]), int(indptr[-1])
    n_vars = int(group.attrs["shape"][1])
    return sp.csr_matrix((group["data"][lo:hi], group["indices"][lo:hi], indptr - lo), shape=(stop - start, n_vars))


def _chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


class _CSRWriter:
    """Append CSR row blocks to a new anndata CSR group (resizable ``data``/``indices``/``indptr``)."""

    def __init__(self, parent: h5py.Group, name: str, *, n_vars: int, dtype: np.dtype, index_dtype: np.dtype):
        self.group = parent.create_group(name)
        self.n_vars, self.n_obs, self.nnz = n_vars, 0, 0
        opts = {"chunks": (1 << 18,), "maxshape": (None,)}
        self.data = self.group.create_dataset("data", shape=(0,), dtype=dtype, **opts)
        self.indices = self.group.create_dataset("indices", shape=(0,), dtype=index_dtype, **opts)
        # indptr in the dtype of indices, as anndata/scipy write it (scanpy fails on int32 indices + int64 indptr)
        self.indptr = self.group.create_dataset("indptr", shape=(1,), dtype=index_dtype, chunks=(1 << 16,),
                                                maxshape=(None,))
        self.indptr[0] = 0

    def append(self, block: sp.csr_matrix) -> None:
        nnz = int(block.nnz)
        for ds, values in ((self.data, block.data), (self.indices, block.indices)):
            ds.resize((self.nnz + nnz,))
            ds[self.nnz:] = values
        self.indptr.resize((self.n_obs + block.shape[0] + 1,))
        if self.nnz + nnz > np.iinfo(self.indptr.dtype).max:
            raise DegflowInputError(f"more than {np.iinfo(self.indptr.dtype).max} non-zero counts: too many for "
                                    f"{self.indptr.dtype} indices; write the samples with int64 indices")
        self.indptr[self.n_obs + 1:] = block.indptr[1:].astype(np.int64) + self.nnz
        self.n_obs += block.shape[0]
        self.nnz += nnz

    def finish(self) -> None:
        self.group.attrs["encoding-type"] = "csr_matrix"
        self.group.attrs["encoding-version"] = "0.1.0"
        self.group.attrs["shape"] = np.array([self.n_obs, self.n_vars], dtype=np.int64)


def _read(path: str | Path, *keys: str) -> list[Any]:
    """anndata elements (``obs``, ``var``, ``uns`` ...) of an ``.h5ad`` without its matrices."""
    with h5py.File(path, "r") as f:
        return [ad.io.read_elem(f[k]) if k in f else {} for k in keys]


def _write_skeleton(adata: ad.AnnData, path: str | Path) -> None:
    """Write ``adata`` (no ``X``) then leave room for the matrices: an anndata file h5py can complete."""
    adata.write_h5ad(path)


# ----------------------------------------------------------------------------------------------
# merge
# ----------------------------------------------------------------------------------------------


@jit(parallel=False)  # a scatter-add over genes: one thread (and the same sums whatever the thread count)
def _gene_sums(indices, data, n_vars):  # pragma: no cover - numba
    total = np.zeros(n_vars, dtype=np.float64)
    nnz = np.zeros(n_vars, dtype=np.int64)
    for k in range(indices.shape[0]):
        total[indices[k]] += data[k]
        if data[k] != 0:
            nnz[indices[k]] += 1
    return total, nnz


def merge(cells: Sequence[str | Path], out: str | Path, *, categories: Mapping[str, Sequence[str]],
          uns_update: Mapping[str, Any] | None = None) -> ad.AnnData:
    """All samples' cells in one ``.h5ad`` of raw counts, written one sample at a time.

    The same file as ``anndata.concat(join="inner", merge="same", uns_merge="same")`` of the samples followed by
    :func:`degflow.singlecell.qc.qc_metrics` (the in-memory ``sc_merge``): ``obs`` concatenated, ``var`` columns
    equal in every sample, the per-gene QC metrics recomputed over all cells (the per-cell ones are those of the
    samples: every sample has the genes of ``qc/genes.tsv``), ``obs`` columns of ``categories`` categorical in
    that order, ``uns["degflow"]["qc_filter"]`` updated with ``uns_update``.

    Returns
    -------
    The merged metadata (an AnnData without ``X``).

    Raises
    ------
    DegflowInputError
        The samples do not have the same genes in the same order.
    """
    from degflow.singlecell import qc as sc_qc

    start = time.perf_counter()
    light, n_vars, dtype, index_dtype, var_names = [], None, None, None, None
    for path in cells:
        with h5py.File(path, "r") as f:
            x = f["X"]
            names = ad.io.read_elem(f["var"]).index
            if var_names is None:
                var_names, n_vars, dtype, index_dtype = names, len(names), x["data"].dtype, x["indices"].dtype
            elif not names.equals(var_names):
                raise DegflowInputError(f"{path}: its genes differ from those of {cells[0]}; re-run the samples "
                                        "(every sample keeps the genes of qc/genes.tsv)")
            obs, var, uns = (ad.io.read_elem(f[k]) if k in f else {} for k in ("obs", "var", "uns"))
        light.append(ad.AnnData(obs=obs, var=var, uns=uns))
    meta = ad.concat(light, join="inner", merge="same", uns_merge="same")
    nnz = 0
    for path in cells:
        with h5py.File(path, "r") as f:
            nnz += int(f["X"]["data"].shape[0])
    if nnz > np.iinfo(np.int32).max:
        index_dtype = np.dtype(np.int64)
    del light
    for col, levels in categories.items():  # sheet order, not alphabetical
        meta.obs[col] = pd.Categorical(meta.obs[col].astype(str), categories=levels)
    total = np.zeros(n_vars, dtype=np.float64)
    n_cells = np.zeros(n_vars, dtype=np.int64)
    tmp = Path(f"{out}.X.tmp")
    with h5py.File(tmp, "w") as f:
        writer = _CSRWriter(f, "X", n_vars=n_vars, dtype=dtype, index_dtype=index_dtype)
        for path in cells:
            with h5py.File(path, "r") as src:
                block = sp.csr_matrix(ad.io.read_elem(src["X"]))
            block.sort_indices()
            t, c = _gene_sums(block.indices, block.data, n_vars)
            total += t
            n_cells += c
            writer.append(block)
            del block
        writer.finish()
    # the per-gene metrics of scanpy's calculate_qc_metrics (as qc_metrics writes them), over all cells
    var = meta.var
    n = meta.n_obs
    mean = total / n
    for key, pattern in sc_qc.QC_PATTERNS.items():  # as qc_metrics: the gene sets by symbol
        var[key] = np.asarray(pd.Index(var.index.astype(str)).str.contains(pattern, case=False, regex=True),
                              dtype=bool)
    var["n_cells_by_counts"] = n_cells
    var["mean_counts"] = mean.astype(np.float32 if dtype == np.float32 else np.float64)
    var["log1p_mean_counts"] = np.log1p(var["mean_counts"].to_numpy())
    var["pct_dropout_by_counts"] = (1 - n_cells / n) * 100
    var["total_counts"] = total.astype(var["mean_counts"].dtype)
    var["log1p_total_counts"] = np.log1p(var["total_counts"].to_numpy())
    meta.uns.setdefault("degflow", {}).setdefault("qc_filter", {}).update(dict(uns_update or {}))
    _write_skeleton(meta, out)
    with h5py.File(out, "r+") as f, h5py.File(tmp, "r") as t:
        t.copy(t["X"], f, "X")
    tmp.unlink()
    log.info("merge (on disk): %d samples, %d cells x %d genes in %.1fs", len(cells), n, n_vars,
             time.perf_counter() - start)
    return meta


# ----------------------------------------------------------------------------------------------
# process
# ----------------------------------------------------------------------------------------------


@jit(parallel=False)  # scatter-add over genes (scanpy's _sum_and_sum_squares_clipped is serial for accuracy too)
def _clipped_sums(indices, data, clip_val, sums, squares):  # pragma: no cover - numba
    for k in range(indices.shape[0]):
        g = indices[k]
        v = min(np.float64(data[k]), clip_val[g])
        sums[g] += v
        squares[g] += v * v


def _batches(obs: pd.DataFrame, batch_key: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's batch code and the batch names, in scanpy's order (``np.unique`` of the values)."""
    if batch_key is None or batch_key not in obs.columns or obs[batch_key].nunique() < 2:
        return np.zeros(len(obs), dtype=np.int64), np.array([0])
    values = obs[batch_key].to_numpy()
    names, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64), names


def _by_batch(block: sp.csr_matrix, codes: np.ndarray) -> Iterator[tuple[int, sp.csr_matrix]]:
    for b in np.unique(codes):
        yield int(b), block[codes == b] if len(np.unique(codes)) > 1 else block


def _seurat_v3_streamed(counts: h5py.Group, obs: pd.DataFrame, var_names: pd.Index, *, n_top_genes: int,
                        batch_key: str | None, span: float | None, stats: Mapping[str, np.ndarray],
                        chunk_cells: int) -> tuple[pd.DataFrame, float, bool]:
    """scanpy's ``seurat_v3`` HVG selection from per-batch sums (``stats``) and one streamed pass of clipped sums.

    Returns the var columns scanpy writes, the loess span used and whether there were batches.
    """
    from skmisc.loess import loess

    from degflow.singlecell.process import _LOESS_SPANS

    codes, names = _batches(obs, batch_key)
    n_b = np.bincount(codes, minlength=len(names)).astype(np.float64)
    s, q = stats["sum"], stats["sumsq"]  # batches x genes, raw counts
    means = s / n_b[:, None]
    variances = (q / n_b[:, None] - means**2) * (n_b / (n_b - 1))[:, None]
    spans = _LOESS_SPANS if span is None else (float(span),)
    reg_std = np.zeros_like(means)
    used = spans[0]
    for i, sp_ in enumerate(spans):
        try:
            for b in range(len(names)):
                not_const = variances[b] > 0
                model = loess(np.log10(means[b, not_const]), np.log10(variances[b, not_const]), span=sp_, degree=2)
                model.fit()
                estimat = np.zeros(len(var_names), dtype=np.float64)
                estimat[not_const] = model.outputs.fitted_values
                reg_std[b] = np.sqrt(10**estimat)
        except ValueError as e:
            if "reciprocal condition number" not in str(e) and "near singularities" not in str(e):
                raise
            if i + 1 < len(spans):
                log.warning("highly variable genes: the seurat_v3 loess fit is singular with span %s (a small "
                            "batch?); retrying with span %s", sp_, spans[i + 1])
                continue
            raise DegflowInputError(
                f"highly variable genes: the seurat_v3 loess fit is singular with span {sp_}; set the hvg span "
                "higher (0.5-1.0), leave it unset (automatic), or select HVGs without batch_key") from None
        used = sp_
        break
    clip_val = reg_std * np.sqrt(n_b)[:, None] + means
    csum = np.zeros_like(means)
    csq = np.zeros_like(means)
    for start, stop in _chunks(len(obs), chunk_cells):
        block = _csr_group_rows(counts, start, stop)
        for b, sub in _by_batch(block, codes[start:stop]):
            _clipped_sums(sub.indices, sub.data, clip_val[b], csum[b], csq[b])
    norm = (1 / ((n_b[:, None] - 1) * np.square(reg_std))) * (n_b[:, None] * np.square(means) + csq
                                                                - 2 * csum * means)
    ranked = np.argsort(np.argsort(-norm, axis=1), axis=1).astype(np.float32)
    nbatches = np.sum((ranked < n_top_genes).astype(int), axis=0)
    ranked[ranked >= n_top_genes] = np.nan
    median_ranked = np.ma.median(np.ma.masked_invalid(ranked), axis=0).filled(np.nan)
    n_all = n_b.sum()
    mean_all = s.sum(0) / n_all
    var_all = (q.sum(0) / n_all - mean_all**2) * (n_all / (n_all - 1))
    df = pd.DataFrame({"highly_variable_rank": median_ranked, "highly_variable_nbatches": nbatches},
                      index=var_names)
    order = df.sort_values(["highly_variable_rank", "highly_variable_nbatches"], ascending=[True, False],
                           na_position="last").index
    out = pd.DataFrame(index=var_names)
    out["highly_variable"] = False
    out.loc[order[: int(n_top_genes)], "highly_variable"] = True
    out["highly_variable_rank"] = median_ranked
    out["means"] = mean_all
    out["variances"] = var_all
    out["variances_norm"] = np.mean(norm, axis=0).astype(np.float64)
    if len(names) > 1:
        out["highly_variable_nbatches"] = nbatches
    return out, used, len(names) > 1


def process(
    src: str | Path,
    dst: str | Path,
    *,
    target_sum: float | None = 1e4,
    hvg_flavor: str = "seurat_v3",
    n_top_genes: int | None = 2000,
    min_mean: float = 0.0125,
    max_mean: float = 3.0,
    min_disp: float = 0.5,
    batch_key: str | None = "sample",
    hvg_span: float | None = None,
    regress_out: Sequence[str] = (),
    scale_max: float | None = 10.0,
    n_comps: int = 50,
    integration: str = "none",
    n_neighbors: int = 10,
    n_pcs: int | None = 40,
    knn: str = "auto",
    resolutions: Sequence[float] = (0.5, 1.0),
    run_umap: bool = True,
    seed: int = 0,
    chunk_cells: int = DEFAULT_CHUNK_CELLS,
    n_threads: int | None = None,
) -> ad.AnnData:
    """Counts on disk → the processed ``.h5ad`` of :func:`degflow.singlecell.process.process`, in chunks of cells.

    ``src`` is the merged ``.h5ad`` (raw counts in ``X``); ``dst`` gets the layout of the in-memory path:
    ``X`` log-normalised (float32 CSR), ``layers["counts"]``, ``var`` with the HVG statistics, ``obsm["X_pca"]``
    (``X_pca_harmony``), ``varm["PCs"]``, ``obsp`` (the kNN graph), ``obs["leiden_<res>"]``, ``obsm["X_umap"]``
    and ``uns`` (the parameters in ``uns["degflow"][<step>]``, with ``"on_disk": True`` and ``chunk_cells``).
    Options are those of :func:`degflow.singlecell.process.process`.

    The same numbers as the in-memory path up to float rounding: normalisation by the same numba kernel; the
    HVG statistics summed in float64 in another order; the PCA of the in-memory path
    (:func:`degflow.singlecell.process.covariance_pca`: the covariance of the scaled HVG matrix accumulated chunk by
    chunk in float64, then ``eigh``). No result depends on ``chunk_cells`` beyond float rounding of sums.

    Returns
    -------
    The processed AnnData without its matrices (obs, var, obsm, varm, obsp, uns).

    Raises
    ------
    DegflowInputError
        An HVG flavour other than ``seurat_v3`` or a ``regress_out`` (not available on disk: the in-memory path
        has them, ``singlecell.scale.on_disk: false``); a non-positive ``chunk_cells``.
    """
    from degflow.kernels.sparse import normalize_log1p
    from degflow.singlecell import process as scm
    from degflow.singlecell.common import record

    if hvg_flavor != "seurat_v3":
        raise DegflowInputError(f"singlecell.hvg.flavor {hvg_flavor} is not available on the on-disk path (atlas "
                                "size); use seurat_v3, or set singlecell.scale.on_disk: false")
    if n_top_genes is None:
        raise DegflowInputError("hvg flavor seurat_v3 needs n_top_genes (e.g. 2000)")
    if regress_out:
        raise DegflowInputError("singlecell.pca.regress_out is not available on the on-disk path (atlas size); "
                                "set it to [] or set singlecell.scale.on_disk: false")
    if integration not in ("none", "harmony"):
        raise DegflowInputError(f"singlecell.integration must be none or harmony, not {integration!r}")
    if chunk_cells < 1:
        raise DegflowInputError(f"singlecell.scale.chunk_cells must be >= 1, got {chunk_cells}")
    start_all = time.perf_counter()
    obs, var, uns = _read(src, "obs", "var", "uns")
    n_obs, n_vars = len(obs), len(var)
    dst = Path(dst)
    tmp = Path(f"{dst}.X.tmp")
    with h5py.File(src, "r") as f:
        counts = f["X"]
        # pass 0 (target_sum None only): the median of the positive cell totals, as the kernel takes it
        if target_sum is None:
            totals = np.concatenate([np.asarray(_csr_group_rows(counts, a, b).sum(axis=1), dtype=np.float64).ravel()
                                     for a, b in _chunks(n_obs, chunk_cells)])
            positive = totals[totals > 0]
            ts = float(np.median(positive)) if positive.size else 1.0
        else:
            ts = float(target_sum)
        # pass 1: normalise + log1p to disk; per-batch count sums (HVG); per-gene sums of the log values (scale)
        codes, names = _batches(obs, batch_key)
        stats = {"sum": np.zeros((len(names), n_vars)), "sumsq": np.zeros((len(names), n_vars))}
        lsum, lsq = np.zeros(n_vars), np.zeros(n_vars)
        t0 = time.perf_counter()
        with h5py.File(tmp, "w") as out:
            writer = _CSRWriter(out, "X", n_vars=n_vars, dtype=np.float32, index_dtype=counts["indices"].dtype)
            for a, b in _chunks(n_obs, chunk_cells):
                block = _csr_group_rows(counts, a, b)
                block.sort_indices()
                for bb, sub in _by_batch(block, codes[a:b]):
                    stats["sum"][bb] += np.bincount(sub.indices, weights=sub.data, minlength=n_vars)
                    stats["sumsq"][bb] += np.bincount(sub.indices, weights=np.square(sub.data, dtype=np.float64),
                                                      minlength=n_vars)
                norm = normalize_log1p(block.astype(np.float32), target_sum=ts, n_threads=n_threads)
                lsum += np.bincount(norm.indices, weights=norm.data, minlength=n_vars)
                lsq += np.bincount(norm.indices, weights=np.square(norm.data, dtype=np.float64), minlength=n_vars)
                writer.append(norm)
            writer.finish()
        log.info("normalise + log1p (on disk, %d cells per chunk) finished in %.2fs", chunk_cells,
                 time.perf_counter() - t0)
        # HVGs
        t0 = time.perf_counter()
        hv, span, batched = _seurat_v3_streamed(counts, obs, var.index, n_top_genes=n_top_genes,
                                                batch_key=batch_key, span=hvg_span, stats=stats,
                                                chunk_cells=chunk_cells)
        for c in hv.columns:
            var[c] = hv[c].to_numpy()
        hvg = var["highly_variable"].to_numpy(dtype=bool)
        log.info("highly variable genes (seurat_v3, on disk) finished in %.2fs; %d genes", time.perf_counter() - t0,
                 int(hvg.sum()))
        # PCA: covariance of the scaled HVG matrix, chunk by chunk
        t0 = time.perf_counter()
        mean_h = std_h = None
        if scale_max is not None:  # as the in-memory pca(): no scaling without scale_max (and no regress_out here)
            mean_h, std_h = scm.scaled_moments(lsum[hvg], lsq[hvg], n_obs)
        n_h = int(hvg.sum())
        n = min(n_comps, n_obs - 1, n_h - 1)
        if n < n_comps:
            log.warning("pca: n_comps lowered from %d to %d (%d cells, %d HVGs)", n_comps, n, n_obs, n_h)

        def scaled_chunks() -> Iterator[tuple[int, int, np.ndarray]]:
            for a, b in _chunks(n_obs, chunk_cells):
                block = _csr_group_rows(counts, a, b)
                norm = normalize_log1p(block.astype(np.float32), target_sum=ts, n_threads=n_threads)
                yield a, b, scm.scale_block(norm[:, hvg], mean_h, std_h, scale_max)

        x_pca, comps, w, total_var = scm.covariance_pca(scaled_chunks, n_obs=n_obs, n_comps=n)
        log.info("pca (on disk, covariance + eigh) finished in %.2fs", time.perf_counter() - t0)
    pcs = np.zeros((n_vars, n), dtype=np.float32)
    pcs[hvg] = comps.T
    meta = ad.AnnData(obs=obs, var=var, uns=uns)
    meta.obsm["X_pca"] = x_pca
    meta.varm["PCs"] = pcs
    meta.uns["log1p"] = {"base": None}
    meta.uns["hvg"] = {"flavor": "seurat_v3"}
    meta.uns["pca"] = {"variance": w, "variance_ratio": w / total_var,
                       "params": {"zero_center": True, "use_highly_variable": True, "mask_var": "highly_variable"}}
    record(meta, "normalize", {"target_sum": target_sum, "log": "natural log1p", "on_disk": True,
                                    "chunk_cells": chunk_cells,
                                    "implementation": "degflow.kernels.sparse.normalize_log1p"})
    record(meta, "highly_variable", {"flavor": "seurat_v3", "n_top_genes": n_top_genes, "min_mean": min_mean,
                                          "max_mean": max_mean, "min_disp": min_disp,
                                          "batch_key": batch_key if batched else None, "span": span,
                                          "n_highly_variable": int(hvg.sum()), "on_disk": True})
    record(meta, "pca", {"n_comps": n, "regress_out": [], "scale_max": scale_max, "seed": seed,
                              "svd_solver": "covariance eigh", "on_disk": True})
    rep = "X_pca"
    if integration == "harmony":
        scm.harmony(meta, batch_key=batch_key or "sample", seed=seed, n_threads=n_threads)
        rep = "X_pca_harmony"
    scm.neighbors(meta, n_neighbors=n_neighbors, n_pcs=n_pcs, use_rep=rep, knn=knn, seed=seed)
    scm.leiden(meta, resolutions=resolutions, seed=seed)
    if run_umap:
        scm.umap(meta, seed=seed, n_threads=n_threads)
    _write_skeleton(meta, dst)
    with h5py.File(dst, "r+") as f, h5py.File(tmp, "r") as t, h5py.File(src, "r") as s:
        t.copy(t["X"], f, "X")
        if "layers" not in f:
            f.create_group("layers").attrs.update({"encoding-type": "dict", "encoding-version": "0.1.0"})
        s.copy(s["X"], f["layers"], "counts")
    tmp.unlink()
    log.info("process (on disk): %d cells, %d genes in %.1fs", n_obs, n_vars, time.perf_counter() - start_all)
    return meta


# ----------------------------------------------------------------------------------------------
# markers and pseudobulk sums
# ----------------------------------------------------------------------------------------------


def _select_rows(group: h5py.Group, rows: np.ndarray, chunk_cells: int) -> sp.csr_matrix:
    """The CSR rows ``rows`` (sorted) of an on-disk matrix, read chunk by chunk."""
    n_obs = int(group.attrs["shape"][0])
    parts = []
    for a, b in _chunks(n_obs, chunk_cells):
        lo, hi = np.searchsorted(rows, [a, b])
        if hi > lo:
            parts.append(_csr_group_rows(group, a, b)[rows[lo:hi] - a])
    return sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, int(group.attrs["shape"][1])))


def markers(path: str | Path, groupby: str, *, method: str = "wilcoxon", n_genes: int | None = 100,
            max_cells_per_group: int = 2000, seed: int = 0,
            chunk_cells: int = DEFAULT_CHUNK_CELLS) -> tuple[pd.DataFrame, dict[str, int]]:
    """:func:`degflow.singlecell.annotate.markers` of a processed ``.h5ad`` on disk, on at most ``max_cells_per_group``
    cells of each group.

    Each group larger than the cap is sampled (seeded by ``seed``, ``numpy.random.default_rng``); the others keep
    every cell. When no group is larger the table is the in-memory one. Only the sampled rows of the
    log-normalised ``X`` are read.

    Returns
    -------
    ``(table, capped)``: the marker table of :func:`degflow.singlecell.annotate.markers` and ``{group: cells it has}`` of
    the groups that were sampled (to be announced).

    Raises
    ------
    DegflowInputError
        ``max_cells_per_group`` below 2; what :func:`degflow.singlecell.annotate.markers` raises.
    """
    from degflow.singlecell import annotate as sc_annotate

    if max_cells_per_group < 2:
        raise DegflowInputError(f"singlecell.scale.marker_cells_per_group must be >= 2, got {max_cells_per_group}")
    obs, var, uns = _read(path, "obs", "var", "uns")
    if groupby not in obs.columns:
        raise DegflowInputError(f"markers: obs column {groupby!r} not found (columns: {', '.join(obs.columns)})")
    groups = obs[groupby].astype("category")
    rng = np.random.default_rng(seed)
    keep, capped = [], {}
    for cat in groups.cat.categories:
        idx = np.flatnonzero((groups == cat).to_numpy())
        if len(idx) > max_cells_per_group:
            capped[str(cat)] = len(idx)
            idx = np.sort(rng.choice(idx, size=max_cells_per_group, replace=False))
        keep.append(idx)
    rows = np.sort(np.concatenate(keep)) if keep else np.array([], dtype=np.int64)
    with h5py.File(path, "r") as f:
        x = _select_rows(f["X"], rows, chunk_cells)
    sub = ad.AnnData(x, obs=obs.iloc[rows][[groupby]].copy(), var=pd.DataFrame(index=var.index))
    sub.uns["log1p"] = uns.get("log1p", {"base": None})
    if "log1p" not in uns:
        raise DegflowInputError("markers need log-normalised X: run normalize (or process) first")
    if capped:
        log.warning("markers by %s: %d group(s) sampled to %d cells each (singlecell.scale.marker_cells_per_group, "
                    "seed %d): %s", groupby, len(capped), max_cells_per_group, seed,
                    ", ".join(f"{g} ({n} cells)" for g, n in capped.items()))
    return sc_annotate.markers(sub, groupby, method=method, n_genes=n_genes), capped


def aggregate(path: str | Path, *, groupby: str = "cell_type", sample_key: str = "sample",
              min_cells: int = 10, min_counts: int = 1000, chunk_cells: int = DEFAULT_CHUNK_CELLS) -> ad.AnnData:
    """:func:`degflow.pseudobulk.aggregate.aggregate` of an ``.h5ad`` on disk: ``layers/counts`` streamed chunk by chunk.

    The counts of each (sample, cell type) pair are summed over the chunks in float64 (exact for integer
    counts below 2**53), then handed to :func:`degflow.pseudobulk.aggregate.aggregate` as one row per pair: the same
    pseudo-samples, metadata and integer sums as the in-memory call, and its checks.

    Raises
    ------
    DegflowInputError
        Missing columns; no ``layers/counts``; non-integer or negative counts (as the in-memory call).
    """
    from degflow.pseudobulk import aggregate as pb

    obs, var = _read(path, "obs", "var")
    for col, what in ((groupby, "groupby"), (sample_key, "sample_key")):
        if col not in obs.columns:
            raise DegflowInputError(f"pseudobulk {what} {col!r} is not an obs column (columns: "
                                    f"{', '.join(map(str, obs.columns))})")
    samples = obs[sample_key].astype("category")
    types = obs[groupby].astype("category")
    if samples.isna().any() or types.isna().any():
        raise DegflowInputError(f"pseudobulk: some cells have no {sample_key} or {groupby}; label every cell")
    pair = samples.cat.codes.to_numpy().astype(np.int64) * len(types.cat.categories) + types.cat.codes.to_numpy()
    present, inverse = np.unique(pair, return_inverse=True)
    sums = np.zeros((len(present), len(var)), dtype=np.float64)
    with h5py.File(path, "r") as f:
        if "layers" not in f or "counts" not in f["layers"]:
            raise DegflowInputError(f"{path}: pseudobulk needs raw counts in layers['counts'], which this AnnData "
                                    "lacks; aggregate results/singlecell/adata.h5ad")
        counts = f["layers"]["counts"]
        for a, b in _chunks(len(obs), chunk_cells):
            block = _csr_group_rows(counts, a, b)
            data = np.asarray(block.data)
            bad = ~np.isfinite(data) | (data < 0) | (data != np.round(data))
            if bad.any():
                raise DegflowInputError(
                    f"layers['counts'] holds non-integer or negative values (e.g. {float(data[bad][0]):.6g}): "
                    "normalised data, not raw counts; pseudobulk sums raw UMI counts, never normalised values")
            ind = sp.csr_matrix((np.ones(b - a), (inverse[a:b], np.arange(b - a))), shape=(len(present), b - a))
            sums += (ind @ block.astype(np.float64)).toarray()
    # one row per pair holding its sums (the pair's first cell), zeros elsewhere: aggregate sums them back
    first = np.unique(inverse, return_index=True)[1]
    holder = sp.csr_matrix(sp.coo_matrix(sums)).tocoo()
    rows_of = first[holder.row]
    X = sp.csr_matrix((holder.data, (rows_of, holder.col)), shape=(len(obs), len(var)))
    light = ad.AnnData(obs=obs, var=var)
    light.layers["counts"] = X
    return pb.aggregate(light, groupby=groupby, sample_key=sample_key, layer="counts",
                                min_cells=min_cells, min_counts=min_counts)


def copy_with(src: str | Path, dst: str | Path, *, obs: pd.DataFrame, uns: Mapping[str, Any]) -> None:
    """Copy the ``.h5ad`` ``src`` to ``dst`` with ``obs`` and ``uns`` replaced (the matrices copied byte for byte).

    ``obs`` must hold the same cells in the same order. Written to a temporary file renamed at the end: no
    half-written ``dst``.
    """
    import shutil

    from anndata.io import write_elem

    names = pd.Index(_read(src, "obs")[0].index.astype(str))
    if not names.equals(pd.Index(obs.index.astype(str))):
        raise AssertionError(f"copy_with: the obs given are not the cells of {src} in order")
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    with h5py.File(tmp, "r+") as f:
        for key, value in (("obs", obs), ("uns", dict(uns))):
            del f[key]
            write_elem(f, key, value)
    tmp.replace(dst)


def var_names(path: str | Path) -> pd.Index:
    """The genes (``var_names``) of an ``.h5ad``, nothing else read."""
    return pd.Index(_read(path, "var")[0].index.astype(str))


def read_light(path: str | Path, *, genes: Sequence[str] = (), chunk_cells: int = DEFAULT_CHUNK_CELLS) -> ad.AnnData:
    """An ``.h5ad`` for figures without its matrices: ``obs``, ``var``, ``obsm``, ``uns``, and ``X`` holding only the
    columns of ``genes`` (the others empty; same shape).

    What the figure rules of the on-disk path read: the UMAPs need ``obs`` and ``obsm``, the dot plots and the
    genes-of-interest figures a few genes of ``X``; a million cells' ``X`` and ``layers["counts"]`` stay on disk.
    Genes not in the data are ignored.
    """
    obs, var, uns, obsm = _read(path, "obs", "var", "uns", "obsm")
    cols = np.unique(var.index.get_indexer(pd.Index([str(g) for g in genes])))
    cols = cols[cols >= 0]
    parts = []
    with h5py.File(path, "r") as f:
        for a, b in _chunks(len(obs), chunk_cells):
            block = _csr_group_rows(f["X"], a, b)[:, cols].tocsr() if len(cols) else sp.csr_matrix((b - a, 0))
            parts.append(block)
    sub = sp.vstack(parts, format="csr") if parts else sp.csr_matrix((0, len(cols)))
    X = sp.csr_matrix((sub.data.astype(np.float32), cols[sub.indices], sub.indptr), shape=(len(obs), len(var)))
    return ad.AnnData(X, obs=obs, var=var, uns=uns, obsm=dict(obsm))
