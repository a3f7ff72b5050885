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
within ~1.5 ulp, about scanpy's own float32 error (its result and ours differ by ~1e-7). The
size factors log integer counts < 2**16 by looking up a table made by ``np.log``, and call
``np.log`` for the others, so their logs are NumPy's (pydeseq2's); the medians are exact
order statistics, as ``np.median``.

Threads. ``n_threads=None`` uses numba's current setting (``numba.get_num_threads()``, which
:func:`set_threads` and :func:`degflow.runtime.configure_runtime` change). numba caches the
compiled kernels on disk (``cache=True``); on a read-only install set ``NUMBA_CACHE_DIR`` to a
writable folder *before numba is imported* (:func:`degflow.runtime.configure_runtime` does it).
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
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic, overload
from scipy import sparse

from degflow.errors import DegflowInputError
from degflow.runtime import set_threads, threads

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
_U0, _U1, _U2, _U3, _U4, _U64 = _U(0), _U(1), _U(2), _U(3), _U(4), _U(64)


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
#
# Median of ratios for S samples x G genes: per gene the mean log count, then per sample the
# median over genes of log(count) - mean log count. pydeseq2 logs the matrix twice, forms the
# S x G ratio matrix and calls np.median (a selection per sample). Here:
#
# 1. Windows (`_sf_window_hist`, `_sf_windows`): the ratios of one gene block in 16 (blocks of
#    64 adjacent genes) are binned per sample. The bins around the middle rank, widened by 4
#    standard deviations of the rank of a subsample median, give each sample a window [lo, hi]
#    that very likely holds its median (on 60,000 genes, ~8 % of its ratios).
# 2. One pass (`_sf_pass`), parallel over blocks of genes (a block of all samples stays in
#    cache): each count is logged once (a table look-up for integers), the block's mean logs
#    follow, then each ratio of the block is compared with its sample's window: ratios below
#    it are counted, ratios inside it are kept.
# 3. Selection (`_sf_select`): if (number below) <= middle rank < (number below + number
#    kept), the median is an order statistic of the kept ratios, found exactly. Otherwise (a
#    window that missed, or more kept ratios than buffered) the sample is redone over all
#    its genes (`_sf_exact`).
#
# The windows only decide how many ratios are kept: the result is the exact median either
# way, the same for any thread count and memory layout.

# log(k) for k < 2**16, computed by np.log: integer counts (and integer-valued floats) are
# logged by one table load, ~5x cheaper than the vectorised `_log` on this machine, and get
# NumPy's own value (as pydeseq2 does). Larger or fractional values call np.log (libm).
_LOG_TABLE_SIZE = 1 << 16
with np.errstate(divide="ignore"):
    _LOG_TABLE = np.log(np.arange(_LOG_TABLE_SIZE, dtype=np.float64))
_LOG_TABLE.flags.writeable = False

_SF_BLOCK = 64  # genes per sampled block (512-byte runs of int64 counts: prefetched)
_SF_EVERY = 16  # one block in _SF_EVERY is sampled for the windows
_SF_MIN_SAMPLED = 1000  # fewer sampled ratios for a sample: no window (all its ratios are kept)
_SF_Z = 4.0  # window half-width, in standard deviations of the subsample median's rank
_SF_BINS = 2048  # histogram of the sampled ratios: 2048 bins of 1/128 over [-8, 8)
_SF_LO = -8.0
_SF_SCALE = 128.0
_SF_TOP = _SF_BINS - 0.5
_SF_MODES = {"ratio": 0, "deseq2": 1, "pydeseq2": 2}  # which genes are usable, see `_block_means`


def _log_count(x, table):
    """``log(x)`` in float64 for a count ``x`` of any type: -inf for 0, nan for x < 0 or nan (overloaded)."""


@overload(_log_count, inline="always")
def _log_count_impl(x, table):
    if isinstance(x, types.Integer):

        def impl(x, table):
            u = _U(x)  # a negative count becomes huge: it goes to np.log, which gives nan
            return table[u] if u < _U(table.shape[0]) else np.log(np.float64(x))

        return impl

    def impl_float(x, table):
        v = np.float64(x)
        if v >= 0.0 and v < np.float64(table.shape[0]):  # false for nan; keeps the int conversion in range
            u = _U(np.int64(v))
            if np.float64(u) == v:
                return table[u]
        return np.log(v)

    return impl_float


