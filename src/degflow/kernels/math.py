"""Scalar math for the numba kernels: lgamma/digamma, NumPy's pairwise sum, the p x p algebra, fast logs.

Every function here is a numba function (made by :func:`degflow.kernels.jit.jit`) called from inside
other kernels; most are inlined (``inline="always"``). Scratch arrays are passed in, nothing allocates.

====================================================  ===================================================
:func:`pairwise_sum`                                  ``np.sum``'s pairwise summation order over ``a[lo:lo+n]``
:func:`lgamma`, :func:`digamma`, :func:`betaln`       scipy's algorithms (cephes ``lgam``, cephes/Boost
                                                      ``psi``, cephes ``lbeta``), bit-identical to
                                                      ``gammaln``/``digamma`` on every value tested
:func:`norm_sf`                                       the standard normal upper tail (scipy's ``ndtr(-x)``)
:func:`xtwx`, :func:`cholesky_solve`                  ``X' diag(w) X`` and a Cholesky solve (p x p)
:func:`lu_factor`, :func:`lu_solve`, :func:`lu_inv`,  LU with partial pivoting as LAPACK's ``getrf``
:func:`lu_inverse`                                    (``numpy.linalg.det``/``solve``/``inv``)
:func:`log1p`, :func:`log1p_f32`, :func:`log`,        fdlibm/musl ``log1p``/``log`` written branch-free so
:func:`log1p_any`                                     that loops over them vectorise (float64 within 1 ulp
                                                      of NumPy; float32 ``log1p`` < 0.84 ulp)
:func:`log1p_array`, :func:`log_array`                the fast logs over a 1-D array (tests, benchmarks)
:func:`nb_nll`                                        pydeseq2's ``utils.nb_nll`` for one gene
====================================================  ===================================================

Used by :mod:`degflow.kernels.deseq` (the R-faithful port), :mod:`degflow.kernels.inference`
(:class:`degflow.de.inference.NumbaInference`) and :mod:`degflow.kernels.sparse`.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.extending import intrinsic, overload

from degflow.kernels.jit import jit

__all__ = [
    "betaln", "cholesky_solve", "digamma", "lgamma", "log", "log1p", "log1p_any", "log1p_array", "log1p_f32",
    "log_array", "lu_factor", "lu_inv", "lu_inverse", "lu_solve", "nb_nll", "norm_sf", "pairwise_sum", "xtwx",
]

_SQRT1_2 = 0.70710678118654752440

# ---------------------------------------------------------------------------------------------
# Scalar helpers (inlined into the kernels)
# ---------------------------------------------------------------------------------------------


@jit(parallel=False, inline="always")
def _pairwise_block(a, lo, n):  # pragma: no cover - compiled
    """NumPy's ``pairwise_sum`` leaf (n <= 128): a plain loop below 8, else 8 accumulators."""
    if n < 8:
        res = 0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    i = 8
    stop = n - (n % 8)
    while i < stop:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@jit(parallel=False)
def pairwise_sum(a, lo, n):  # pragma: no cover - compiled
    """Sum of ``a[lo:lo+n]`` in NumPy's order (``pairwise_sum``: blocks of <= 128 halved recursively).

    The recursion is unrolled with explicit stacks (a recursive numba function cannot be cached).
    """
    if n <= 128:
        return _pairwise_block(a, lo, n)
    slo = np.empty(64, dtype=np.int64)
    sn = np.empty(64, dtype=np.int64)
    sstage = np.zeros(64, dtype=np.int64)
    vals = np.empty(64)
    top = 0
    vt = 0
    slo[0] = lo
    sn[0] = n
    while top >= 0:
        k = sn[top]
        start = slo[top]
        if k <= 128:
            vals[vt] = _pairwise_block(a, start, k)
            vt += 1
            top -= 1
            continue
        n2 = k // 2
        n2 -= n2 % 8
        st = sstage[top]
        if st == 0:
            sstage[top] = 1
            top += 1
            slo[top] = start
            sn[top] = n2
            sstage[top] = 0
        elif st == 1:
            sstage[top] = 2
            top += 1
            slo[top] = start + n2
            sn[top] = k - n2
            sstage[top] = 0
        else:
            vals[vt - 2] = vals[vt - 2] + vals[vt - 1]
            vt -= 1
            top -= 1
    return vals[0]


