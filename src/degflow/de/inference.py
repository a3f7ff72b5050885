"""A numba backend for pydeseq2: :class:`NumbaInference`, a drop-in ``pydeseq2.inference.Inference``.

``DeseqDataSet(..., inference=NumbaInference(n_cpus=2))`` runs pydeseq2's own step-by-step driver
(``fit_genewise_dispersions``, ``fit_MAP_dispersions``, ``fit_LFC``, ``DeseqStats.run_wald_test``)
with every per-gene routine compiled: one ``prange`` over genes, ``nogil``, ``cache=True``, no
fastmath, no Python call per gene, and the p x p algebra of the design (p <= ~10) written out
(Cholesky, LU). It computes what :class:`pydeseq2.default_inference.DefaultInference` computes,
with the same algorithms:

================================  ======================================================================
``lin_reg_mu``                    least-squares fitted means (sklearn ``LinearRegression`` in pydeseq2):
                                  the projection ``X (X'X)^-1 X'`` is formed once and applied per gene
``irls``                          pydeseq2's IRLS (``utils.irls_solver``): QR start, ridge 1e-6,
                                  Cholesky solves, deviance convergence; the rare genes whose iterate
                                  leaves ``[-30, 30]`` or reaches ``maxiter`` are handed to pydeseq2's
                                  own ``irls_solver`` (its L-BFGS-B / grid fallback), so they match too
``alpha_mle``                     pydeseq2's ``fit_alpha_mle``: scipy's L-BFGS-B **ported for one
                                  variable** (generalised Cauchy point, Moré-Thuente ``dcsrch`` /
                                  ``dcstep`` line search, the ``factr``/``pgtol`` stopping rules, the
                                  memory refresh and abnormal-termination paths; in one dimension the
                                  limited-memory matrix is the secant ``y/s``), then pydeseq2's 2-stage
                                  grid (``grid_fit_alpha``) where L-BFGS-B reports failure
``wald_test``                     pydeseq2's ``utils.wald_test``, all four alternative hypotheses
``fit_rough_dispersions``         ``utils.fit_rough_dispersions``
``fit_moments_dispersions``       ``utils.fit_moments_dispersions``
``dispersion_trend_gamma_glm``    one 2-parameter fit over all genes (not per gene): pydeseq2's code
``lfc_shrink_nbinom_glm``         apeGLM MAP: damped Newton with pydeseq2's exact Hessian, run to
                                  the optimum; genes where it fails use pydeseq2's ``nbinomGLM``
================================  ======================================================================

Numerics. Sums over samples use NumPy's pairwise summation order (:func:`_pairwise_sum`), and
``lgamma``/``digamma`` are scipy's own algorithms (cephes ``lgam``, cephes/Boost ``psi``;
bit-identical to ``gammaln``/``digamma`` on every value tested), so the objective values are
pydeseq2's up to the p x p algebra (LAPACK vs the hand-written factorisations, ~1e-15). The
optimisers therefore take pydeseq2's path and stop where it stops. Measured with identical inputs
on 3,000 airway genes: IRLS coefficients within 3e-14, MAP dispersions within 2.1e-6 relative,
gene-wise dispersions within 1e-4 relative except on genes whose estimate is below 1e-5, where the
likelihood is flat to ~1e-10 and L-BFGS-B's stopping point moves with the last bits of the gradient
(there they differ by < 1e-9 absolute). Such flat genes are also where a whole pipeline can part
ways: a ~1e-14 change of the means can make L-BFGS-B fail on one of them (in pydeseq2 as well), its
grid fallback then picks a different point of the flat likelihood, and if that point is above
1e-6 the gene enters the dispersion trend. ``tests/test_inference.py`` asserts the tolerances per
routine and end to end (PyDESeq2's synthetic data).

End to end on a large real matrix, pydeseq2's answer is itself only reproducible to ~1e-3 in
log2FC: on airway, stock pydeseq2 on OpenBLAS's generic kernels instead of the AVX-512 ones (same
code, same data) changes the L-BFGS-B convergence flag of ~110 gene-wise and ~9 MAP fits:
high-count genes, whose objective (~80) is a difference of ``lgamma`` terms of ~1e5, so its
rounding swamps the decrease the line search still asks for when |gradient| is just above
``pgtol = 1e-5`` (scipy: "ABNORMAL" termination), and gene-wise fits running into the flat
likelihood at 1e-8. Those genes fall back to the grid -- for MAP dispersions pydeseq2's grid has
no prior, so the MAP becomes the gene-wise value -- the trend coefficients move ~0.1 %, and with
them every MAP dispersion and log2FC (by up to 7.5e-4). NumbaInference
against stock pydeseq2 differs by the same amount for the same reason (121 / 7 flags, 2.6e-4 in
log2FC, 1 of 1,052 DEG calls, at log2FC -0.999999 vs -1.000003);
``benchmarks/pydeseq2_reproducibility.py`` prints these numbers. degflow's default ``flavor:
deseq2`` (DESeq2's own line search, :mod:`degflow.kernels.deseq`) does not have this failure mode.

Threads. Each call runs on ``n_cpus`` numba threads (:func:`degflow.runtime.threads`); every
gene's arithmetic is the same whatever the thread count, so results are identical for 1 and N
threads. Memory: the counts and means are copied once to genes x samples float64 (O(genes x
samples)); threads share them, nothing is copied per worker. BLAS is not used inside the kernels.
"""

from __future__ import annotations

import logging
import math
from typing import Literal

import numpy as np
import pandas as pd
from numba import prange
from pydeseq2 import inference as _pd_inference

from degflow.kernels.sparse import _jit
from degflow.runtime import threads as _threads

__all__ = ["NumbaInference"]

log = logging.getLogger("degflow")

_EPS = float(np.finfo(float).eps)
# scipy.optimize.minimize(method="L-BFGS-B") defaults, as pydeseq2 calls it
_LBFGSB_FTOL = 2.2204460492503131e-09
_LBFGSB_FACTR_EPS = (_LBFGSB_FTOL / _EPS) * _EPS  # epsmch * factr, computed as scipy does
_LBFGSB_PGTOL = 1e-5
_LBFGSB_MAXLS = 20
_LBFGSB_MAXITER = 15000
_SQRT1_2 = 0.70710678118654752440