def _load_block(counts, table, g0, w, logs, acc, pos, bad):
    """Log counts[:, g0:g0 + w] into logs[:, :w]; per gene, the sum of the logs of the positive
    counts (``acc``), their number (``pos``) and the number of negative/nan/inf counts (``bad``).
    Samples are summed in order whatever the layout (overloaded on it)."""


@overload(_load_block, inline="always")
def _load_block_impl(counts, table, g0, w, logs, acc, pos, bad):
    if counts.layout == "F":  # genes x samples in memory: a gene's counts are contiguous

        def impl_f(counts, table, g0, w, logs, acc, pos, bad):
            for t in range(w):
                a = 0.0
                n_pos = 0
                n_bad = 0
                for s in range(_U0, _U(counts.shape[0])):
                    lx = _log_count(counts[s, g0 + t], table)
                    p = lx > -np.inf
                    logs[s, t] = lx
                    a += lx if p else 0.0
                    n_pos += p
                    n_bad += (lx != lx) | (lx == np.inf)
                acc[t] = a
                pos[t] = n_pos
                bad[t] = n_bad

        return impl_f

    def impl_c(counts, table, g0, w, logs, acc, pos, bad):  # samples x genes: the block is S row segments
        for t in range(w):
            acc[t] = 0.0
            pos[t] = 0
            bad[t] = 0
        # 2-D indexing throughout: a row view per (block, sample) costs more than it saves
        for s in range(_U0, _U(counts.shape[0])):
            for t in range(_U0, _U(w)):  # the look-ups: scalar
                logs[s, t] = _log_count(counts[s, _U(g0) + t], table)
            for t in range(_U0, _U(w)):  # the sums: vectorised
                lx = logs[s, t]
                p = lx > -np.inf
                acc[t] += lx if p else 0.0
                pos[t] += p
                bad[t] += (lx != lx) | (lx == np.inf)

    return impl_c


@_jit(parallel=False, inline="always")
def _block_means(acc, pos, w, n_samples, mode, lm, use):
    """Mean logs ``lm`` (DESeq2's log geometric means, zeros counting as log 1 = 0 as in
    ``geoMeanNZ``) and usable genes ``use``: mode 0 (ratio) no zero count; 1 (poscounts, DESeq2)
    a positive count; 2 (poscounts, pydeseq2) a mean log > 0."""
    for t in range(w):
        m = acc[t] / n_samples
        lm[t] = m
        use[t] = (pos[t] == n_samples) if mode == 0 else ((pos[t] > 0) if mode == 1 else (m > 0.0))


@_jit
def _sf_window_hist(counts, table, mode, starts, bounds):
    """Per gene chunk ``c``, over the sampled blocks that start in it (``starts[bounds[c]:bounds[c + 1]]``):
    for each sample a histogram of its usable log ratios, ``_SF_BINS`` bins over [-8, 8) (outside:
    the end bins)."""
    n_samples, n_genes = counts.shape
    n_chunks = bounds.shape[0] - 1
    hist = np.zeros((n_chunks, n_samples, _SF_BINS), dtype=np.int32)
    for c in prange(n_chunks):
        logs = np.empty((n_samples, _SF_BLOCK))
        acc = np.empty(_SF_BLOCK)
        pos = np.empty(_SF_BLOCK, dtype=np.int64)
        bad = np.empty(_SF_BLOCK, dtype=np.int64)
        lm = np.empty(_SF_BLOCK)
        use = np.empty(_SF_BLOCK, dtype=np.bool_)
        h = hist[c]
        for j in range(bounds[c], bounds[c + 1]):
            g0 = starts[j]
            w = min(_SF_BLOCK, n_genes - g0)
            _load_block(counts, table, g0, w, logs, acc, pos, bad)
            _block_means(acc, pos, w, n_samples, mode, lm, use)
            for s in range(_U0, _U(n_samples)):
                for t in range(_U0, _U(w)):
                    lx = logs[s, t]
                    if use[t] and lx > -np.inf:
                        v = (lx - lm[t] - _SF_LO) * _SF_SCALE
                        v = v if v > 0.0 else 0.0  # also maps nan (from bad counts) to bin 0
                        v = v if v < _SF_TOP else _SF_TOP
                        h[s, _U(np.int64(v))] += 1
    return hist


