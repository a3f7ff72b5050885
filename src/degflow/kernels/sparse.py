"""Numba kernels on sparse matrices: library-size normalisation + log1p, mean/variance.

Each public function validates its input, converts what needs converting (CSC to CSR, integer
counts to float32 like scanpy) and hands explicit sizes and a thread count to a private
``@jit()`` kernel. Each kernel has a plain-NumPy twin ``_ref_<name>`` that the tests compare it
with, besides scanpy itself (``tests/test_kernels.py``). DESeq2's size factors are in
:mod:`degflow.kernels.sizefactors`.

==============================  =====================================================
:func:`normalize_log1p`         ``log1p(x * target_sum / cell_total)`` on a CSR matrix
                                (scanpy ``normalize_total`` + ``log1p`` in one pass)
:func:`mean_var`                per-gene (or per-cell) mean and variance of a sparse
                                matrix, ``ddof=1`` (scanpy ``_get_mean_var``)
==============================  =====================================================

Numerics. Sums are accumulated in float64 whatever the input dtype; nothing is compiled with
fastmath. ``log1p`` is the fdlibm algorithm written branch-free
(:func:`degflow.kernels.math.log1p`, :func:`degflow.kernels.math.log1p_f32`), so that LLVM
vectorises it; numba would otherwise call the scalar libm routine per value, ~5x slower. In float64
it is within 1 ulp of ``np.log1p``. Float32 data are scaled and logged in float32 (8 values per AVX2
vector): ``log1p`` is within 0.84 ulp (checked over all positive float32), the scaled value
within ~1.5 ulp, about scanpy's own float32 error (its result and ours differ by ~1e-7).

Threads. ``n_threads=None`` uses numba's current setting (``numba.get_num_threads()``, which
:func:`degflow.runtime.set_threads` and :func:`degflow.runtime.configure_runtime` change). numba caches the
compiled kernels on disk (``cache=True``); on a read-only install set ``NUMBA_CACHE_DIR`` to a
writable folder *before numba is imported* (:func:`degflow.runtime.configure_runtime` does it).
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Literal

import numpy as np
from numba import prange, types
from numba.extending import overload
from scipy import sparse

from degflow.kernels.jit import jit
from degflow.kernels.math import log1p_any
from degflow.runtime import threads

__all__ = ["mean_var", "normalize_log1p"]

logger = logging.getLogger(__name__)


def _like(arr, value):
    """``value`` converted to the dtype of ``arr`` (overloaded below)."""


@overload(_like, inline="always")
def _like_impl(arr, value):
    if arr.dtype == types.float32:
        return lambda arr, value: np.float32(value)
    return lambda arr, value: np.float64(value)



# Loop indices into arrays are unsigned (np.uint64): numba then skips its negative-index
# wraparound, which otherwise costs a compare-and-select per access and stops LLVM from
# vectorising the per-row loops (3x slower). Never mix them with signed ints in arithmetic
# (numba would promote the result to float64): use these constants.
_U = np.uint64
_U0, _U1, _U2, _U3, _U4, _U64 = _U(0), _U(1), _U(2), _U(3), _U(4), _U(64)


# Not kernels.math.pairwise_sum: these sums only need float64 accuracy, not NumPy's exact summation order
# (pairwise_sum serves the DESeq2 ports, whose results must match NumPy bit for bit); four independent
# accumulators keep the CSR row loops pipelined (see _sum4's docstring).
@jit(parallel=False, inline="always")
def _sum4(data, start, stop):
    """float64 sum of data[start:stop] (uint64 bounds) with four accumulators (no fastmath, still pipelined)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = start
    while j + _U4 <= stop:
        s0 += data[j]
        s1 += data[j + _U1]
        s2 += data[j + _U2]
        s3 += data[j + _U3]
        j += _U4
    while j < stop:
        s0 += data[j]
        j += _U1
    return (s0 + s1) + (s2 + s3)