# ---------------------------------------------------------------------------------------------
# Scalar helpers (inlined into the kernels)
# ---------------------------------------------------------------------------------------------


@_jit(parallel=False, inline="always")
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


@_jit(parallel=False)
def _pairwise_sum(a, lo, n):  # pragma: no cover - compiled
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


@_jit(parallel=False, inline="always")
def _polevl(x, c):  # pragma: no cover - compiled
    a = c[0]
    for i in range(1, c.shape[0]):
        a = a * x + c[i]
    return a


@_jit(parallel=False, inline="always")
def _p1evl(x, c):  # pragma: no cover - compiled
    a = x + c[0]
    for i in range(1, c.shape[0]):
        a = a * x + c[i]
    return a


@_jit(parallel=False)
def _lgamma(x):  # pragma: no cover - compiled
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


@_jit(parallel=False)
def _digamma(x):  # pragma: no cover - compiled
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


@_jit(parallel=False, inline="always")
def _norm_sf(x):  # pragma: no cover - compiled
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


@_jit(parallel=False, inline="always")
def _xtwx(X, w, A):  # pragma: no cover - compiled
    """A = X' diag(w) X (p x p, both triangles)."""
    m, p = X.shape
    for i in range(p):
        for j in range(i + 1):
            s = 0.0
            for k in range(m):
                s += X[k, i] * w[k] * X[k, j]
            A[i, j] = s
            A[j, i] = s


@_jit(parallel=False)
def _cholesky_solve(A, b, L, out):  # pragma: no cover - compiled
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


@_jit(parallel=False)
def _lu(A, LU, piv):  # pragma: no cover - compiled
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


@_jit(parallel=False, inline="always")
def _lu_solve(LU, piv, b, out):  # pragma: no cover - compiled
    """Solve ``A out = b`` from the factors of :func:`_lu`."""
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


@_jit(parallel=False)
def _lu_inv(LU, piv, col, inv):  # pragma: no cover - compiled
    """``inv = A^-1`` from the factors of :func:`_lu`, column by column (``col``: scratch of length p)."""
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


@_jit(parallel=False)
def _lu_inverse(A, LU, piv, inv, col):  # pragma: no cover - compiled
    """Inverse and log|det| of A (p x p) by LU with partial pivoting; ``(ok, logabsdet)``."""
    ok, _sign, logdet = _lu(A, LU, piv)
    if not ok:
        return False, -np.inf
    _lu_inv(LU, piv, col, inv)
    return True, logdet


@_jit(parallel=False)
def _nb_nll(y, mu, alpha, t):  # pragma: no cover - compiled
    """pydeseq2 ``utils.nb_nll`` for one gene and a scalar dispersion (``t``: scratch of length m)."""
    m = y.shape[0]
    a1 = 1.0 / alpha
    la1 = _lgamma(a1)
    for k in range(m):
        logbinom = _lgamma(y[k] + a1) - _lgamma(y[k] + 1.0) - la1
        t[k] = -logbinom + (y[k] + a1) * math.log(a1 + mu[k]) - y[k] * math.log(mu[k])
    return m * a1 * math.log(alpha) + _pairwise_sum(t, 0, m)


# ---------------------------------------------------------------------------------------------
# lin_reg_mu, rough and moments dispersions
# ---------------------------------------------------------------------------------------------


@_jit
def _lin_mu_kernel(Y, sf, H, min_mu, out):  # pragma: no cover - compiled
    G, m = Y.shape
    for g in prange(G):
        for i in range(m):
            s = 0.0
            for k in range(m):
                s += H[i, k] * (Y[g, k] / sf[k])
            out[g, i] = max(sf[i] * s, min_mu)


@_jit
def _rough_disp_kernel(N, H, dof, out):  # pragma: no cover - compiled
    G, m = N.shape
    for g in prange(G):
        acc = 0.0
        for i in range(m):
            s = 0.0
            for k in range(m):
                s += H[i, k] * N[g, k]
            yh = max(s, 1.0)
            acc += ((N[g, i] - yh) ** 2 - yh) / (dof * yh**2)
        out[g] = max(acc, 0.0)


@_jit
def _moments_disp_kernel(N, s_mean_inv, out):  # pragma: no cover - compiled
    G, m = N.shape
    for g in prange(G):
        s = 0.0
        for k in range(m):
            s += N[g, k]
        mean = s / m
        v = 0.0
        for k in range(m):
            d = N[g, k] - mean
            v += d * d
        var = v / (m - 1)
        r = (var - s_mean_inv * mean) / mean**2
        if np.isnan(r):
            r = 0.0
        elif np.isinf(r):
            r = np.finfo(np.float64).max if r > 0 else -np.finfo(np.float64).max
        out[g] = r


# ---------------------------------------------------------------------------------------------
# IRLS (pydeseq2 utils.irls_solver)
# ---------------------------------------------------------------------------------------------