_LGAM_A = np.array([8.11614167470508450300e-4, -5.95061904284301438324e-4, 7.93650340457716943945e-4,
                    -2.77777777730099687205e-3, 8.33333333333331927722e-2])
_LGAM_B = np.array([-1.37825152569120859100e3, -3.88016315134637840924e4, -3.31612992738871184744e5,
                    -1.16237097492762307383e6, -1.72173700820839662146e6, -8.53555664245765465627e5])
_LGAM_C = np.array([-3.51815701436523470549e2, -1.70642106651881159223e4, -2.20528590553854454839e5,
                    -1.13933444367982507207e6, -2.53252307177582951285e6, -2.01889141433532773231e6])
_PSI_A = np.array([8.33333333333333333333e-2, -2.10927960927960927961e-2, 7.57575757575757575758e-3,
                   -4.16666666666666666667e-3, 3.96825396825396825397e-3, -8.33333333333333333333e-3,
                   8.33333333333333333333e-2])
_PSI_P = np.array([-0.0020713321167745952, -0.045251321448739056, -0.28919126444774784, -0.65031853770896507,
                   -0.32555031186804491, 0.25479851061131551])
_PSI_Q = np.array([-0.55789841321675513e-6, 0.0021284987017821144, 0.054151797245674225, 0.43593529692665969,
                   1.4606242909763515, 2.0767117023730469, 1.0])
_PSI_Y = float(np.float32(0.99558162689208984))
_PSI_ROOT1 = 1569415565.0 / 1073741824.0
_PSI_ROOT2 = (381566830.0 / 1073741824.0) / 1073741824.0
_PSI_ROOT3 = 0.9016312093258695918615325266959189453125e-19


@jit(parallel=False, inline="always")
def _polevl(x, c):  # pragma: no cover - compiled
    a = c[0]
    for i in range(1, c.shape[0]):
        a = a * x + c[i]
    return a


@jit(parallel=False, inline="always")
def _p1evl(x, c):  # pragma: no cover - compiled
    a = x + c[0]
    for i in range(1, c.shape[0]):
        a = a * x + c[i]
    return a


@jit(parallel=False)
def lgamma(x):  # pragma: no cover - compiled
    """log Gamma(x) for x > 0, cephes ``lgam`` as in scipy's ``gammaln`` (bit-identical on tested values)."""
    if x < 13.0:
        z = 1.0
        p = 0.0
        u = x
        while u >= 3.0:
            p -= 1.0
            u = x + p
            z *= u
        while u < 2.0:
            z /= u
            p += 1.0
            u = x + p
        if z < 0.0:
            z = -z
        if u == 2.0:
            return math.log(z)
        p -= 2.0
        x = x + p
        p = x * _polevl(x, _LGAM_B) / _p1evl(x, _LGAM_C)
        return math.log(z) + p
    q = (x - 0.5) * math.log(x) - x + 0.91893853320467274178
    if x > 1.0e8:
        return q
    p = 1.0 / (x * x)
    if x >= 1000.0:
        q += ((7.9365079365079365079365e-4 * p - 2.7777777777777777777778e-3) * p + 0.0833333333333333333333) / x
    else:
        q += _polevl(p, _LGAM_A) / x
    return q


@jit(parallel=False)
def digamma(x):  # pragma: no cover - compiled
    """psi(x) for x > 0, cephes ``psi`` with Boost's rational form on [1, 2], as scipy's ``digamma``."""
    y = 0.0
    if x <= 10.0 and x == math.floor(x):
        for i in range(1, int(x)):
            y += 1.0 / i
        return y - 0.57721566490153286061
    if x < 1.0:
        y -= 1.0 / x
        x += 1.0
    elif x < 10.0:
        while x > 2.0:
            x -= 1.0
            y += 1.0 / x
    if 1.0 <= x <= 2.0:
        g = x - _PSI_ROOT1
        g -= _PSI_ROOT2
        g -= _PSI_ROOT3
        r = _polevl(x - 1.0, _PSI_P) / _polevl(x - 1.0, _PSI_Q)
        return y + (g * _PSI_Y + g * r)
    if x < 1.0e17:
        z = 1.0 / (x * x)
        yy = z * _polevl(z, _PSI_A)
    else:
        yy = 0.0
    return y + (math.log(x) - 0.5 / x - yy)