@jit(parallel=False, inline="always")
def _sumsq_dev4(data, start, stop, mean):
    """float64 sum of (data[start:stop] - mean)**2, four accumulators (as :func:`_sum4`)."""
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    j = start
    while j + _U4 <= stop:
        d0 = np.float64(data[j]) - mean
        d1 = np.float64(data[j + _U1]) - mean
        d2 = np.float64(data[j + _U2]) - mean
        d3 = np.float64(data[j + _U3]) - mean
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
        j += _U4
    while j < stop:
        d0 = np.float64(data[j]) - mean
        s0 += d0 * d0
        j += _U1
    return (s0 + s1) + (s2 + s3)


# ---------------------------------------------------------------------------------------------
# CSR helpers
# ---------------------------------------------------------------------------------------------


def _row_chunks(indptr: np.ndarray, n_chunks: int) -> np.ndarray:
    """Boundaries of ``n_chunks`` contiguous row blocks holding about equal numbers of non-zeros."""
    rows = indptr.shape[0] - 1
    nnz = int(indptr[-1])
    if nnz == 0:
        bounds = np.linspace(0, rows, n_chunks + 1).astype(np.int64)
    else:
        targets = np.linspace(0, nnz, n_chunks + 1)
        bounds = np.searchsorted(indptr, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, rows
    return np.maximum.accumulate(np.minimum(bounds, rows))


@jit()
def _csr_check(indptr, indices, n_minor, bounds):
    """Per chunk: (#indices outside [0, n_minor), #rows whose indices are not strictly increasing)."""
    n_chunks = bounds.shape[0] - 1
    out = np.zeros((n_chunks, 2), dtype=np.int64)
    for c in prange(n_chunks):
        bad = 0
        unsorted = 0
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            prev = -1
            ok = True
            for j in range(_U(indptr[i]), _U(indptr[i + _U1])):
                col = np.int64(indices[j])
                bad += (col < 0) | (col >= n_minor)
                ok &= col > prev
                prev = col
            unsorted += not ok
        out[c, 0] = bad
        out[c, 1] = unsorted
    return out


def _raise_out_of_range(n_bad: int, n_minor: int, name: str) -> None:
    if n_bad:
        raise ValueError(f"{name} is not a valid CSR matrix: {n_bad} column indices outside [0, {n_minor})")


def _canonical_csr(x: Any, *, name: str, copy: bool, n_threads: int) -> tuple[Any, bool]:
    """Check a CSR matrix's structure; return it (a sorted, summed copy if needed) and whether it was copied.

    Sorted indices and no duplicates are required (a duplicate (row, gene) pair would be
    log-transformed twice). Out-of-range indices or a broken indptr raise.
    """
    indptr, indices = x.indptr, x.indices
    rows, cols = x.shape
    if indptr.shape[0] != rows + 1 or indptr[0] != 0 or indptr[-1] > min(indices.shape[0], x.data.shape[0]):
        raise ValueError(f"{name} is not a valid CSR matrix: indptr does not match shape {x.shape} and nnz")
    if rows and np.any(indptr[1:] < indptr[:-1]):
        raise ValueError(f"{name} is not a valid CSR matrix: indptr decreases")
    exact_size = indptr[-1] == indices.shape[0] == x.data.shape[0]
    if getattr(x, "_has_canonical_format", False) and exact_size:
        # scipy has checked (and cached) it already, or a degflow kernel made it. Kernels that
        # index by column still bound-check, so a stale flag cannot corrupt memory.
        return x, False
    flags = _csr_check(indptr, indices, cols, _row_chunks(indptr, n_threads)).sum(axis=0)
    _raise_out_of_range(flags[0], cols, name)
    if flags[1] == 0 and exact_size:
        if sparse.issparse(x):
            x.has_canonical_format = True  # cache the answer, as scipy does
        return x, False
    if copy:
        x = x.copy()
    if sparse.issparse(x):
        x.has_canonical_format = False  # a stale True flag would make sum_duplicates a no-op
    x.sum_duplicates()  # sorts indices, merges duplicates, trims unused storage
    logger.debug("%s: %d rows had unsorted or duplicate indices; canonicalised", name, flags[1])
    return x, copy


# ---------------------------------------------------------------------------------------------
# 1. normalise + log1p
# ---------------------------------------------------------------------------------------------


@jit()
def _row_totals(indptr, data, totals, bounds):
    """totals[i] = sum of row i, in float64."""
    for c in prange(bounds.shape[0] - 1):
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            totals[i] = _sum4(data, _U(indptr[i]), _U(indptr[i + _U1]))


@jit()
def _highly_expressed(indptr, indices, data, totals_cast, max_fraction, n_cols, bounds):
    """Genes with ``x > max_fraction * total`` in at least one cell (scanpy's rule), as a bool mask.

    ``totals_cast`` are the cell totals rounded to the data dtype, as scanpy compares them.
    Each chunk marks its own row of an (n_chunks, n_cols) buffer; the rows are OR-ed at the end.
    """
    n_chunks = bounds.shape[0] - 1
    marks = np.zeros((n_chunks, n_cols), dtype=np.uint8)
    bad = np.zeros(n_chunks, dtype=np.int64)
    n_u = _U(n_cols)
    for c in prange(n_chunks):
        mark = marks[c]
        n_bad = 0
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            limit = max_fraction * totals_cast[i]
            for j in range(_U(indptr[i]), _U(indptr[i + _U1])):
                g = _U(indices[j])  # a negative index becomes huge: caught by the bound check
                if g >= n_u:
                    n_bad += 1
                elif data[j] > limit:
                    mark[g] = 1
        bad[c] = n_bad
    excluded = np.zeros(n_cols, dtype=np.bool_)
    for g in prange(n_cols):
        hit = 0
        for c in range(n_chunks):
            hit |= marks[c, g]
        excluded[g] = hit != 0
    return excluded, bad.sum()


@jit()
def _row_totals_masked(indptr, indices, data, excluded, totals, bounds):
    """Cell totals over the genes not in ``excluded`` (indices already bound-checked)."""
    for c in prange(bounds.shape[0] - 1):
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            s = 0.0
            for j in range(_U(indptr[i]), _U(indptr[i + _U1])):
                s += 0.0 if excluded[_U(indices[j])] else np.float64(data[j])
            totals[i] = s


@jit()
def _scale_log1p(indptr, indices, data, out_indices, out_data, totals, have_totals, target_sum, copy_indices, bounds):
    """out = log1p(data * target_sum / total) row by row; one pass over memory.

    ``have_totals=False``: the row total is computed here (the row is then still in cache for
    the second read) and written to ``totals``. A zero total leaves the row unscaled, as scanpy
    does. ``out_data`` may be ``data`` (in place). ``copy_indices``: also copy the row's
    indices into ``out_indices`` (same pass, parallel first touch of the new array).
    """
    for c in prange(bounds.shape[0] - 1):
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            a = _U(indptr[i])
            b = _U(indptr[i + _U1])
            if have_totals:
                s = totals[i]
            else:
                s = _sum4(data, a, b)
                totals[i] = s
            # float32 data: the factor is rounded once to float32 and the product stays float32
            # (8 lanes per vector); float64 data: all float64.
            f = _like(data, target_sum / s if s != 0.0 else 1.0)
            for j in range(a, b):
                out_data[j] = log1p_any(data[j] * f)
            if copy_indices:
                for j in range(a, b):
                    out_indices[j] = indices[j]


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _as_csr(x: Any, name: str) -> tuple[Any, bool]:
    """CSR view of a scipy sparse matrix/array (CSC converted); also returns whether it was copied."""
    if not sparse.issparse(x):
        raise TypeError(
            f"{name} must be a scipy.sparse CSR or CSC matrix, got {type(x).__name__}; "
            f"for a dense array pass scipy.sparse.csr_matrix({name})"
        )
    if x.format == "csr":
        return x, False
    if x.format == "csc":
        return x.tocsr(), True
    raise TypeError(f"{name} must be CSR or CSC, got {x.format.upper()}; convert with {name}.tocsr()")


def _csr_like(template: Any, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape) -> Any:
    """A CSR of the same API family (``csr_matrix`` or ``csr_array``) as ``template``, without copying."""
    cls = sparse.csr_array if isinstance(template, sparse.sparray) else sparse.csr_matrix
    out = cls((data, indices, indptr), shape=shape, copy=False)
    out.has_canonical_format = True
    return out


def normalize_log1p(
    X: Any,
    *,
    target_sum: float | None = None,
    exclude_highly_expressed: bool = False,
    max_fraction: float = 0.05,
    inplace: bool = False,
    n_threads: int | None = None,
    return_totals: bool = False,
) -> Any:
    """Scale each cell to ``target_sum`` counts and take ``log1p``: ``log(1 + x * target_sum / total)``.

    Equals ``sc.pp.normalize_total(adata, target_sum=...)`` followed by ``sc.pp.log1p(adata)``
    (scanpy 1.11) to float rounding, in one parallel pass over the non-zeros when
    ``target_sum`` is given and two otherwise. Cell totals are summed in float64.

    Parameters
    ----------
    X
        Counts, cells × genes, ``scipy.sparse`` CSR (or CSC, converted to CSR), non-negative.
        float32 and float64 are kept; integer counts become float32 (as scanpy); any other
        dtype raises ``TypeError``. Unsorted or duplicate indices are sorted/summed first.
    target_sum
        Total every cell is scaled to (1e4 is common). ``None``: the median total of the cells
        with a non-zero total. (scanpy 1.11.5 does that for dense input, but for CSR input its
        median includes the empty cells; degflow gives the dense answer for both.)
    exclude_highly_expressed
        Leave out of the totals every gene that holds more than ``max_fraction`` of some
        cell's total count (scanpy's rule, after Weinreb et al. 2018); the kept genes then sum to
        ``target_sum`` before the log.
    max_fraction
        Threshold for ``exclude_highly_expressed``, in [0, 1].
    inplace
        Overwrite ``X.data`` and return ``X``. Needs a float32/float64 CSR matrix (a CSC or
        integer ``X`` cannot be normalised in place: ``ValueError``).
    n_threads
        Threads for this call; ``None``: numba's current setting.
    return_totals
        Also return the cell totals used (float64, length ``n_cells``; after exclusion).

    Returns
    -------
    CSR matrix (``csr_array`` if ``X`` is a sparse array), same dtype as ``X`` (float32 for
    integer input), same sparsity pattern; with ``return_totals``, ``(X_norm, totals)``.

    Warns
    -----
    UserWarning
        Some cells have a total of zero: they are left unscaled (scanpy's behaviour).
    """
    start = time.perf_counter()
    if target_sum is not None:
        target_sum = float(target_sum)
        if not (np.isfinite(target_sum) and target_sum > 0):
            raise ValueError(f"target_sum must be a positive finite number or None, got {target_sum}")
    max_fraction = float(max_fraction)
    if not 0.0 <= max_fraction <= 1.0:
        raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}")
    x, copied = _as_csr(X, "X")
    if x.dtype not in _FLOATS and x.dtype.kind not in "iu":
        raise TypeError(f"X must hold float32, float64 or integer counts, got dtype {x.dtype}")
    if inplace and (copied or x.dtype not in _FLOATS):
        raise ValueError(
            f"inplace=True needs a float32/float64 CSR matrix, got {X.format.upper()} of dtype {X.dtype}; "
            "use inplace=False"
        )
    if x.dtype.kind in "iu":
        x, copied = x.astype(np.float32), True  # as scanpy: integer counts become float32
    rows, cols = x.shape
    with threads(n_threads) as n:
        x, fixed = _canonical_csr(x, name="X", copy=not (inplace or copied), n_threads=n)
        copied |= fixed
        indptr, indices, data = x.indptr, x.indices, x.data
        bounds = _row_chunks(indptr, n)
        totals = np.empty(rows, dtype=np.float64)
        if inplace or copied:
            # `x` is the caller's matrix (inplace) or already our own copy: write into its arrays.
            out_data, out_indices, out_indptr, copy_indices = data, indices, indptr, False
        else:
            out_data = np.empty_like(data)
            out_indices = np.empty_like(indices)
            out_indptr = indptr.copy()
            copy_indices = True

        have_totals = exclude_highly_expressed or target_sum is None
        if have_totals:
            _row_totals(indptr, data, totals, bounds)
        n_excluded = 0
        if exclude_highly_expressed:
            # scanpy compares with the totals in the data's dtype; so do we (same genes at ties).
            totals_cast = totals.astype(x.dtype)
            excluded, n_bad = _highly_expressed(indptr, indices, data, totals_cast, max_fraction, cols, bounds)
            _raise_out_of_range(n_bad, cols, "X")
            n_excluded = int(excluded.sum())
            if n_excluded:
                _row_totals_masked(indptr, indices, data, excluded, totals, bounds)
        if target_sum is None:
            positive = totals[totals > 0]
            target_sum = float(np.median(positive)) if positive.size else 1.0
        _scale_log1p(
            indptr, indices, data, out_indices, out_data, totals, have_totals, target_sum, copy_indices, bounds
        )

    n_zero = int(np.count_nonzero(totals == 0))
    if n_zero:
        warnings.warn(
            f"{n_zero} of {rows} cells have zero counts{' outside the excluded genes' if n_excluded else ''}; "
            "they are left unscaled",
            UserWarning,
            stacklevel=2,
        )
    if inplace:
        result = X
    else:
        result = _csr_like(X, out_data, out_indices, out_indptr, (rows, cols))
    logger.info(
        "normalize_log1p: %d cells x %d genes, %d non-zeros, target_sum %.6g, %d genes excluded, "
        "%d threads, %.3f s",
        rows,
        cols,
        out_data.shape[0],
        target_sum,
        n_excluded,
        n,
        time.perf_counter() - start,
    )
    return (result, totals) if return_totals else result