@_jit
def _irls_kernel(
    Y, sf, X, P, disp, min_mu, beta_tol, max_beta, maxiter, ridge, qr_init, beta_out, mu_out, hat_out, fallback
):  # pragma: no cover - compiled
    G, m = Y.shape
    p = X.shape[1]
    for g in prange(G):
        y = Y[g]
        a = disp[g]
        beta = np.zeros(p)
        bh = np.empty(p)
        rhs = np.empty(p)
        A = np.empty((p, p))
        L = np.empty((p, p))
        LU = np.empty((p, p))
        inv = np.empty((p, p))
        piv = np.empty(p, dtype=np.int64)
        col = np.empty(p)
        mu = np.empty(m)
        w = np.empty(m)
        z = np.empty(m)
        t = np.empty(m)
        if qr_init:
            for k in range(m):
                t[k] = math.log(y[k] / sf[k] + 0.1)
            for i in range(p):
                s = 0.0
                for k in range(m):
                    s += P[i, k] * t[k]
                beta[i] = s
        else:
            for k in range(m):
                t[k] = math.log(y[k] / sf[k])
            beta[0] = _pairwise_sum(t, 0, m) / m
        for k in range(m):
            e = 0.0
            for i in range(p):
                e += X[k, i] * beta[i]
            mu[k] = max(sf[k] * math.exp(e), min_mu)
        dev = 1000.0
        dev_ratio = 1.0
        it = 0
        fb = False
        while dev_ratio > beta_tol:
            for k in range(m):
                w[k] = mu[k] / (1.0 + mu[k] * a)
                z[k] = math.log(mu[k] / sf[k]) + (y[k] - mu[k]) / mu[k]
            _xtwx(X, w, A)
            for i in range(p):
                A[i, i] += ridge
                s = 0.0
                for k in range(m):
                    s += X[k, i] * (w[k] * z[k])
                rhs[i] = s
            ok = _cholesky_solve(A, rhs, L, bh)
            it += 1
            if not ok:
                fb = True
                break
            big = False
            for i in range(p):
                if abs(bh[i]) > max_beta:
                    big = True
            if big or it >= maxiter:
                fb = True
                break
            for i in range(p):
                beta[i] = bh[i]
            for k in range(m):
                e = 0.0
                for i in range(p):
                    e += X[k, i] * beta[i]
                mu[k] = max(sf[k] * math.exp(e), min_mu)
            old = dev
            dev = -2.0 * _nb_nll(y, mu, a, t)
            dev_ratio = abs(dev - old) / (abs(dev) + 0.1)
        fallback[g] = fb
        for i in range(p):
            beta_out[g, i] = beta[i]
        if fb:
            continue
        for k in range(m):
            w[k] = mu[k] / (1.0 + mu[k] * a)
        _xtwx(X, w, A)
        for i in range(p):
            A[i, i] += ridge
        ok2, _ = _lu_inverse(A, LU, piv, inv, col)
        for k in range(m):
            h = 0.0
            for i in range(p):
                s = 0.0
                for j in range(p):
                    s += inv[i, j] * X[k, j]
                h += X[k, i] * s
            sw = math.sqrt(w[k])
            hat_out[g, k] = (sw * h) * sw if ok2 else np.nan
            e = 0.0
            for i in range(p):
                e += X[k, i] * beta[i]
            mu_out[g, k] = sf[k] * math.exp(e)


# ---------------------------------------------------------------------------------------------
# alpha_mle: pydeseq2's fit_alpha_mle with scipy's L-BFGS-B, in one variable
# ---------------------------------------------------------------------------------------------


@_jit(parallel=False)
def _alpha_fg(la, y, mu, X, cr_reg, prior_reg, la_hat, prior_var, t, w, A, dA, LU, piv, inv, col):  # pragma: no cover
    """pydeseq2's ``loss`` and ``dloss`` of ``fit_alpha_mle`` at ``log_alpha = la``."""
    m = y.shape[0]
    p = X.shape[1]
    alpha = math.exp(la)
    f = _nb_nll(y, mu, alpha, t)
    # gradient of the NB negative log-likelihood w.r.t. alpha (utils.dnb_nll)
    a1 = 1.0 / alpha
    dga1 = _digamma(a1)
    for k in range(m):
        t[k] = dga1 - _digamma(y[k] + a1) + math.log(1.0 + mu[k] * alpha) + (y[k] - mu[k]) / (mu[k] + a1)
    dnb = -(a1**2 * _pairwise_sum(t, 0, m))
    reg = 0.0
    reg_grad = 0.0
    if cr_reg:
        for k in range(m):
            w[k] = mu[k] / (1.0 + mu[k] * alpha)
        _xtwx(X, w, A)
        for k in range(m):
            w[k] = -(w[k] ** 2)
        _xtwx(X, w, dA)
        ok, logdet = _lu_inverse(A, LU, piv, inv, col)
        reg += 0.5 * logdet
        tr = 0.0
        for i in range(p):
            for j in range(p):
                tr += inv[i, j] * dA[i, j]
        if not ok:
            tr = np.nan
        reg_grad += (0.5 * tr) * alpha
    if prior_reg:
        reg += (la - la_hat) ** 2 / (2.0 * prior_var)
        reg_grad += (la - la_hat) / prior_var
    return f + reg, alpha * dnb + reg_grad


@_jit(parallel=False)
def _dcstep(stx, fx, dx, sty, fy, dy, stp, fp, dp, brackt, stpmin, stpmax):  # pragma: no cover
    """MINPACK-2 ``dcstep`` (safeguarded cubic/quadratic step of the Moré-Thuente search)."""
    sgnd = dp * (dx / abs(dx))
    if fp > fx:
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * math.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
        if stp < stx:
            gamma = -gamma
        p = (gamma - dx) + theta
        q = ((gamma - dx) + gamma) + dp
        r = p / q
        stpc = stx + r * (stp - stx)
        stpq = stx + ((dx / ((fx - fp) / (stp - stx) + dx)) / 2.0) * (stp - stx)
        if abs(stpc - stx) < abs(stpq - stx):
            stpf = stpc
        else:
            stpf = stpc + (stpq - stpc) / 2.0
        brackt = True
    elif sgnd < 0.0:
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * math.sqrt((theta / s) ** 2 - (dx / s) * (dp / s))
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = ((gamma - dp) + gamma) + dx
        r = p / q
        stpc = stp + r * (stx - stp)
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if abs(stpc - stp) > abs(stpq - stp):
            stpf = stpc
        else:
            stpf = stpq
        brackt = True
    elif abs(dp) < abs(dx):
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * math.sqrt(max(0.0, (theta / s) ** 2 - (dx / s) * (dp / s)))
        if stp > stx:
            gamma = -gamma
        p = (gamma - dp) + theta
        q = (gamma + (dx - dp)) + gamma
        r = p / q
        if r < 0.0 and gamma != 0.0:
            stpc = stp + r * (stx - stp)
        elif stp > stx:
            stpc = stpmax
        else:
            stpc = stpmin
        stpq = stp + (dp / (dp - dx)) * (stx - stp)
        if brackt:
            if abs(stpc - stp) < abs(stpq - stp):
                stpf = stpc
            else:
                stpf = stpq
            if stp > stx:
                stpf = min(stp + 0.66 * (sty - stp), stpf)
            else:
                stpf = max(stp + 0.66 * (sty - stp), stpf)
        else:
            if abs(stpc - stp) > abs(stpq - stp):
                stpf = stpc
            else:
                stpf = stpq
            stpf = min(stpmax, stpf)
            stpf = max(stpmin, stpf)
    else:
        if brackt:
            theta = 3.0 * (fp - fy) / (sty - stp) + dy + dp
            s = max(abs(theta), abs(dy), abs(dp))
            gamma = s * math.sqrt((theta / s) ** 2 - (dy / s) * (dp / s))
            if stp > sty:
                gamma = -gamma
            p = (gamma - dp) + theta
            q = ((gamma - dp) + gamma) + dy
            r = p / q
            stpc = stp + r * (sty - stp)
            stpf = stpc
        elif stp > stx:
            stpf = stpmax
        else:
            stpf = stpmin
    if fp > fx:
        sty = stp
        fy = fp
        dy = dp
    else:
        if sgnd < 0.0:
            sty = stx
            fy = fx
            dy = dx
        stx = stp
        fx = fp
        dx = dp
    return stx, fx, dx, sty, fy, dy, stpf, brackt


