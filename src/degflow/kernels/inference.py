"""Numba kernels of :class:`degflow.de.inference.NumbaInference` (pydeseq2's ``Inference`` on numba).

One ``prange`` over genes per routine (``nogil``, ``cache=True``, no fastmath); the p x p algebra and
``lgamma``/``digamma`` come from :mod:`degflow.kernels.math`. What each kernel reproduces, and how
closely, is described in :mod:`degflow.de.inference`:

==============================  ===============================================================
:func:`lin_mu_kernel`           ``lin_reg_mu`` (least-squares means through the projection)
:func:`rough_disp_kernel`       ``fit_rough_dispersions``
:func:`moments_disp_kernel`     ``fit_moments_dispersions``
:func:`irls_kernel`             ``irls`` (pydeseq2's ``irls_solver``)
:func:`alpha_mle_kernel`        ``alpha_mle`` (scipy's L-BFGS-B ported for one variable + grid)
:func:`wald_kernel`             ``wald_test`` (all four alternative hypotheses, :data:`ALT_CODES`)
:func:`shrink_kernel`           ``lfc_shrink_nbinom_glm`` (apeGLM MAP, Newton on the exact Hessian)
==============================  ===============================================================
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from degflow.kernels.jit import jit
from degflow.kernels.math import cholesky_solve, digamma, lgamma, lu_inverse, norm_sf, pairwise_sum, xtwx

__all__ = [
    "ALT_CODES", "alpha_mle_kernel", "irls_kernel", "lin_mu_kernel", "moments_disp_kernel", "rough_disp_kernel",
    "shrink_kernel", "wald_kernel",
]

_EPS = float(np.finfo(float).eps)
# scipy.optimize.minimize(method="L-BFGS-B") defaults, as pydeseq2 calls it
_LBFGSB_FTOL = 2.2204460492503131e-09
_LBFGSB_FACTR_EPS = (_LBFGSB_FTOL / _EPS) * _EPS  # epsmch * factr, computed as scipy does
_LBFGSB_PGTOL = 1e-5
_LBFGSB_MAXLS = 20
_LBFGSB_MAXITER = 15000


# Not kernels/deseq.py's _nb_deviance: this is pydeseq2's nb_nll (lgamma form, summed pairwise), that one R's
# dnbinom_mu (betaln form); each reproduces its own reference (pydeseq2 / DESeq2) to the last bits, so both stay.
@jit(parallel=False)
def _nb_nll(y, mu, alpha, t):  # pragma: no cover - compiled
    """pydeseq2 ``utils.nb_nll`` for one gene and a scalar dispersion (``t``: scratch of length m)."""
    m = y.shape[0]
    a1 = 1.0 / alpha
    la1 = lgamma(a1)
    for k in range(m):
        logbinom = lgamma(y[k] + a1) - lgamma(y[k] + 1.0) - la1
        t[k] = -logbinom + (y[k] + a1) * math.log(a1 + mu[k]) - y[k] * math.log(mu[k])
    return m * a1 * math.log(alpha) + pairwise_sum(t, 0, m)


# ---------------------------------------------------------------------------------------------
# lin_reg_mu, rough and moments dispersions
# ---------------------------------------------------------------------------------------------


@jit()
def lin_mu_kernel(Y, sf, H, min_mu, out):  # pragma: no cover - compiled
    """``out[g] = max(sf * H (Y[g] / sf), min_mu)``: least-squares means per gene (``H``: the projection)."""
    G, m = Y.shape
    for g in prange(G):
        for i in range(m):
            s = 0.0
            for k in range(m):
                s += H[i, k] * (Y[g, k] / sf[k])
            out[g, i] = max(sf[i] * s, min_mu)


# lin_mu_kernel, rough_disp_kernel and moments_disp_kernel each write out their per-gene loop over the
# projection H instead of sharing a helper: three short hot loops, each fused with its own reduction.
@jit()
def rough_disp_kernel(N, H, dof, out):  # pragma: no cover - compiled
    """pydeseq2 ``utils.fit_rough_dispersions`` per gene of the normalised counts ``N`` (genes x samples)."""
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


@jit()
def moments_disp_kernel(N, s_mean_inv, out):  # pragma: no cover - compiled
    """pydeseq2 ``utils.fit_moments_dispersions`` per gene of the normalised counts ``N`` (genes x samples)."""
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


@jit()
def irls_kernel(
    Y, sf, X, P, disp, min_mu, beta_tol, max_beta, maxiter, ridge, qr_init, beta_out, mu_out, hat_out, fallback
):  # pragma: no cover - compiled
    """pydeseq2 ``utils.irls_solver`` per gene; ``fallback[g]`` marks genes handed back to pydeseq2's own solver."""
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
            beta[0] = pairwise_sum(t, 0, m) / m
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
            xtwx(X, w, A)
            for i in range(p):
                A[i, i] += ridge
                s = 0.0
                for k in range(m):
                    s += X[k, i] * (w[k] * z[k])
                rhs[i] = s
            ok = cholesky_solve(A, rhs, L, bh)
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
        xtwx(X, w, A)
        for i in range(p):
            A[i, i] += ridge
        ok2, _ = lu_inverse(A, LU, piv, inv, col)
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