def _ref_normalize_log1p(
    X: Any, *, target_sum: float | None = None, exclude_highly_expressed: bool = False, max_fraction: float = 0.05
) -> sparse.csr_matrix:
    """Plain NumPy/SciPy twin of :func:`normalize_log1p` (float64 throughout, result in X's float dtype)."""
    x = sparse.csr_matrix(X, copy=True)
    x.sum_duplicates()
    out_dtype = x.dtype if x.dtype in _FLOATS else np.dtype(np.float32)
    cell = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    values = x.data.astype(np.float64)
    totals = np.bincount(cell, weights=values, minlength=x.shape[0])
    if exclude_highly_expressed:
        # as scanpy: totals rounded to the data's dtype, the product in float64
        limit = max_fraction * totals.astype(out_dtype).astype(np.float64)[cell]
        excluded = np.zeros(x.shape[1], dtype=bool)
        excluded[x.indices[x.data > limit]] = True
        totals = np.bincount(cell, weights=np.where(excluded[x.indices], 0.0, values), minlength=x.shape[0])
    if target_sum is None:
        target_sum = np.median(totals[totals > 0]) if np.any(totals > 0) else 1.0
    scale = np.divide(target_sum, totals, out=np.ones_like(totals), where=totals != 0)
    x.data = np.log1p(values * scale[cell]).astype(out_dtype)
    return x