@_jit(parallel=False, inline="always")
def _projgr(x, g, lo, hi):  # pragma: no cover - compiled
    """L-BFGS-B ``projgr``: |projected gradient| of one variable in [lo, hi]."""
    gi = g
    if gi < 0.0:
        gi = max(x - hi, gi)
    else:
        gi = min(x - lo, gi)
    return abs(gi)


@_jit(parallel=False, inline="always")
def _cauchy_1d(x, g, lo, hi, theta):  # pragma: no cover - compiled
    """Generalised Cauchy point of L-BFGS-B (``cauchy``) in one variable with B = theta: ``(z, free)``."""
    neggi = -g
    tl = x - lo
    tu = hi - x
    if (tl <= 0.0 and neggi <= 0.0) or (tu <= 0.0 and neggi >= 0.0) or neggi == 0.0:
        return x, False
    f1 = -neggi * neggi
    if neggi < 0.0:
        tbreak = tl / (-neggi)
    else:
        tbreak = tu / neggi
    f2 = -theta * f1
    dtm = -f1 / f2
    if dtm < tbreak:
        if dtm <= 0.0:
            dtm = 0.0
        return x + dtm * neggi, True
    return (hi if neggi > 0.0 else lo), False


@_jit(parallel=False)
def _lbfgsb_1d(x0, lo, hi, y, mu, X, cr_reg, prior_reg, la_hat, prior_var, t, w, A, dA, LU, piv, inv, col):  # pragma: no cover
    """scipy's L-BFGS-B (``m=10, factr=1e7, pgtol=1e-5, maxls=20``) on one bounded variable.

    Returns ``(x, success)``. In one dimension the compact limited-memory matrix equals the last
    secant ``theta = y'y / s'y``, so the generalised Cauchy point is ``x - g / theta`` cut at the
    bound the path meets, and the subspace minimisation leaves it unchanged.
    """
    ftol_ls, gtol_ls, xtol_ls = 1e-3, 0.9, 0.1
    x = min(max(x0, lo), hi)
    f, g = _alpha_fg(x, y, mu, X, cr_reg, prior_reg, la_hat, prior_var, t, w, A, dA, LU, piv, inv, col)
    nfev = 1

    if _projgr(x, g, lo, hi) <= _LBFGSB_PGTOL:
        return x, True
    theta = 1.0
    npairs = 0
    it = 0
    n_iter = 0
    while True:
        # --- generalised Cauchy point (cauchy) + subspace minimisation (no-op in 1-D)
        z, _free = _cauchy_1d(x, g, lo, hi, theta)
        d = z - x
        # --- line search (lnsrlb + dcsrch)
        stpmx = 1e10
        if it == 0:
            stpmx = 1.0
        else:
            if d < 0.0:
                a2 = lo - x
                if a2 >= 0.0:
                    stpmx = 0.0
                elif d * stpmx < a2:
                    stpmx = a2 / d
            elif d > 0.0:
                a2 = hi - x
                if a2 <= 0.0:
                    stpmx = 0.0
                elif d * stpmx > a2:
                    stpmx = a2 / d
        stp = 1.0
        t_x = x
        r_g = g
        fold = f
        ifun = 0
        iback = 0
        gd = g * d
        gdold = gd
        failed = gd >= 0.0  # not a descent direction (info = -4)
        if not failed and (stp > stpmx):
            failed = True
        if not failed:
            # dcsrch START
            brackt = False
            stage = 1
            finit = f
            ginit = gd
            gtest = ftol_ls * ginit
            width = stpmx - 0.0
            width1 = width / 0.5
            stx = 0.0
            fx = finit
            gx = ginit
            sty = 0.0
            fy = finit
            gy = ginit
            stmin = 0.0
            stmax = stp + 4.0 * stp
            # task = FG: evaluate at stp
            while True:
                ifun += 1
                iback = ifun - 1
                if iback >= _LBFGSB_MAXLS:
                    failed = True
                    break
                x = z if stp == 1.0 else stp * d + t_x
                f, g = _alpha_fg(x, y, mu, X, cr_reg, prior_reg, la_hat, prior_var, t, w, A, dA, LU, piv, inv, col)
                nfev += 1
                gd = g * d
                # dcsrch continuation
                ftest = finit + stp * gtest
                if stage == 1 and f <= ftest and gd >= 0.0:
                    stage = 2
                done = False
                if brackt and (stp <= stmin or stp >= stmax):
                    done = True
                if brackt and stmax - stmin <= xtol_ls * stmax:
                    done = True
                if stp == stpmx and f <= ftest and gd <= gtest:
                    done = True
                if stp == 0.0 and (f > ftest or gd >= gtest):
                    done = True
                if f <= ftest and abs(gd) <= gtol_ls * (-ginit):
                    done = True
                if done:
                    break
                if stage == 1 and f <= fx and f > ftest:
                    fm = f - stp * gtest
                    fxm = fx - stx * gtest
                    fym = fy - sty * gtest
                    gm = gd - gtest
                    gxm = gx - gtest
                    gym = gy - gtest
                    stx, fxm, gxm, sty, fym, gym, stp, brackt = _dcstep(
                        stx, fxm, gxm, sty, fym, gym, stp, fm, gm, brackt, stmin, stmax
                    )
                    fx = fxm + stx * gtest
                    fy = fym + sty * gtest
                    gx = gxm + gtest
                    gy = gym + gtest
                else:
                    stx, fx, gx, sty, fy, gy, stp, brackt = _dcstep(
                        stx, fx, gx, sty, fy, gy, stp, f, gd, brackt, stmin, stmax
                    )
                if brackt:
                    if abs(sty - stx) >= 0.66 * width1:
                        stp = stx + 0.5 * (sty - stx)
                    width1 = width
                    width = abs(sty - stx)
                if brackt:
                    stmin = min(stx, sty)
                    stmax = max(stx, sty)
                else:
                    stmin = stp + 1.1 * (stp - stx)
                    stmax = stp + 4.0 * (stp - stx)
                stp = max(stp, 0.0)
                stp = min(stp, stpmx)
                if (brackt and (stp <= stmin or stp >= stmax)) or (brackt and stmax - stmin <= xtol_ls * stmax):
                    stp = stx
        if failed:
            x = t_x
            g = r_g
            f = fold
            if npairs == 0:
                return x, False  # ABNORMAL_TERMINATION_IN_LNSRCH
            theta = 1.0  # RESTART_FROM_LNSRCH: refresh the memory
            npairs = 0
            continue
        # --- new iterate
        it += 1
        n_iter += 1
        if n_iter >= _LBFGSB_MAXITER:
            return x, False
        if _projgr(x, g, lo, hi) <= _LBFGSB_PGTOL:
            return x, True
        ddum = max(abs(fold), abs(f), 1.0)
        if (fold - f) <= _LBFGSB_FACTR_EPS * ddum:
            return x, True
        rr = (g - r_g) * (g - r_g)
        if stp == 1.0:
            dr = gd - gdold
            ddum = -gdold
        else:
            dr = (gd - gdold) * stp
            ddum = -gdold * stp
        if dr <= _EPS * ddum:
            continue  # skip the update
        theta = rr / dr
        npairs = min(npairs + 1, 10)