@jit(parallel=False)
def _alpha_fg(la, y, mu, X, cr_reg, prior_reg, la_hat, prior_var, t, w, A, dA, LU, piv, inv, col):  # pragma: no cover
    """pydeseq2's ``loss`` and ``dloss`` of ``fit_alpha_mle`` at ``log_alpha = la``."""
    m = y.shape[0]
    p = X.shape[1]
    alpha = math.exp(la)
    f = _nb_nll(y, mu, alpha, t)
    # gradient of the NB negative log-likelihood w.r.t. alpha (utils.dnb_nll)
    a1 = 1.0 / alpha
    dga1 = digamma(a1)
    for k in range(m):
        t[k] = dga1 - digamma(y[k] + a1) + math.log(1.0 + mu[k] * alpha) + (y[k] - mu[k]) / (mu[k] + a1)
    dnb = -(a1**2 * pairwise_sum(t, 0, m))
    reg = 0.0
    reg_grad = 0.0
    if cr_reg:
        for k in range(m):
            w[k] = mu[k] / (1.0 + mu[k] * alpha)
        xtwx(X, w, A)
        for k in range(m):
            w[k] = -(w[k] ** 2)
        xtwx(X, w, dA)
        ok, logdet = lu_inverse(A, LU, piv, inv, col)
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


@jit(parallel=False)
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


@jit(parallel=False, inline="always")
def _projgr(x, g, lo, hi):  # pragma: no cover - compiled
    """L-BFGS-B ``projgr``: |projected gradient| of one variable in [lo, hi]."""
    gi = g
    if gi < 0.0:
        gi = max(x - hi, gi)
    else:
        gi = min(x - lo, gi)
    return abs(gi)


@jit(parallel=False, inline="always")
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


@jit(parallel=False)
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


@jit(parallel=False)
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


@jit()
def alpha_mle_kernel(
    Y, MU, X, alpha_hat, lo, hi, cr_reg, prior_reg, prior_var, out, conv
):  # pragma: no cover - compiled
    """pydeseq2 ``fit_alpha_mle`` per gene: 1-D L-BFGS-B on log(alpha), the 2-stage grid where it fails."""
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


@jit()
def wald_kernel(X, disp, lfc, MU, ridge, c, lfc_null, alt, pval, stat, se):  # pragma: no cover - compiled
    """pydeseq2 ``utils.wald_test`` per gene; ``alt`` is a code of :data:`ALT_CODES`."""
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
        xtwx(X, w, M)
        for i in range(p):
            for j in range(p):
                A[i, j] = M[i, j] + ridge[i, j]
        ok, _ = lu_inverse(A, LU, piv, H, col)
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
            pval[g] = 2.0 * norm_sf(abs(st))
        elif alt == 1:  # greaterAbs
            s = 0.0
            for i in range(p):
                v = lfc[g, i]
                sg = 1.0 if v > 0 else (-1.0 if v < 0 else (0.0 if v == 0 else np.nan))
                s += c[i] * (sg * np.fmax((abs(v) - lfc_null) / sd, 0.0))
            stat[g] = s
            pval[g] = 2.0 * norm_sf(abs(s))
        elif alt == 3:  # greater
            s = 0.0
            for i in range(p):
                s += c[i] * np.fmax((lfc[g, i] - lfc_null) / sd, 0.0)
            stat[g] = s
            pval[g] = norm_sf(s)
        elif alt == 4:  # less
            s = 0.0
            for i in range(p):
                s += c[i] * np.fmin((lfc[g, i] - lfc_null) / sd, 0.0)
            stat[g] = s
            pval[g] = norm_sf(abs(s))
        else:  # lessAbs: greater(-|null|) and less(|null|)
            nl = abs(lfc_null)
            s_above = 0.0
            s_below = 0.0
            for i in range(p):
                s_above += c[i] * np.fmax((lfc[g, i] + nl) / sd, 0.0)
                s_below += c[i] * np.fmin((lfc[g, i] - nl) / sd, 0.0)
            p_above = norm_sf(s_above)
            p_below = norm_sf(abs(s_below))
            stat[g] = s_above if abs(s_above) <= abs(s_below) else s_below
            pval[g] = max(p_above, p_below)


#: codes of the alternative hypotheses for :func:`wald_kernel` (``None``: two-sided, lfc_null = 0)
ALT_CODES = {None: 0, "greaterAbs": 1, "lessAbs": 2, "greater": 3, "less": 4}


# ---------------------------------------------------------------------------------------------
# apeGLM shrinkage (pydeseq2 utils.nbinomGLM): Newton on its exact Hessian
# ---------------------------------------------------------------------------------------------


@jit(parallel=False, inline="always")
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


@jit()
def shrink_kernel(X, Y, size, offset, s0, s1, k, beta_out, inv_out, ok_out):  # pragma: no cover - compiled
    """apeGLM MAP per gene (pydeseq2 ``utils.nbinomGLM``); ``ok_out[g]`` false where pydeseq2's own fit is needed."""
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
            if not cholesky_solve(Hm, grad, L, step):
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
        okinv, _ = lu_inverse(Hm, LU, piv, inv, col)
        for i in range(p):
            for j in range(p):
                inv_out[g, i, j] = inv[i, j] if okinv else np.nan