# ---------------------------------------------------------------------------------------------
# 2. mean and variance
# ---------------------------------------------------------------------------------------------


@jit()
def _sums_minor(indptr, indices, data, n_minor, bounds):
    """Per-column sum and sum of squares of a CSR matrix.

    Each chunk of rows adds into its own row of (n_chunks, n_minor) float64 buffers (a
    scatter-add cannot be split across threads otherwise); the rows are reduced at the end.
    """
    n_chunks = bounds.shape[0] - 1
    s = np.zeros((n_chunks, n_minor))
    q = np.zeros((n_chunks, n_minor))
    bad = np.zeros(n_chunks, dtype=np.int64)
    n_u = _U(n_minor)
    for c in prange(n_chunks):
        sc = s[c]
        qc = q[c]
        n_bad = 0
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            for j in range(_U(indptr[i]), _U(indptr[i + _U1])):
                g = _U(indices[j])
                if g >= n_u:
                    n_bad += 1
                    continue
                v = np.float64(data[j])
                sc[g] += v
                qc[g] += v * v
        bad[c] = n_bad
    total = np.zeros(n_minor)
    total_sq = np.zeros(n_minor)
    for g in prange(n_minor):
        a = 0.0
        b = 0.0
        for c in range(n_chunks):
            a += s[c, g]
            b += q[c, g]
        total[g] = a
        total_sq[g] = b
    return total, total_sq, bad.sum()


