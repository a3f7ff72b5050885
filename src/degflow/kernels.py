"""Numba kernels: library-size normalisation + log1p, mean/variance, DESeq2 size factors.

Each public function validates its input, converts what needs converting (CSC to CSR, integer
counts to float32 like scanpy) and hands explicit sizes and a thread count to a private
``@_jit`` kernel. Each kernel has a plain-NumPy twin ``_ref_<name>`` that the tests compare it
with, besides scanpy and pydeseq2/DESeq2 themselves (``tests/test_kernels.py``).

==============================  =====================================================
:func:`normalize_log1p`         ``log1p(x * target_sum / cell_total)`` on a CSR matrix
                                (scanpy ``normalize_total`` + ``log1p`` in one pass)
:func:`mean_var`                per-gene (or per-cell) mean and variance of a sparse
                                matrix, ``ddof=1`` (scanpy ``_get_mean_var``)
:func:`size_factors_ratio`      DESeq2 median-of-ratios size factors (pydeseq2
                                ``deseq2_norm``, R ``estimateSizeFactors``)
:func:`size_factors_poscounts`  DESeq2 ``type="poscounts"`` size factors
:func:`set_threads`             numba threads for the kernels; caps BLAS/OpenMP
==============================  =====================================================

Numerics. Sums are accumulated in float64 whatever the input dtype; nothing is compiled with
fastmath. ``log1p`` and ``log`` are the fdlibm algorithms written branch-free
(:func:`_log1p`, :func:`_log`), so that LLVM vectorises them; numba would otherwise call the
scalar libm routine per value, ~5x slower. In float64 they are within 1 ulp of
``np.log1p``/``np.log``. Float32 data are scaled and logged in float32 (8 values per AVX2
vector): ``log1p`` is within 0.84 ulp (checked over all positive float32), the scaled value
within ~1.5 ulp, about scanpy's own float32 error (its result and ours differ by ~1e-7).

Threads. ``n_threads=None`` uses numba's current setting (``numba.get_num_threads()``, which
:func:`set_threads` and :func:`degflow._threads.configure_runtime` change). numba caches the
compiled kernels on disk (``cache=True``); on a read-only install set ``NUMBA_CACHE_DIR`` to a
writable folder *before numba is imported* (:func:`degflow._threads.configure_runtime` does it).
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any, Literal

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload
from scipy import sparse

from degflow._threads import set_threads, threads
from degflow.errors import DegflowInputError

__all__ = [
    "mean_var",
    "normalize_log1p",
    "set_threads",
    "size_factors_poscounts",
    "size_factors_ratio",
]

logger = logging.getLogger(__name__)


def _jit(func=None, *, parallel: bool = True, inline: str = "never"):
    """The one numba decorator of degflow: ``njit(parallel, nogil=True, cache=True)``, no fastmath.

    ``error_model="numpy"``: a division by zero gives inf/nan as in NumPy instead of raising
    ``ZeroDivisionError``; without that check in every division the loops vectorise. Where a
    kernel can divide by zero (``_log1p(-1)`` computes ``c / 0`` in a lane it then discards)
    the result is masked, so no returned value depends on it.
    """

    def decorate(f):
        return numba.njit(  # noqa: TID251 - the single sanctioned use
            parallel=parallel, nogil=True, cache=True, error_model="numpy", inline=inline
        )(f)

    return decorate if func is None else decorate(func)


# ---------------------------------------------------------------------------------------------
# Branch-free, vectorisable log1p and log (fdlibm / musl, double precision)
# ---------------------------------------------------------------------------------------------


def _frexp_intrinsic(width: int):
    """Intrinsic ``u -> (k, m)`` with ``u = 2**k * m``, ``m`` in [sqrt(2)/2, sqrt(2)), ``k`` as a float.

    The fdlibm range reduction done on the bits (add ``1 - sqrt(2)/2`` to the exponent field,
    read ``k``, put the mantissa back over ``sqrt(2)/2``), in ``width``-bit integers emitted as
    LLVM IR directly: numba would widen the integer arithmetic to int64, which AVX2 cannot
    shift or convert to float in vector registers. Valid for positive normal ``u``; callers
    mask the other cases.
    """
    fty = types.float32 if width == 32 else types.float64
    mant_bits, bias, sqrt_half = (23, 0x7F, 0x3F3504F3) if width == 32 else (52, 0x3FF, 0x3FE6A09E667F3BCD)
    one = 0x3F800000 if width == 32 else 0x3FF0000000000000
    # for float64 the mantissa bits below the high word are kept as they are (musl adds to the high word only)
    sqrt_half_hi = sqrt_half if width == 32 else (sqrt_half >> 32) << 32
    shift = one - sqrt_half_hi

    @intrinsic
    def frexp_sqrt2(typingctx, u):
        if u != fty:
            return None
        sig = types.UniTuple(fty, 2)(fty)

        def codegen(context, builder, signature, args):
            ity = ir.IntType(width)
            h = builder.add(builder.bitcast(args[0], ity), ir.Constant(ity, shift))
            e = builder.lshr(h, ir.Constant(ity, mant_bits))
            if width == 64:
                e = builder.trunc(e, ir.IntType(32))
            k = builder.sitofp(builder.sub(e, ir.Constant(ir.IntType(32), bias)), args[0].type)
            m_bits = builder.add(builder.and_(h, ir.Constant(ity, (1 << mant_bits) - 1)), ir.Constant(ity, sqrt_half_hi))
            m = builder.bitcast(m_bits, args[0].type)
            return context.make_tuple(builder, signature.return_type, [k, m])

        return sig, codegen

    return frexp_sqrt2


_frexp64 = _frexp_intrinsic(64)
_frexp32 = _frexp_intrinsic(32)

# fdlibm / musl constants. log(1 + f) = 2s + s*R(s^2) with s = f / (2 + f).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01
_TWO54 = 18014398509481984.0
_DBL_MIN = 2.2250738585072014e-308
# float32 versions (musl log1pf); numba keeps np.float32 globals in float32.
_F = np.float32
_LN2_HI_F = _F(6.9313812256e-01)
_LN2_LO_F = _F(9.0580006145e-06)
_LG1_F = _F(0.66666662693)
_LG2_F = _F(0.40000972152)
_LG3_F = _F(0.28498786688)
_LG4_F = _F(0.24279078841)
_ZERO_F, _HALF_F, _ONE_F, _TWO_F = _F(0.0), _F(0.5), _F(1.0), _F(2.0)
_INF_F, _NAN_F = _F(np.inf), _F(np.nan)


@_jit(parallel=False, inline="always")
def _log_poly(f, k):
    """log(1 + f) + k*log(2) for f in [sqrt(2)/2 - 1, sqrt(2) - 1] (fdlibm kernel, < 1 ulp)."""
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    return s * (hfsq + t2 + t1) + k * _LN2_LO - hfsq + f + k * _LN2_HI


@_jit(parallel=False, inline="always")
def _log1p(x):
    """``np.log1p`` for float64: musl ``log1p`` without branches, so that loops over it vectorise.

    Within 1 ulp of ``np.log1p``; -1 gives -inf, < -1 and nan give nan, inf gives inf.
    """
    u = 1.0 + x
    k, m = _frexp64(u)
    # u is 1 + x rounded; c/u puts back what the rounding lost.
    c = (1.0 - (u - x)) if k >= 2.0 else (x - (u - 1.0))
    c = c / u
    small = k == 0.0  # 1 + x in [sqrt(2)/2, sqrt(2)): use x itself, exactly
    f = x if small else m - 1.0
    c = 0.0 if small else c
    r = _log_poly(f, k) + c
    r = r if x < np.inf else x
    r = r if x > -1.0 else (-np.inf if x == -1.0 else np.nan)
    return x if x == 0.0 else r  # keeps the sign of -0.0


@_jit(parallel=False, inline="always")
def _log1p_f32(x):
    """``np.log1p`` for float32 (musl ``log1pf``, branch-free, 8 lanes per AVX2 vector).

    Checked exhaustively over all positive float32: < 0.84 ulp from the exact value.
    """
    u = _ONE_F + x
    k, m = _frexp32(u)
    c = (_ONE_F - (u - x)) if k >= _TWO_F else (x - (u - _ONE_F))
    c = c / u
    small = k == _ZERO_F
    f = x if small else m - _ONE_F
    c = _ZERO_F if small else c
    s = f / (_TWO_F + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2_F + w * _LG4_F)
    t2 = z * (_LG1_F + w * _LG3_F)
    hfsq = _HALF_F * f * f
    r = s * (hfsq + t2 + t1) + (k * _LN2_LO_F + c) - hfsq + f + k * _LN2_HI_F
    r = r if x < _INF_F else x
    r = r if x > -_ONE_F else (-_INF_F if x == -_ONE_F else _NAN_F)
    return x if x == _ZERO_F else r


@_jit(parallel=False, inline="always")
def _log(x):
    """``np.log`` for float64 (fdlibm ``log``, branch-free). 0 gives -inf, < 0 and nan give nan."""
    sub = x < _DBL_MIN  # subnormal (or <= 0): scale into the normal range first
    k, m = _frexp64(x * _TWO54 if sub else x)
    r = _log_poly(m - 1.0, k - (54.0 if sub else 0.0))
    r = r if x < np.inf else x
    return r if x > 0.0 else (-np.inf if x == 0.0 else np.nan)


def _log1p_any(x):
    """``log1p`` in the precision of ``x``: :func:`_log1p_f32` or :func:`_log1p` (overloaded below)."""


@overload(_log1p_any, inline="always")
def _log1p_any_impl(x):
    if x == types.float32:
        return lambda x: _log1p_f32(x)
    return lambda x: _log1p(np.float64(x))


def _like(arr, value):
    """``value`` converted to the dtype of ``arr`` (overloaded below)."""


@overload(_like, inline="always")
def _like_impl(arr, value):
    if arr.dtype == types.float32:
        return lambda arr, value: np.float32(value)
    return lambda arr, value: np.float64(value)


@_jit
def _log1p_array(x, out):
    """out[i] = log1p(x[i]) elementwise (float32 or float64, 1-D; x may be out); for tests and benchmarks."""
    for i in prange(x.shape[0]):
        out[i] = _log1p_any(x[i])


@_jit
def _log_array(x, out):
    """out[i] = log(x[i]) elementwise, float64, 1-D."""
    for i in prange(x.shape[0]):
        out[i] = _log(x[i])


# Loop indices into arrays are unsigned (np.uint64): numba then skips its negative-index
# wraparound, which otherwise costs a compare-and-select per access and stops LLVM from
# vectorising the per-row loops (3x slower). Never mix them with signed ints in arithmetic
# (numba would promote the result to float64): use these constants.
_U = np.uint64
_U0, _U1, _U2, _U3, _U4 = _U(0), _U(1), _U(2), _U(3), _U(4)


@_jit(parallel=False, inline="always")
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


@_jit(parallel=False, inline="always")
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


@_jit
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


@_jit
def _row_totals(indptr, data, totals, bounds):
    """totals[i] = sum of row i, in float64."""
    for c in prange(bounds.shape[0] - 1):
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            totals[i] = _sum4(data, _U(indptr[i]), _U(indptr[i + _U1]))


@_jit
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


@_jit
def _row_totals_masked(indptr, indices, data, excluded, totals, bounds):
    """Cell totals over the genes not in ``excluded`` (indices already bound-checked)."""
    for c in prange(bounds.shape[0] - 1):
        for i in range(_U(bounds[c]), _U(bounds[c + 1])):
            s = 0.0
            for j in range(_U(indptr[i]), _U(indptr[i + _U1])):
                s += 0.0 if excluded[_U(indices[j])] else np.float64(data[j])
            totals[i] = s


@_jit
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
                out_data[j] = _log1p_any(data[j] * f)
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


@_jit
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


@_jit
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


@_jit
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


# ---------------------------------------------------------------------------------------------
# 3. DESeq2 size factors (dense samples x genes)
# ---------------------------------------------------------------------------------------------


@_jit
def _log_geomeans(counts, poscounts, bounds):
    """Per gene: mean over samples of log(count) and flags.

    ``poscounts=False``: log of every count (a zero makes the mean -inf, as in DESeq2).
    ``poscounts=True``: log of the positive counts only, still divided by the number of samples
    (DESeq2's ``geoMeanNZ``). Returns (logmeans, n_positive, n_bad) with n_bad counting
    negative, nan and infinite values per gene.
    """
    n_samples, n_genes = counts.shape
    logmeans = np.empty(n_genes)
    n_pos = np.zeros(n_genes, dtype=np.int64)
    n_bad = np.zeros(n_genes, dtype=np.int64)
    for c in prange(bounds.shape[0] - 1):
        g0 = _U(bounds[c])
        width = bounds[c + 1] - bounds[c]
        acc = np.zeros(width)
        pos = np.zeros(width, dtype=np.int64)
        bad = np.zeros(width, dtype=np.int64)
        for s in range(_U(n_samples)):
            row = counts[s]
            for t in range(_U0, _U(width)):
                x = np.float64(row[g0 + t])
                lx = _log(x)
                positive = x > 0.0
                acc[t] += (lx if positive else 0.0) if poscounts else lx
                pos[t] += positive
                bad[t] += (x < 0.0) | (x != x) | (x == np.inf)
        for t in range(_U0, _U(width)):
            logmeans[g0 + t] = acc[t] / n_samples
            n_pos[g0 + t] = pos[t]
            n_bad[g0 + t] = bad[t]
    return logmeans, n_pos, n_bad


@_jit(parallel=False)
def _median_finite(buf, n, lo, hi):
    """Exact median of the finite values ``buf[:n]`` (all in [lo, hi]); ``buf`` is left unchanged.

    A histogram selection instead of numba's quickselect (~4x faster here): one pass counts the
    values into ~n/8 equal-width bins, which locates the bin(s) holding the middle rank(s); only
    their few values are then sorted. The value -> bin map is monotone, so the ranks are exact.
    An even ``n`` gives the mean of the two middle values, as ``np.median``.
    """
    if n == 0:
        return np.nan
    if lo == hi:
        return lo
    k_lo = (n - 1) // 2
    k_hi = n // 2
    n_bins = min(max(n // 8, 16), 1 << 16)
    scale = n_bins / (hi - lo)
    top = n_bins - 1
    hist = np.zeros(n_bins, dtype=np.int64)
    for i in range(_U0, _U(n)):
        hist[_U(min(np.int64((buf[i] - lo) * scale), top))] += 1
    below = 0  # values in bins before b_lo
    b_lo = 0
    while below + hist[b_lo] <= k_lo:
        below += hist[b_lo]
        b_lo += 1
    b_hi = b_lo
    upto = below + hist[b_lo]
    while upto <= k_hi:
        b_hi += 1
        upto += hist[b_hi]
    m = upto - below
    small = np.empty(m)
    t = 0
    for i in range(_U0, _U(n)):
        b = min(np.int64((buf[i] - lo) * scale), top)
        if b_lo <= b <= b_hi:
            small[t] = buf[i]
            t += 1
    small.sort()
    return 0.5 * (small[k_lo - below] + small[k_hi - below])


@_jit
def _median_log_ratios(counts, logmeans, usable):
    """Per sample: median of log(count) - logmean over the ``usable`` genes where the count is > 0.

    Returns (medians, number of genes used). Per sample, a vectorised pass computes the log
    ratio of every gene into a scratch row, a second pass keeps the usable ones, and
    :func:`_median_finite` selects the median.
    """
    n_samples, n_genes = counts.shape
    medians = np.empty(n_samples)
    used = np.zeros(n_samples, dtype=np.int64)
    for s in prange(n_samples):
        row = counts[s]
        ratio = np.empty(n_genes)
        for g in range(_U0, _U(n_genes)):
            ratio[g] = _log(np.float64(row[g])) - logmeans[g]
        k = 0
        lo = np.inf
        hi = -np.inf
        for g in range(_U0, _U(n_genes)):
            if usable[g] and row[g] > 0:
                r = ratio[g]
                ratio[_U(k)] = r  # compact in place: k <= g
                lo = min(lo, r)
                hi = max(hi, r)
                k += 1
        used[s] = k
        medians[s] = _median_finite(ratio, k, lo, hi)
    return medians, used


def _check_counts(counts: Any, name: str = "counts") -> np.ndarray:
    if sparse.issparse(counts):
        raise TypeError(f"{name} must be a dense samples x genes array; pass {name}.toarray()")
    arr = np.asarray(counts)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x genes), got shape {arr.shape}")
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and arr.dtype not in _FLOATS):
        raise TypeError(f"{name} must hold integer or float32/float64 counts, got dtype {arr.dtype}")
    # Two compiled variants only: int64 and float64 (a copy of a samples x genes table is cheap).
    arr = arr.astype(np.int64 if arr.dtype.kind in "iu" else np.float64, order="C", copy=False)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DegflowInputError(f"{name} is empty (shape {arr.shape}); size factors need samples and genes")
    return arr


def _gene_chunks(n_genes: int, n_threads: int) -> np.ndarray:
    return np.linspace(0, n_genes, n_threads + 1).astype(np.int64)


def _raise_bad_counts(arr: np.ndarray, n_bad: np.ndarray, name: str) -> None:
    total = int(n_bad.sum())
    if not total:
        return
    with np.errstate(invalid="ignore"):
        where = ~np.isfinite(arr) | (arr < 0) if arr.dtype.kind == "f" else arr < 0
    s, g = np.argwhere(where)[0]
    raise DegflowInputError(
        f"{name} has {total} negative, NaN or infinite values (first at sample row {s}, gene column {g}, "
        f"value {arr[s, g]}); size factors need non-negative counts"
    )


def _size_factors_from(arr: np.ndarray, logmeans: np.ndarray, usable: np.ndarray, name: str) -> np.ndarray:
    medians, used = _median_log_ratios(arr, logmeans, usable)
    if np.any(used == 0):
        s = int(np.flatnonzero(used == 0)[0])
        raise DegflowInputError(
            f"{name} sample row {s} has no positive count among the {int(usable.sum())} genes usable for "
            "size factors; remove samples without counts"
        )
    return np.exp(medians)


def size_factors_ratio(counts: Any, *, n_threads: int | None = None) -> np.ndarray:
    """DESeq2 median-of-ratios size factors (R ``estimateSizeFactors``, pydeseq2 ``deseq2_norm``).

    For each sample, the median over genes of ``count / geometric mean of the gene's counts``;
    genes with a zero in any sample are left out (their geometric mean is zero).

    Parameters
    ----------
    counts
        Dense raw counts, **samples × genes** (pydeseq2's orientation; ``adata.X`` of a bulk
        AnnData), integer or float32/float64, non-negative. A DataFrame is accepted.
    n_threads
        Threads for this call; ``None``: numba's current setting.

    Returns
    -------
    float64 array, one size factor per sample (not rescaled: as DESeq2's ``type="ratio"``).

    Raises
    ------
    DegflowInputError
        Every gene has a zero in some sample (then use :func:`size_factors_poscounts`), or the
        counts hold negative/NaN/infinite values.
    """
    start = time.perf_counter()
    arr = _check_counts(counts)
    with threads(n_threads) as n:
        logmeans, _, n_bad = _log_geomeans(arr, False, _gene_chunks(arr.shape[1], n))
        _raise_bad_counts(arr, n_bad, "counts")
        usable = np.isfinite(logmeans)
        n_usable = int(usable.sum())
        if n_usable == 0:
            raise DegflowInputError(
                f"every one of the {arr.shape[1]} genes has a zero count in at least one of the {arr.shape[0]} "
                "samples, so the median-of-ratios size factors cannot be computed; use the 'poscounts' "
                "size factors (size_factors_poscounts) instead"
            )
        sf = _size_factors_from(arr, logmeans, usable, "counts")
    logger.info(
        "size_factors_ratio: %d samples x %d genes (%d without zeros), %.3f s",
        arr.shape[0],
        arr.shape[1],
        n_usable,
        time.perf_counter() - start,
    )
    return sf


def size_factors_poscounts(
    counts: Any, *, flavor: Literal["deseq2", "pydeseq2"] = "deseq2", n_threads: int | None = None
) -> np.ndarray:
    """DESeq2 ``estimateSizeFactors(type="poscounts")`` size factors, for counts with many zeros.

    The log geometric mean of a gene is ``sum(log(x[x > 0])) / n_samples``; each sample's factor
    is the median over genes where it has a positive count of ``log(x) - log geometric mean``,
    exponentiated; the factors are then divided by their geometric mean (which becomes 1).

    Parameters
    ----------
    counts
        Dense raw counts, **samples × genes**, integer or float32/float64, non-negative.
    flavor
        Which genes enter the medians. ``"deseq2"`` (R DESeq2, the default): every gene with a
        positive count. ``"pydeseq2"``: as pydeseq2 0.5.4 ``fit_size_factors("poscounts")``,
        only genes whose log geometric mean is > 0, which also drops genes whose positive counts
        are all 1 (on airway the two differ by up to 2 %).
    n_threads
        Threads for this call; ``None``: numba's current setting.

    Returns
    -------
    float64 array, one size factor per sample, geometric mean 1.

    Raises
    ------
    DegflowInputError
        All counts are zero, a sample has no positive count among the usable genes, or the counts
        hold negative/NaN/infinite values.
    """
    if flavor not in ("deseq2", "pydeseq2"):
        raise ValueError(f"flavor must be 'deseq2' or 'pydeseq2', got {flavor!r}")
    start = time.perf_counter()
    arr = _check_counts(counts)
    with threads(n_threads) as n:
        logmeans, n_pos, n_bad = _log_geomeans(arr, True, _gene_chunks(arr.shape[1], n))
        _raise_bad_counts(arr, n_bad, "counts")
        usable = n_pos > 0 if flavor == "deseq2" else logmeans > 0
        n_usable = int(usable.sum())
        if n_usable == 0:
            raise DegflowInputError(
                f"no gene has a {'positive count' if flavor == 'deseq2' else 'log geometric mean > 0'} in the "
                f"{arr.shape[0]} x {arr.shape[1]} counts; size factors cannot be computed"
            )
        sf = _size_factors_from(arr, logmeans, usable, "counts")
    sf = sf / np.exp(np.mean(np.log(sf)))
    logger.info(
        "size_factors_poscounts(%s): %d samples x %d genes (%d usable), %.3f s",
        flavor,
        arr.shape[0],
        arr.shape[1],
        n_usable,
        time.perf_counter() - start,
    )
    return sf


def _ref_size_factors_ratio(counts: Any) -> np.ndarray:
    """Plain NumPy twin of :func:`size_factors_ratio` (R's ``estimateSizeFactorsForMatrix``)."""
    x = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_x = np.log(x)
    logmeans = log_x.mean(axis=0)
    keep = np.isfinite(logmeans)
    return np.exp(np.median(log_x[:, keep] - logmeans[keep], axis=1))


def _ref_size_factors_poscounts(counts: Any, *, flavor: Literal["deseq2", "pydeseq2"] = "deseq2") -> np.ndarray:
    """Plain NumPy twin of :func:`size_factors_poscounts` (R DESeq2 ``geoMeanNZ`` path)."""
    x = np.asarray(counts, dtype=np.float64)
    log_x = np.zeros_like(x)
    np.log(x, out=log_x, where=x > 0)
    logmeans = log_x.mean(axis=0)
    usable = (x > 0).any(axis=0) if flavor == "deseq2" else logmeans > 0
    sf = np.array([np.exp(np.median((log_x[s] - logmeans)[usable & (x[s] > 0)])) for s in range(x.shape[0])])
    return sf / np.exp(np.mean(np.log(sf)))

