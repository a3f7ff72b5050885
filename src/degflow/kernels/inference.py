"""Numba kernels of :class:`degflow.de.inference.NumbaInference` (pydeseq2's ``Inference`` on numba).

One ``prange`` over genes per routine (``nogil``, ``cache=True``, no fastmath); the p x p algebra and
pydeseq2's ``nb_nll`` come from :mod:`degflow.kernels.math`. What each kernel reproduces, and how
closely, is described in :mod:`degflow.de.inference`:

================================================  ===================================================================
:func:`lin_mu_kernel`                             ``lin_reg_mu`` (least-squares means through the projection)
:func:`rough_disp_kernel`                         ``fit_rough_dispersions``
:func:`moments_disp_kernel`                       ``fit_moments_dispersions``
:func:`irls_kernel`                               ``irls`` (pydeseq2's ``irls_solver``)
:func:`~degflow.kernels.lbfgsb.alpha_mle_kernel`  ``alpha_mle`` (1-D L-BFGS-B + grid)
:func:`wald_kernel`                               ``wald_test`` (all four alternative hypotheses, :data:`ALT_CODES`)
:func:`shrink_kernel`                             ``lfc_shrink_nbinom_glm`` (apeGLM MAP, Newton on the exact Hessian)
================================================  ===================================================================
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from degflow.kernels.jit import jit
from degflow.kernels.math import cholesky_solve, lu_inverse, nb_nll, norm_sf, pairwise_sum, xtwx

__all__ = [
    "ALT_CODES", "irls_kernel", "lin_mu_kernel", "moments_disp_kernel", "rough_disp_kernel",
    "shrink_kernel", "wald_kernel",
]



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
            dev = -2.0 * nb_nll(y, mu, a, t)
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