@jit()
def _m2_minor(indptr, indices, data, n_minor, means, redo, bounds):
    """Exact second pass for the columns flagged in ``redo``: sum of (x - mean)^2 over non-zeros, and their count."""
    n_chunks = bounds.shape[0] - 1
    m2 = np.zeros((n_chunks, n_minor))
    nnz = np.zeros((n_chunks, n_minor), dtype=np.int64)
    n_u = _U(n_minor)
    for c in prange(n_chunks):
        mc = m2[c]
        nc = nnz[c]
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            for j in range(_U(indptr[i]), _U(indptr[i + _U1])):
                g = _U(indices[j])
                if g < n_u and redo[g]:
                    d = np.float64(data[j]) - means[g]
                    mc[g] += d * d
                    nc[g] += 1
    return m2.sum(axis=0), nnz.sum(axis=0)


@jit()
def _mean_m2_major(indptr, data, n_minor, bounds):
    """Per-row mean and sum of squared deviations (implicit zeros included), two passes per row."""
    rows = indptr.shape[0] - 1
    means = np.empty(rows)
    m2 = np.empty(rows)
    for c in prange(bounds.shape[0] - 1):
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            a = _U(indptr[i])
            b = _U(indptr[i + _U1])
            mean = _sum4(data, a, b) / n_minor
            means[i] = mean
            m2[i] = _sumsq_dev4(data, a, b, mean) + (np.float64(n_minor) - np.float64(b - a)) * mean * mean
    return means, m2