@jit(parallel=False, inline="always")
def norm_sf(x):  # pragma: no cover - compiled
    """Standard normal upper tail, as scipy's ``ndtr(-x)`` (cephes branch structure)."""
    a = -x
    t = a * _SQRT1_2
    z = abs(t)
    if z < _SQRT1_2:
        return 0.5 + 0.5 * math.erf(t)
    y = 0.5 * math.erfc(z)
    if t > 0:
        y = 1.0 - y
    return y


@jit(parallel=False, inline="always")
def xtwx(X, w, A):  # pragma: no cover - compiled
    """A = X' diag(w) X (p x p, both triangles)."""
    m, p = X.shape
    for i in range(p):
        for j in range(i + 1):
            s = 0.0
            for k in range(m):
                s += X[k, i] * w[k] * X[k, j]
            A[i, j] = s
            A[j, i] = s


@jit(parallel=False)
def cholesky_solve(A, b, L, out):  # pragma: no cover - compiled
    """Solve ``A out = b`` for symmetric positive-definite A (p x p); False if A is not PD."""
    p = A.shape[0]
    for j in range(p):
        s = A[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        L[j, j] = d
        for i in range(j + 1, p):
            s = A[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / d
    for i in range(p):
        s = b[i]
        for k in range(i):
            s -= L[i, k] * out[k]
        out[i] = s / L[i, i]
    for i in range(p - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, p):
            s -= L[k, i] * out[k]
        out[i] = s / L[i, i]
    return True


@jit(parallel=False)
def lu_factor(A, LU, piv):  # pragma: no cover - compiled
    """LU factors of A (p x p) with partial pivoting (LAPACK ``getrf``'s pivot choice) in ``LU``/``piv``.

    Returns ``(ok, sign, log|det A|)``; ``ok`` is False (and the factorisation stops) at a pivot that is
    0 (then ``sign`` is 0 and the log -inf, so ``sign * exp(log)`` is NumPy's ``det`` of 0) or NaN.
    """
    p = A.shape[0]
    for i in range(p):
        piv[i] = i
        for j in range(p):
            LU[i, j] = A[i, j]
    sign = 1.0
    logdet = 0.0
    for k in range(p):
        r = k
        big = abs(LU[k, k])
        for i in range(k + 1, p):
            v = abs(LU[i, k])
            if v > big:
                big = v
                r = i
        if not big > 0.0:
            if big == 0.0:
                return False, 0.0, -np.inf
            return False, np.nan, np.nan
        if r != k:
            for j in range(p):
                tmp = LU[k, j]
                LU[k, j] = LU[r, j]
                LU[r, j] = tmp
            t = piv[k]
            piv[k] = piv[r]
            piv[r] = t
            sign = -sign
        d = LU[k, k]
        if d < 0.0:
            sign = -sign
        logdet += math.log(abs(d))
        for i in range(k + 1, p):
            f = LU[i, k] / d
            LU[i, k] = f
            for j in range(k + 1, p):
                LU[i, j] -= f * LU[k, j]
    return True, sign, logdet


@jit(parallel=False, inline="always")
def lu_solve(LU, piv, b, out):  # pragma: no cover - compiled
    """Solve ``A out = b`` from the factors of :func:`lu_factor`."""
    p = LU.shape[0]
    for i in range(p):
        s = b[piv[i]]
        for k in range(i):
            s -= LU[i, k] * out[k]
        out[i] = s
    for i in range(p - 1, -1, -1):
        s = out[i]
        for k in range(i + 1, p):
            s -= LU[i, k] * out[k]
        out[i] = s / LU[i, i]


@jit(parallel=False)
def lu_inv(LU, piv, col, inv):  # pragma: no cover - compiled
    """``inv = A^-1`` from the factors of :func:`lu_factor`, column by column (``col``: scratch of length p)."""
    p = LU.shape[0]
    for c in range(p):
        for i in range(p):
            s = 1.0 if piv[i] == c else 0.0
            for k in range(i):
                s -= LU[i, k] * col[k]
            col[i] = s
        for i in range(p - 1, -1, -1):
            s = col[i]
            for k in range(i + 1, p):
                s -= LU[i, k] * col[k]
            col[i] = s / LU[i, i]
        for i in range(p):
            inv[i, c] = col[i]


@jit(parallel=False)
def lu_inverse(A, LU, piv, inv, col):  # pragma: no cover - compiled
    """Inverse and log|det| of A (p x p) by LU with partial pivoting; ``(ok, logabsdet)``."""
    ok, _sign, logdet = lu_factor(A, LU, piv)
    if not ok:
        return False, -np.inf
    lu_inv(LU, piv, col, inv)
    return True, logdet



@jit(parallel=False)
def betaln(a, b):  # pragma: no cover - compiled
    """log Beta(a, b) for a, b > 0 with cephes ``lbeta``'s asymptotic branch for a >> b."""
    if a < b:
        a, b = b, a
    if a > 1.0e6 * b and a > 1.0e6:
        r = lgamma(b) - b * math.log(a)
        r += b * (1.0 - b) / (2.0 * a)
        r += b * (1.0 - b) * (1.0 - 2.0 * b) / (12.0 * a * a)
        r += -b * b * (1.0 - b) * (1.0 - b) / (12.0 * a * a * a)
        return r
    return lgamma(a) + lgamma(b) - lgamma(a + b)


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


@jit(parallel=False, inline="always")
def _log_poly(f, k):
    """log(1 + f) + k*log(2) for f in [sqrt(2)/2 - 1, sqrt(2) - 1] (fdlibm kernel, < 1 ulp)."""
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    return s * (hfsq + t2 + t1) + k * _LN2_LO - hfsq + f + k * _LN2_HI


@jit(parallel=False, inline="always")
def log1p(x):
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


# A float32 twin of log1p on purpose: float32 data stay float32 (8 lanes per AVX2 vector instead of 4), with
# musl's float32 polynomial (normalize_log1p on float32 data; within 0.84 ulp, see the docstring).
@jit(parallel=False, inline="always")
def log1p_f32(x):
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


@jit(parallel=False, inline="always")
def log(x):
    """``np.log`` for float64 (fdlibm ``log``, branch-free). 0 gives -inf, < 0 and nan give nan."""
    sub = x < _DBL_MIN  # subnormal (or <= 0): scale into the normal range first
    k, m = _frexp64(x * _TWO54 if sub else x)
    r = _log_poly(m - 1.0, k - (54.0 if sub else 0.0))
    r = r if x < np.inf else x
    return r if x > 0.0 else (-np.inf if x == 0.0 else np.nan)


def log1p_any(x):
    """``log1p`` in the precision of ``x``: :func:`log1p_f32` or :func:`log1p` (overloaded below)."""


@overload(log1p_any, inline="always")
def _log1p_any_impl(x):
    if x == types.float32:
        return lambda x: log1p_f32(x)
    return lambda x: log1p(np.float64(x))



@jit()
def log1p_array(x, out):
    """out[i] = log1p(x[i]) elementwise (float32 or float64, 1-D; x may be out); for tests and benchmarks."""
    for i in prange(x.shape[0]):
        out[i] = log1p_any(x[i])


@jit()
def log_array(x, out):
    """out[i] = log(x[i]) elementwise, float64, 1-D."""
    for i in prange(x.shape[0]):
        out[i] = log(x[i])


# Not kernels/deseq.py's _nb_deviance: this is pydeseq2's nb_nll (lgamma form, summed pairwise), that one R's
# dnbinom_mu (betaln form); each reproduces its own reference (pydeseq2 / DESeq2) to the last bits, so both stay.
@jit(parallel=False)
def nb_nll(y, mu, alpha, t):  # pragma: no cover - compiled
    """pydeseq2 ``utils.nb_nll`` for one gene and a scalar dispersion (``t``: scratch of length m)."""
    m = y.shape[0]
    a1 = 1.0 / alpha
    la1 = lgamma(a1)
    for k in range(m):
        logbinom = lgamma(y[k] + a1) - lgamma(y[k] + 1.0) - la1
        t[k] = -logbinom + (y[k] + a1) * math.log(a1 + mu[k]) - y[k] * math.log(mu[k])
    return m * a1 * math.log(alpha) + pairwise_sum(t, 0, m)