@_jit(parallel=False)
def _grid_fit_alpha(y, mu, X, lo, hi, t, w, A, dA, LU, piv, inv, col):  # pragma: no cover - compiled
    """pydeseq2 ``grid_fit_alpha`` (Cox-Reid term, no prior, 100 + 100 points); returns log alpha."""
    n = 100
    best = np.inf
    best_x = lo
    step = (hi - lo) / (n - 1)
    for k in range(n):
        v = k * step + lo if k < n - 1 else hi
        f, _ = _alpha_fg(v, y, mu, X, True, False, 0.0, 1.0, t, w, A, dA, LU, piv, inv, col)
        if f < best:
            best = f
            best_x = v
    delta = (lo + step) - lo
    start = best_x - delta
    stop = best_x + delta
    step2 = (stop - start) / (n - 1)
    best = np.inf
    best2 = start
    for k in range(n):
        v = k * step2 + start if k < n - 1 else stop
        f, _ = _alpha_fg(v, y, mu, X, True, False, 0.0, 1.0, t, w, A, dA, LU, piv, inv, col)
        if f < best:
            best = f
            best2 = v
    return best2


@_jit
def _alpha_mle_kernel(
    Y, MU, X, alpha_hat, lo, hi, cr_reg, prior_reg, prior_var, out, conv
):  # pragma: no cover - compiled
    G, m = Y.shape
    p = X.shape[1]
    for g in prange(G):
        t = np.empty(m)
        w = np.empty(m)
        A = np.empty((p, p))
        dA = np.empty((p, p))
        LU = np.empty((p, p))
        inv = np.empty((p, p))
        col = np.empty(p)
        piv = np.empty(p, dtype=np.int64)
        la_hat = math.log(alpha_hat[g])
        x, ok = _lbfgsb_1d(la_hat, lo, hi, Y[g], MU[g], X, cr_reg, prior_reg, la_hat, prior_var,
                           t, w, A, dA, LU, piv, inv, col)
        if not ok:
            x = _grid_fit_alpha(Y[g], MU[g], X, lo, hi, t, w, A, dA, LU, piv, inv, col)
        out[g] = math.exp(x)
        conv[g] = ok


# ---------------------------------------------------------------------------------------------
# Wald test (pydeseq2 utils.wald_test)
# ---------------------------------------------------------------------------------------------


