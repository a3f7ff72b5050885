"""The alpha MLE kernel of :class:`degflow.de.inference.NumbaInference`: scipy's L-BFGS-B ported for one variable.

pydeseq2's ``fit_alpha_mle`` minimises the negative log-likelihood of log(alpha) (with the Cox-Reid term
and an optional normal prior) with ``scipy.optimize.minimize(method="L-BFGS-B")``. :func:`alpha_mle_kernel`
runs the same algorithm per gene in a ``prange``: the generalised Cauchy point, the More-Thuente
``dcsrch``/``dcstep`` line search, the ``factr``/``pgtol`` stopping rules, the memory refresh and
abnormal-termination paths (in one dimension the limited-memory matrix is the secant ``y/s``), then
pydeseq2's 2-stage grid (``grid_fit_alpha``) where L-BFGS-B reports failure. How closely it follows
pydeseq2 is described in :mod:`degflow.de.inference`; the other routines are in
:mod:`degflow.kernels.inference`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from degflow.kernels.jit import jit
from degflow.kernels.math import digamma, lu_inverse, nb_nll, pairwise_sum, xtwx

__all__ = ["alpha_mle_kernel"]

_EPS = float(np.finfo(float).eps)
# scipy.optimize.minimize(method="L-BFGS-B") defaults, as pydeseq2 calls it
_LBFGSB_FTOL = 2.2204460492503131e-09
_LBFGSB_FACTR_EPS = (_LBFGSB_FTOL / _EPS) * _EPS  # epsmch * factr, computed as scipy does
_LBFGSB_PGTOL = 1e-5
_LBFGSB_MAXLS = 20
_LBFGSB_MAXITER = 15000


# ---------------------------------------------------------------------------------------------
# alpha_mle: pydeseq2's fit_alpha_mle with scipy's L-BFGS-B, in one variable
# ---------------------------------------------------------------------------------------------


@jit(parallel=False)
def _alpha_fg(la, y, mu, X, cr_reg, prior_reg, la_hat, prior_var, t, w, A, dA, LU, piv, inv, col):  # pragma: no cover
    """pydeseq2's ``loss`` and ``dloss`` of ``fit_alpha_mle`` at ``log_alpha = la``."""
    m = y.shape[0]
    p = X.shape[1]
    alpha = math.exp(la)
    f = nb_nll(y, mu, alpha, t)
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