@_jit
def _sf_windows(hist, z, min_sampled):
    """Per sample, from the histograms of the sampled ratios (one per gene chunk): a window
    (lo, hi) around the median and, per chunk, how many sampled ratios fall in it; (-inf, inf)
    and -1 when the sample has fewer than ``min_sampled`` usable sampled ratios."""
    n_chunks, n_samples, n_bins = hist.shape
    lo = np.full(n_samples, -np.inf)
    hi = np.full(n_samples, np.inf)
    inside = np.full((n_chunks, n_samples), -1, dtype=np.int64)
    for s in prange(n_samples):
        tot = np.zeros(n_bins, dtype=np.int64)
        for c in range(n_chunks):
            for b in range(n_bins):
                tot[b] += hist[c, s, b]
        n = tot.sum()
        if n < min_sampled:
            continue
        d = np.int64(np.ceil(0.5 * z * np.sqrt(n))) + 1  # rank sd of a subsample median: sqrt(n)/2
        r_lo = (n - 1) // 2 - d
        r_hi = n // 2 + d
        if r_lo < 0 or r_hi >= n:
            continue
        cum = 0
        b_lo = -1
        b_hi = n_bins - 1
        for b in range(n_bins):
            if b_lo < 0 and cum + tot[b] > r_lo:
                b_lo = b
            cum += tot[b]
            if cum > r_hi:
                b_hi = b
                break
        lo[s] = -np.inf if b_lo == 0 else _SF_LO + b_lo / _SF_SCALE
        hi[s] = np.inf if b_hi == n_bins - 1 else _SF_LO + (b_hi + 1) / _SF_SCALE
        for c in range(n_chunks):
            k = 0
            for b in range(b_lo, b_hi + 1):
                k += hist[c, s, b]
            inside[c, s] = k
    return lo, hi, inside


@_jit
def _sf_pass(counts, table, mode, bounds, width, lo, hi, offsets):
    """The one pass over the counts (parallel over the gene chunks ``bounds``, in blocks of
    ``width`` genes). Returns per gene the mean log, usable flag and number of positive and of
    bad counts; per chunk and sample the number of usable ratios, of those below the sample's
    window and of those in it, and the ratios in it (sample ``s`` owns
    ``kept[offsets[c * S + s]:offsets[c * S + s + 1]]``; beyond that they are counted, not kept).
    """
    n_samples, n_genes = counts.shape
    n_chunks = bounds.shape[0] - 1
    logmeans = np.empty(n_genes)
    usable = np.empty(n_genes, dtype=np.bool_)
    n_pos = np.empty(n_genes, dtype=np.int64)
    n_bad = np.empty(n_genes, dtype=np.int64)
    used = np.zeros((n_chunks, n_samples), dtype=np.int64)
    below = np.zeros((n_chunks, n_samples), dtype=np.int64)
    n_in = np.zeros((n_chunks, n_samples), dtype=np.int64)
    kept = np.empty(offsets[-1])
    for c in prange(n_chunks):
        logs = np.empty((n_samples, width))
        acc = np.empty(width)
        pos = np.empty(width, dtype=np.int64)
        bad = np.empty(width, dtype=np.int64)
        lm = np.empty(width)
        use = np.empty(width, dtype=np.bool_)
        lm_use = np.empty(width)
        g0 = bounds[c]
        while g0 < bounds[c + 1]:
            w = min(width, bounds[c + 1] - g0)
            _load_block(counts, table, g0, w, logs, acc, pos, bad)
            _block_means(acc, pos, w, n_samples, mode, lm, use)
            for t in range(w):
                logmeans[g0 + t] = lm[t]
                usable[g0 + t] = use[t]
                n_pos[g0 + t] = pos[t]
                n_bad[g0 + t] = bad[t]
                # nan for a gene that is not usable: its ratios are then nan, which no comparison counts
                lm_use[t] = lm[t] if use[t] else np.nan
            for s in range(_U0, _U(n_samples)):
                lo_s = lo[s]
                hi_s = hi[s]
                base = offsets[c * n_samples + s]
                last = offsets[c * n_samples + s + _U1] - base - 1
                k = n_in[c, s]
                n_used = 0
                n_below = 0
                t0 = _U0
                while t0 < _U(w):  # 64 genes at a time: a vectorised pass, then the kept ones
                    t1 = min(t0 + _U64, _U(w))
                    mask = _U0
                    for t in range(t0, t1):
                        r = logs[s, t] - lm_use[t]
                        ok = r > -np.inf  # false for a zero count (-inf) and an unusable gene (nan)
                        n_used += ok
                        n_below += ok & (r < lo_s)
                        mask |= _U(ok & (r >= lo_s) & (r <= hi_s)) << (t - t0)
                    while mask:  # only the ~5 % of ratios in the window: one step per set bit
                        t = t0 + _U(trailing_zeros(mask))
                        kept[_U(base + min(k, last))] = logs[s, t] - lm[t]
                        k += 1
                        mask &= mask - _U1
                    t0 = t1
                used[c, s] += n_used
                below[c, s] += n_below
                n_in[c, s] = k
            g0 += w
    return logmeans, usable, n_pos, n_bad, used, below, n_in, kept