@_jit
def _wald_kernel(X, disp, lfc, MU, ridge, c, lfc_null, alt, pval, stat, se):  # pragma: no cover - compiled
    G, m = MU.shape
    p = X.shape[1]
    for g in prange(G):
        w = np.empty(m)
        M = np.empty((p, p))
        A = np.empty((p, p))
        LU = np.empty((p, p))
        H = np.empty((p, p))
        col = np.empty(p)
        piv = np.empty(p, dtype=np.int64)
        Hc = np.empty(p)
        a = disp[g]
        for k in range(m):
            w[k] = MU[g, k] / (1.0 + MU[g, k] * a)
        _xtwx(X, w, M)
        for i in range(p):
            for j in range(p):
                A[i, j] = M[i, j] + ridge[i, j]
        ok, _ = _lu_inverse(A, LU, piv, H, col)
        for i in range(p):
            s = 0.0
            for j in range(p):
                s += H[i, j] * c[j]
            Hc[i] = s
        q = 0.0
        for i in range(p):
            s = 0.0
            for j in range(p):
                s += M[i, j] * Hc[j]
            q += Hc[i] * s
        sd = math.sqrt(q) if ok else np.nan
        se[g] = sd
        if alt == 0:  # None: two-sided test of c'(lfc - lfc_null)
            s = 0.0
            for i in range(p):
                s += c[i] * (lfc[g, i] - lfc_null)
            st = s / sd
            stat[g] = st
            pval[g] = 2.0 * _norm_sf(abs(st))
        elif alt == 1:  # greaterAbs
            s = 0.0
            for i in range(p):
                v = lfc[g, i]
                sg = 1.0 if v > 0 else (-1.0 if v < 0 else (0.0 if v == 0 else np.nan))
                s += c[i] * (sg * np.fmax((abs(v) - lfc_null) / sd, 0.0))
            stat[g] = s
            pval[g] = 2.0 * _norm_sf(abs(s))
        elif alt == 3:  # greater
            s = 0.0
            for i in range(p):
                s += c[i] * np.fmax((lfc[g, i] - lfc_null) / sd, 0.0)
            stat[g] = s
            pval[g] = _norm_sf(s)
        elif alt == 4:  # less
            s = 0.0
            for i in range(p):
                s += c[i] * np.fmin((lfc[g, i] - lfc_null) / sd, 0.0)
            stat[g] = s
            pval[g] = _norm_sf(abs(s))
        else:  # lessAbs: greater(-|null|) and less(|null|)
            nl = abs(lfc_null)
            s_above = 0.0
            s_below = 0.0
            for i in range(p):
                s_above += c[i] * np.fmax((lfc[g, i] + nl) / sd, 0.0)
                s_below += c[i] * np.fmin((lfc[g, i] - nl) / sd, 0.0)
            p_above = _norm_sf(s_above)
            p_below = _norm_sf(abs(s_below))
            stat[g] = s_above if abs(s_above) <= abs(s_below) else s_below
            pval[g] = max(p_above, p_below)


_ALT_CODES = {None: 0, "greaterAbs": 1, "lessAbs": 2, "greater": 3, "less": 4}


# ---------------------------------------------------------------------------------------------
# apeGLM shrinkage (pydeseq2 utils.nbinomGLM): Newton on its exact Hessian
# ---------------------------------------------------------------------------------------------


@_jit(parallel=False, inline="always")
def _shrink_obj(beta, X, y, size, offset, s0, s1, k, eta):  # pragma: no cover - compiled
    """pydeseq2 ``nbinomFn`` (unscaled): apeGLM prior minus the NB log-likelihood."""
    m, p = X.shape
    prior = 0.0
    for i in range(p):
        if i != k:
            prior += beta[i] ** 2 / (2.0 * s0**2)
    prior += math.log1p((beta[k] / s1) ** 2)
    ls = math.log(size)
    nll = 0.0
    for j in range(m):
        e = 0.0
        for i in range(p):
            e += X[j, i] * beta[i]
        eta[j] = e
        a = e + offset[j]
        hi = max(a, ls)
        lae = hi + math.log1p(math.exp(-abs(a - ls)))  # logaddexp
        nll += y[j] * e - (y[j] + size) * lae
    return prior - nll


@_jit
def _shrink_kernel(X, Y, size, offset, s0, s1, k, beta_out, inv_out, ok_out):  # pragma: no cover - compiled
    G, m = Y.shape
    p = X.shape[1]
    for g in prange(G):
        y = Y[g]
        sz = size[g]
        beta = np.empty(p)
        trial = np.empty(p)
        grad = np.empty(p)
        step = np.empty(p)
        Hm = np.empty((p, p))
        L = np.empty((p, p))
        LU = np.empty((p, p))
        inv = np.empty((p, p))
        col = np.empty(p)
        piv = np.empty(p, dtype=np.int64)
        eta = np.empty(m)
        for i in range(p):
            beta[i] = 0.1 * (-1.0) ** i
        f = _shrink_obj(beta, X, y, sz, offset, s0, s1, k, eta)
        ok = np.isfinite(f)
        converged = False
        for _ in range(200):
            if not ok:
                break
            # gradient and Hessian (pydeseq2's df and ddf, scale 1)
            for i in range(p):
                if i == k:
                    grad[i] = 2.0 * beta[i] / (s1**2 + beta[k] ** 2)
                else:
                    grad[i] = beta[i] / s0**2
                for j in range(p):
                    Hm[i, j] = 0.0
            for j in range(m):
                ex = math.exp(eta[j] + offset[j])
                r = y[j] - (y[j] + sz) / (1.0 + sz * math.exp(-eta[j] - offset[j]))
                frac = (y[j] + sz) * sz * ex / (sz + ex) ** 2
                for i in range(p):
                    grad[i] -= r * X[j, i]
                    for l in range(i + 1):
                        Hm[i, l] += X[j, i] * frac * X[j, l]
            for i in range(p):
                for l in range(i):
                    Hm[l, i] = Hm[i, l]
                if i == k:
                    Hm[i, i] += 2.0 * (s1**2 - beta[k] ** 2) / (s1**2 + beta[k] ** 2) ** 2
                else:
                    Hm[i, i] += 1.0 / s0**2
            gmax = 0.0
            for i in range(p):
                gmax = max(gmax, abs(grad[i]))
            if gmax <= 1e-10 * max(1.0, abs(f)):
                converged = True
                break
            if not _cholesky_solve(Hm, grad, L, step):
                # indefinite (the Cauchy prior is not convex): steepest descent
                for i in range(p):
                    step[i] = grad[i]
            lam = 1.0
            improved = False
            for _ls in range(60):
                for i in range(p):
                    trial[i] = beta[i] - lam * step[i]
                ft = _shrink_obj(trial, X, y, sz, offset, s0, s1, k, eta)
                if ft <= f:
                    improved = True
                    break
                lam *= 0.5
            if not improved:
                _shrink_obj(beta, X, y, sz, offset, s0, s1, k, eta)
                break
            small = True
            for i in range(p):
                if abs(trial[i] - beta[i]) > 1e-12 * (1.0 + abs(beta[i])):
                    small = False
                beta[i] = trial[i]
            if f - ft <= 1e-15 * max(1.0, abs(f)) and small:
                f = ft
                converged = True
                break
            f = ft
        ok_out[g] = converged
        for i in range(p):
            beta_out[g, i] = beta[i]
        # inverse Hessian at the solution (pydeseq2: np.linalg.inv(ddf(beta, 1)))
        for i in range(p):
            for j in range(p):
                Hm[i, j] = 0.0
        _shrink_obj(beta, X, y, sz, offset, s0, s1, k, eta)
        for j in range(m):
            ex = math.exp(eta[j] + offset[j])
            frac = (y[j] + sz) * sz * ex / (sz + ex) ** 2
            for i in range(p):
                for l in range(p):
                    Hm[i, l] += X[j, i] * frac * X[j, l]
        # pydeseq2's ddf adds ``np.diag(h)`` with h already diagonal, i.e. the prior curvature vector to
        # every row; mirrored so that the returned inverse Hessians (and shrunken SEs) are its own
        for i in range(p):
            for l in range(p):
                if l == k:
                    Hm[i, l] += 2.0 * (s1**2 - beta[k] ** 2) / (s1**2 + beta[k] ** 2) ** 2
                else:
                    Hm[i, l] += 1.0 / s0**2
        okinv, _ = _lu_inverse(Hm, LU, piv, inv, col)
        for i in range(p):
            for j in range(p):
                inv_out[g, i, j] = inv[i, j] if okinv else np.nan