# Below this ratio of (sum of squared deviations) to (sum of squares), the one-pass formula has
# lost more than 4 of float64's ~16 digits; such columns get an exact second pass.
_M2_REFINE = 1e-4


def mean_var(
    X: Any, *, axis: Literal[0, 1] = 0, ddof: int = 1, n_threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance along ``axis`` of a sparse matrix, without densifying.

    Like scanpy's ``_get_mean_var`` (``ddof=1``, the R convention) but accurate when the mean
    dominates the variance: per gene, one parallel pass accumulates sums and sums of squares
    in float64 (thread-private buffers, reduced at the end); genes where that formula would
    lose more than 4 significant digits are recomputed exactly from ``sum((x - mean)**2)``.
    Per-cell statistics (``axis=1`` on CSR) are always exact two-pass.

    Parameters
    ----------
    X
        ``scipy.sparse`` CSR or CSC (used as is, never converted) or a dense 2-D ``ndarray``.
        float32/float64 or integer values (integers are read as float64).
    axis
        0: one value per column (gene); 1: one value per row (cell).
    ddof
        Delta degrees of freedom: the variance divides by ``n - ddof``. Where ``n <= ddof`` the
        variance is ``nan`` (scanpy returns the biased variance, 0, for a single cell).
    n_threads
        Threads for this call; ``None``: numba's current setting.

    Returns
    -------
    mean, var
        float64 arrays of length ``X.shape[1 - axis]``.
    """
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 or 1, got {axis!r}")
    ddof = int(ddof)
    if ddof < 0:
        raise ValueError(f"ddof must be >= 0, got {ddof}")
    dense = isinstance(X, np.ndarray)
    if not dense and not (sparse.issparse(X) and X.format in ("csr", "csc")):
        raise TypeError(f"X must be a scipy.sparse CSR/CSC matrix or a 2-D ndarray, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}")
    if X.dtype.kind not in "iuf" or X.dtype.kind == "f" and X.dtype not in _FLOATS:
        raise TypeError(f"X must hold float32, float64 or integer values, got dtype {X.dtype}")
    n = X.shape[axis]
    denom = n - ddof
    if n == 0:
        return np.full(X.shape[1 - axis], np.nan), np.full(X.shape[1 - axis], np.nan)
    if dense:
        mean = X.mean(axis=axis, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            m2 = ((X - np.expand_dims(mean, axis)) ** 2).sum(axis=axis, dtype=np.float64)
        return mean, (m2 / denom if denom > 0 else np.full_like(mean, np.nan))

    # Work on the CSR-or-CSC arrays directly: "major" = rows of CSR / columns of CSC.
    major_axis = 0 if X.format == "csr" else 1
    n_major, n_minor = (X.shape[0], X.shape[1]) if major_axis == 0 else (X.shape[1], X.shape[0])
    data = X.data
    if data.dtype.kind in "iu":
        data = data.astype(np.float64)  # exact for counts < 2**53; one compiled variant fewer
    with threads(n_threads) as nt:
        x, _ = _canonical_csr(
            _StructView(X.indptr, X.indices, data, (n_major, n_minor), getattr(X, "_has_canonical_format", False)),
            name="X",
            copy=True,
            n_threads=nt,
        )
        bounds = _row_chunks(x.indptr, nt)
        if axis != major_axis:  # one value per major line (CSR row / CSC column)
            mean, m2 = _mean_m2_major(x.indptr, x.data, n_minor, bounds)
        else:
            total, total_sq, n_bad = _sums_minor(x.indptr, x.indices, x.data, n_minor, bounds)
            _raise_out_of_range(n_bad, n_minor, "X")
            mean = total / n_major
            m2 = total_sq - total * mean
            redo = m2 < _M2_REFINE * total_sq
            n_redo = int(redo.sum())
            if n_redo:
                m2_nz, nnz = _m2_minor(x.indptr, x.indices, x.data, n_minor, mean, redo, bounds)
                m2[redo] = m2_nz[redo] + (n_major - nnz[redo]) * mean[redo] ** 2
            logger.debug("mean_var: %d of %d columns recomputed exactly", n_redo, n_minor)
    if denom <= 0:
        return mean, np.full_like(mean, np.nan)
    return mean, m2 / denom


class _StructView:
    """The (indptr, indices, data, shape) of a CSR or CSC matrix seen as 'major x minor' CSR."""

    format = "csr"

    def __init__(self, indptr, indices, data, shape, canonical=False):
        self.indptr, self.indices, self.data, self.shape = indptr, indices, data, shape
        self._has_canonical_format = canonical  # scipy's cached flag of the matrix it views

    def copy(self) -> _StructView:
        return _StructView(self.indptr.copy(), self.indices.copy(), self.data.copy(), self.shape)

    def sum_duplicates(self) -> None:
        m = sparse.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)
        m.sum_duplicates()
        self.indptr, self.indices, self.data = m.indptr, m.indices, m.data

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype


def _ref_mean_var(X: Any, *, axis: Literal[0, 1] = 0, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Plain NumPy twin of :func:`mean_var`: exact two-pass in float64 over the COO entries."""
    coo = sparse.coo_matrix(X)
    coo.sum_duplicates()
    n = coo.shape[axis]
    out = coo.shape[1 - axis]
    idx = coo.col if axis == 0 else coo.row
    values = coo.data.astype(np.float64)
    mean = np.bincount(idx, weights=values, minlength=out) / n
    m2 = np.bincount(idx, weights=(values - mean[idx]) ** 2, minlength=out)
    m2 += (n - np.bincount(idx, minlength=out)) * mean**2
    return mean, (m2 / (n - ddof) if n > ddof else np.full(out, np.nan))