@_jit(parallel=False)
def _select_pair(buf, n, k_lo, k_hi):
    """``0.5 * (v[k_lo] + v[k_hi])`` with ``v = sorted(buf[:n])``, for finite values; ``buf`` is unchanged.

    A histogram selection, ~4x faster than numba's quickselect here: one pass counts the values
    into ~n/8 equal-width bins, which locates the bin(s) holding ranks k_lo and k_hi; only their
    few values are then sorted. The value -> bin map is monotone, so the ranks are exact.
    """
    lo = np.inf
    hi = -np.inf
    for i in range(_U0, _U(n)):
        lo = min(lo, buf[i])
        hi = max(hi, buf[i])
    if lo == hi:
        return lo
    n_bins = min(max(n // 8, 16), 1 << 16)
    scale = n_bins / (hi - lo)
    top = n_bins - 0.5
    hist = np.zeros(n_bins, dtype=np.int64)
    for i in range(_U0, _U(n)):
        v = (buf[i] - lo) * scale
        v = v if v > 0.0 else 0.0  # nan (0 * inf when hi - lo underflows) goes to bin 0: still monotone
        hist[np.int64(v if v < top else top)] += 1
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
    small = np.empty(upto - below)
    t = 0
    for i in range(_U0, _U(n)):
        v = (buf[i] - lo) * scale
        v = v if v > 0.0 else 0.0
        b = np.int64(v if v < top else top)
        if b_lo <= b <= b_hi:
            small[t] = buf[i]
            t += 1
    small.sort()
    return 0.5 * (small[k_lo - below] + small[k_hi - below])


@_jit
def _sf_select(kept, offsets, used, below, n_in):
    """Per sample: the median log ratio from the kept ratios, whether that worked (else the
    sample needs `_sf_exact`), and the number of usable ratios."""
    n_chunks, n_samples = used.shape
    medians = np.full(n_samples, np.nan)
    done = np.zeros(n_samples, dtype=np.bool_)
    n_used = np.zeros(n_samples, dtype=np.int64)
    for s in prange(n_samples):
        n = 0
        n_below = 0
        m = 0
        overflow = False
        for c in range(n_chunks):
            n += used[c, s]
            n_below += below[c, s]
            m += n_in[c, s]
            overflow |= n_in[c, s] > offsets[c * n_samples + s + 1] - offsets[c * n_samples + s]
        n_used[s] = n
        if n == 0:
            done[s] = True  # no median: the caller raises
            continue
        k_lo = (n - 1) // 2
        k_hi = n // 2
        if overflow or n_below > k_lo or n_below + m <= k_hi:
            continue
        buf = np.empty(m)
        t = 0
        for c in range(n_chunks):
            for i in range(offsets[c * n_samples + s], offsets[c * n_samples + s] + n_in[c, s]):
                buf[t] = kept[i]
                t += 1
        medians[s] = _select_pair(buf, m, k_lo - n_below, k_hi - n_below)
        done[s] = True
    return medians, done, n_used


@_jit
def _sf_exact(counts, table, logmeans, usable, samples):
    """Median log ratio of each sample in ``samples`` over all its usable genes (the fallback)."""
    n_genes = counts.shape[1]
    out = np.empty(samples.shape[0])
    for i in prange(samples.shape[0]):
        s = samples[i]
        buf = np.empty(n_genes)
        k = 0
        for g in range(n_genes):
            lx = _log_count(counts[s, g], table)
            if usable[g] and lx > -np.inf:
                buf[k] = lx - logmeans[g]
                k += 1
        out[i] = np.nan if k == 0 else _select_pair(buf, k, (k - 1) // 2, k // 2)
    return out


# int32/int64/float32/float64 counts are read as they are, C- or F-ordered; other dtypes are
# converted once (one compiled variant per dtype and layout).
_COUNT_DTYPES = tuple(np.dtype(t) for t in (np.int32, np.int64, np.float32, np.float64))


# Not degflow.checks.check_count_frame (a user's genes x samples DataFrame, checked value by value): this converts a
# dense samples x genes array to a dtype and layout the kernels compile for, and raises TypeError/ValueError for a
# caller's mistake; negative/NaN values are counted by the kernels in the pass that does the work
# (_raise_bad_counts), so the data are read once.
def _as_count_array(counts: Any, name: str = "counts") -> np.ndarray:
    if sparse.issparse(counts):
        raise TypeError(f"{name} must be a dense samples x genes array; pass {name}.toarray()")
    arr = np.asarray(counts)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x genes), got shape {arr.shape}")
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and arr.dtype.itemsize not in (4, 8)):
        raise TypeError(f"{name} must hold integer or float32/float64 counts, got dtype {arr.dtype}")
    if arr.dtype not in _COUNT_DTYPES:  # small or unsigned ints, non-native byte order
        kind = "f" if arr.dtype.kind == "f" or arr.dtype == np.uint64 else "i"
        arr = arr.astype(np.dtype(f"{kind}{arr.dtype.itemsize if kind == 'f' else 8}").newbyteorder("="))
    if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
        arr = np.ascontiguousarray(arr)
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


def _median_log_ratios(arr: np.ndarray, mode: str, n_threads: int) -> dict[str, Any]:
    """Steps 1-3 above: per-gene mean logs and usable flags, per-sample median log ratios.

    Returns a dict with ``logmeans``, ``usable``, ``n_bad`` (per gene), ``medians`` and
    ``n_used`` (per sample), and ``n_exact`` (samples redone by the fallback).
    """
    n_samples, n_genes = arr.shape
    code = _SF_MODES[mode]
    bounds = _gene_chunks(n_genes, n_threads)
    width = np.diff(bounds)
    if n_genes >= _SF_EVERY * _SF_MIN_SAMPLED:  # else too few sampled genes for a window
        starts = np.arange(0, n_genes, _SF_BLOCK * _SF_EVERY, dtype=np.int64)
        in_chunk = np.searchsorted(starts, bounds)  # the blocks starting in each gene chunk
        hist = _sf_window_hist(arr, _LOG_TABLE, code, starts, in_chunk)
        lo, hi, inside = _sf_windows(hist, _SF_Z, _SF_MIN_SAMPLED)
        cum = np.concatenate([[0], np.cumsum(np.minimum(starts + _SF_BLOCK, n_genes) - starts)])
        sampled = cum[in_chunk[1:]] - cum[in_chunk[:-1]]  # sampled genes per chunk
        # expected kept ratios per chunk and sample: the sampled share, scaled to the chunk's genes
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = inside * (width / sampled)[:, None]
            expect = np.where((inside >= 0) & (sampled[:, None] > 0), scaled, width[:, None])
    else:
        lo, hi = np.full(n_samples, -np.inf), np.full(n_samples, np.inf)
        expect = np.repeat(width[:, None].astype(np.float64), n_samples, axis=1)
    # buffer per chunk and sample: the expected number of kept ratios + 30 % + 4 sd + 64 (a
    # sample that overflows is redone by `_sf_exact`), at most the chunk's genes
    cap = np.minimum(np.ceil(1.3 * expect + 4 * np.sqrt(expect)).astype(np.int64) + 64, width[:, None])
    offsets = np.zeros(cap.size + 1, dtype=np.int64)
    np.cumsum(np.maximum(cap, 1), out=offsets[1:])  # flat: chunk-major, then sample
    # a block of all samples' logs (~128 KiB) stays in L2 between its two uses
    block = int(np.clip(16384 // n_samples, 8, 2048))
    logmeans, usable, _, n_bad, used, below, n_in, kept = _sf_pass(
        arr, _LOG_TABLE, code, bounds, block, lo, hi, offsets
    )
    out = {"logmeans": logmeans, "usable": usable, "n_bad": n_bad, "n_exact": 0}
    if n_bad.any() or not usable.any():
        return out  # the caller raises
    medians, done, n_used = _sf_select(kept, offsets, used, below, n_in)
    redo = np.flatnonzero(~done)
    if redo.size:
        medians[redo] = _sf_exact(arr, _LOG_TABLE, logmeans, usable, redo)
        logger.debug("size factors: %d of %d samples redone over all genes (window missed)", redo.size, n_samples)
    out.update(medians=medians, n_used=n_used, n_exact=int(redo.size))
    return out


def _size_factors_from(res: dict[str, Any], name: str) -> np.ndarray:
    if np.any(res["n_used"] == 0):
        s = int(np.flatnonzero(res["n_used"] == 0)[0])
        raise DegflowInputError(
            f"{name} sample row {s} has no positive count among the {int(res['usable'].sum())} genes usable for "
            "size factors; remove samples without counts"
        )
    return np.exp(res["medians"])


def size_factors_ratio(counts: Any, *, n_threads: int | None = None) -> np.ndarray:
    """DESeq2 median-of-ratios size factors (R ``estimateSizeFactors``, pydeseq2 ``deseq2_norm``).

    For each sample, the median over genes of ``count / geometric mean of the gene's counts``;
    genes with a zero in any sample are left out (their geometric mean is zero).

    Parameters
    ----------
    counts
        Dense raw counts, **samples × genes** (pydeseq2's orientation; ``adata.X`` of a bulk
        AnnData), integer or float32/float64, non-negative. A DataFrame is accepted. C- and
        F-ordered (e.g. ``genes_by_samples.T``) int32/int64/float32/float64 arrays are read in
        place; other dtypes and strided views are converted first.
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
    arr = _as_count_array(counts)
    with threads(n_threads) as n:
        res = _median_log_ratios(arr, "ratio", n)
    _raise_bad_counts(arr, res["n_bad"], "counts")
    n_usable = int(res["usable"].sum())
    if n_usable == 0:
        raise DegflowInputError(
            f"every one of the {arr.shape[1]} genes has a zero count in at least one of the {arr.shape[0]} "
            "samples, so the median-of-ratios size factors cannot be computed; use the 'poscounts' "
            "size factors (size_factors_poscounts) instead"
        )
    sf = _size_factors_from(res, "counts")
    logger.info(
        "size_factors_ratio: %d samples x %d genes (%d without zeros), %d threads, %.3f s",
        arr.shape[0],
        arr.shape[1],
        n_usable,
        n,
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
        Dense raw counts, **samples × genes**, integer or float32/float64, non-negative (as for
        :func:`size_factors_ratio`).
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
    arr = _as_count_array(counts)
    with threads(n_threads) as n:
        res = _median_log_ratios(arr, flavor, n)
    _raise_bad_counts(arr, res["n_bad"], "counts")
    n_usable = int(res["usable"].sum())
    if n_usable == 0:
        raise DegflowInputError(
            f"no gene has a {'positive count' if flavor == 'deseq2' else 'log geometric mean > 0'} in the "
            f"{arr.shape[0]} x {arr.shape[1]} counts; size factors cannot be computed"
        )
    sf = _size_factors_from(res, "counts")
    sf = sf / np.exp(np.mean(np.log(sf)))
    logger.info(
        "size_factors_poscounts(%s): %d samples x %d genes (%d usable), %d threads, %.3f s",
        flavor,
        arr.shape[0],
        arr.shape[1],
        n_usable,
        n,
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