# ---------------------------------------------------------------------------------------------
# The Inference subclass
# ---------------------------------------------------------------------------------------------


def _genes_by_samples(a: np.ndarray) -> np.ndarray:
    """samples x genes (pydeseq2's layout) -> C-contiguous genes x samples float64 (one copy)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float64).T)


def _projection(X: np.ndarray) -> np.ndarray:
    """``X (X'X)^+ X'``: the least-squares fitted-value operator (sklearn ``LinearRegression``, no intercept)."""
    return X @ np.linalg.pinv(X)


class NumbaInference(_pd_inference.Inference):
    """pydeseq2's inference routines compiled with numba, parallel over genes.

    Pass it to ``pydeseq2.dds.DeseqDataSet(..., inference=NumbaInference(n_cpus=...))`` and to
    ``DeseqStats``; the results equal :class:`~pydeseq2.default_inference.DefaultInference`'s within
    the tolerances in the module docstring.

    Parameters
    ----------
    n_cpus : int, optional
        numba threads for the per-gene kernels (``None``: numba's current setting, capped at
        ``NUMBA_NUM_THREADS``). Results do not depend on it.
    """

    def __init__(self, n_cpus: int | None = None) -> None:
        self._n_cpus = n_cpus
        self.last_fallbacks: dict[str, int] = {}

    @property
    def n_cpus(self) -> int | None:
        """numba threads for the per-gene kernels (``None``: numba's current setting); declared by pydeseq2's ``Inference``."""
        return self._n_cpus

    @n_cpus.setter
    def n_cpus(self, n_cpus: int | None) -> None:
        self._n_cpus = n_cpus

    # -- means -------------------------------------------------------------------------------

    def lin_reg_mu(
        self, counts: np.ndarray, size_factors: np.ndarray, design_matrix: np.ndarray, min_mu: float
    ) -> np.ndarray:
        """Least-squares means per gene, ``max(sf * fitted, min_mu)``; samples x genes like pydeseq2."""
        Y = _genes_by_samples(counts)
        sf = np.ascontiguousarray(size_factors, dtype=np.float64)
        H = _projection(np.asarray(design_matrix, dtype=np.float64))
        out = np.empty_like(Y)
        with _threads(self._n_cpus):
            _lin_mu_kernel(Y, sf, H, float(min_mu), out)
        return out.T

    def irls(
        self,
        counts: np.ndarray,
        size_factors: np.ndarray,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        min_mu: float,
        beta_tol: float,
        min_beta: float = -30,
        max_beta: float = 30,
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
        maxiter: int = 250,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """NB GLM coefficients by IRLS: ``(beta genes x p, mu samples x genes, hat samples x genes, converged)``."""
        from pydeseq2.utils import irls_solver  # noqa: PLC0415

        X = np.ascontiguousarray(design_matrix, dtype=np.float64)
        m, p = X.shape
        Y = _genes_by_samples(counts)
        G = Y.shape[0]
        sf = np.ascontiguousarray(size_factors, dtype=np.float64)
        d = np.ascontiguousarray(disp, dtype=np.float64).reshape(G)
        qr_init = np.linalg.matrix_rank(X) == p
        if qr_init:
            Q, R = np.linalg.qr(X)
            P = np.linalg.solve(R, Q.T)
        else:
            P = np.zeros((p, m))
        beta = np.empty((G, p))
        mu = np.empty((G, m))
        hat = np.empty((G, m))
        fallback = np.zeros(G, dtype=np.bool_)
        with _threads(self._n_cpus):
            _irls_kernel(Y, sf, X, np.ascontiguousarray(P), d, float(min_mu), float(beta_tol), float(max_beta),
                         int(maxiter), 1e-6, bool(qr_init), beta, mu, hat, fallback)
        converged = np.ones(G, dtype=bool)
        rows = np.flatnonzero(fallback)
        self.last_fallbacks["irls"] = int(rows.size)
        if rows.size:
            log.debug("NumbaInference.irls: %d genes left [-%g, %g] or hit maxiter; pydeseq2's solver refits them",
                      rows.size, max_beta, max_beta)
        for g in rows:  # pydeseq2's own L-BFGS-B (+ grid) path, for the same answer
            b, mu_g, h, conv = irls_solver(Y[g], sf, X, float(d[g]), min_mu, beta_tol, min_beta, max_beta,
                                           optimizer, maxiter)
            beta[g], mu[g], hat[g], converged[g] = b, mu_g, h, conv
        return beta, mu.T, hat.T, converged

    # -- dispersions -------------------------------------------------------------------------

    def alpha_mle(
        self,
        counts: np.ndarray,
        design_matrix: np.ndarray,
        mu: np.ndarray,
        alpha_hat: np.ndarray,
        min_disp: float,
        max_disp: float,
        prior_disp_var: float | None = None,
        cr_reg: bool = True,
        prior_reg: bool = False,
        optimizer: Literal["BFGS", "L-BFGS-B"] = "L-BFGS-B",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Dispersions by L-BFGS-B on log alpha (grid where it fails): ``(dispersions, converged)``."""
        if optimizer != "L-BFGS-B":
            raise NotImplementedError("NumbaInference.alpha_mle implements pydeseq2's default optimizer, L-BFGS-B")
        if prior_reg and prior_disp_var is None:
            raise ValueError("Sigma_prior is required for prior regularization")
        X = np.ascontiguousarray(design_matrix, dtype=np.float64)
        Y = _genes_by_samples(counts)
        MU = _genes_by_samples(mu)
        G = Y.shape[0]
        ah = np.ascontiguousarray(alpha_hat, dtype=np.float64).reshape(G)
        out = np.empty(G)
        conv = np.empty(G, dtype=np.bool_)
        pv = float(prior_disp_var) if prior_disp_var is not None else 1.0
        with _threads(self._n_cpus):
            _alpha_mle_kernel(Y, MU, X, ah, math.log(min_disp), math.log(max_disp), bool(cr_reg), bool(prior_reg),
                              pv, out, conv)
        self.last_fallbacks["alpha_mle_grid"] = int((~conv).sum())
        return out, conv

    def wald_test(
        self,
        design_matrix: np.ndarray,
        disp: np.ndarray,
        lfc: np.ndarray,
        mu: np.ndarray,
        ridge_factor: np.ndarray,
        contrast: np.ndarray,
        lfc_null: np.ndarray,
        alt_hypothesis: Literal["greaterAbs", "lessAbs", "greater", "less"] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Wald p-values, statistics and standard errors of ``contrast' beta`` per gene."""
        if alt_hypothesis not in _ALT_CODES:
            raise ValueError(f"unknown alt_hypothesis {alt_hypothesis!r}")
        X = np.ascontiguousarray(design_matrix, dtype=np.float64)
        MU = _genes_by_samples(mu)
        G = MU.shape[0]
        L = np.ascontiguousarray(lfc, dtype=np.float64)
        pval, stat, se = np.empty(G), np.empty(G), np.empty(G)
        with _threads(self._n_cpus):
            _wald_kernel(X, np.ascontiguousarray(disp, dtype=np.float64), L, MU,
                         np.ascontiguousarray(ridge_factor, dtype=np.float64),
                         np.ascontiguousarray(contrast, dtype=np.float64), float(lfc_null),
                         _ALT_CODES[alt_hypothesis], pval, stat, se)
        return pval, stat, se

    def fit_rough_dispersions(self, normed_counts: np.ndarray, design_matrix: pd.DataFrame) -> np.ndarray:
        """Rough dispersions from the least-squares fit (pydeseq2 ``utils.fit_rough_dispersions``)."""
        X = np.asarray(design_matrix, dtype=np.float64)
        m, p = X.shape
        if m == p:
            raise ValueError(
                "The number of samples and the number of design variables are equal, i.e., there are no "
                "replicates to estimate the dispersion. Please use a design with fewer variables."
            )
        N = _genes_by_samples(normed_counts)
        out = np.empty(N.shape[0])
        with _threads(self._n_cpus):
            _rough_disp_kernel(N, _projection(X), float(m - p), out)
        return out

    def fit_moments_dispersions(self, normed_counts: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
        """Method-of-moments dispersions of the genes not all zero (pydeseq2 ``utils.fit_moments_dispersions``)."""
        nc = np.asarray(normed_counts, dtype=np.float64)
        nc = nc[:, ~(nc == 0).all(axis=0)]
        N = _genes_by_samples(nc)
        out = np.empty(N.shape[0])
        s_mean_inv = float((1 / np.asarray(size_factors, dtype=np.float64)).mean(axis=0))
        with _threads(self._n_cpus):
            _moments_disp_kernel(N, s_mean_inv, out)
        return out

    def dispersion_trend_gamma_glm(
        self, covariates: pd.Series, targets: pd.Series
    ) -> tuple[np.ndarray, np.ndarray, bool]:
        """The dispersion trend: one 2-parameter gamma GLM over all genes, pydeseq2's own code (not per gene)."""
        from pydeseq2.default_inference import DefaultInference  # noqa: PLC0415

        return DefaultInference.dispersion_trend_gamma_glm(self, covariates, targets)  # type: ignore[arg-type]

    def lfc_shrink_nbinom_glm(
        self,
        design_matrix: np.ndarray,
        counts: np.ndarray,
        size: np.ndarray,
        offset: np.ndarray,
        prior_no_shrink_scale: float,
        prior_scale: float,
        optimizer: str,
        shrink_index: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """apeGLM MAP coefficients, inverse Hessians and convergence flags per gene."""
        from pydeseq2.utils import nbinomGLM  # noqa: PLC0415

        X = np.ascontiguousarray(design_matrix, dtype=np.float64)
        p = X.shape[1]
        Y = _genes_by_samples(counts)
        G = Y.shape[0]
        beta = np.empty((G, p))
        inv = np.empty((G, p, p))
        ok = np.empty(G, dtype=np.bool_)
        with _threads(self._n_cpus):
            _shrink_kernel(X, Y, np.ascontiguousarray(size, dtype=np.float64).reshape(G),
                           np.ascontiguousarray(offset, dtype=np.float64), float(prior_no_shrink_scale),
                           float(prior_scale), int(shrink_index), beta, inv, ok)
        rows = np.flatnonzero(~ok)
        self.last_fallbacks["lfc_shrink"] = int(rows.size)
        for g in rows:
            b, h, c = nbinomGLM(X, Y[g], size[g], offset, prior_no_shrink_scale, prior_scale, optimizer, shrink_index)
            beta[g], inv[g], ok[g] = b, h, c
        return beta, inv, ok
