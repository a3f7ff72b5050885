"""Numba kernels of the R-faithful DESeq2 port (:mod:`degflow.de.reference`, ``flavor="deseq2"``).

DESeq2 runs its per-gene loops in C++ (``fitDisp``, ``fitDispGrid``, ``fitBeta``); degflow's
port in :mod:`degflow.de.reference` has a NumPy version of each (vectorised over genes, the readable
reference) and these compiled versions, selected by ``engine="numba"`` (the default):

=========================  =====================================================================
``fit_disp``               Armijo line search on log(alpha) (C++ ``fitDisp``): gene-wise and MAP
                           dispersions, with ``log_posterior`` / ``dlog_posterior`` including the
                           Cox-Reid term ``-1/2 log det(X'WX)`` and its derivative
``fit_disp_grid``          the coarse-then-fine grid of ``fitDispGrid`` for genes that did not
                           converge
``fit_beta``               IRLS for the NB GLM coefficients (C++ ``fitBeta``): ridge 1e-6 on the
                           log2 scale, ``minmu`` in the weights, deviance convergence, then the
                           hat diagonal and the sandwich variances
=========================  =====================================================================

Each gene is one iteration of a ``prange`` over fixed chunks of genes (``nogil``, ``cache=True``,
no fastmath, scratch arrays allocated once per chunk); the p x p algebra (p = number of
coefficients, <= ~10 in real designs) is an LU factorisation with partial pivoting written out,
as LAPACK's ``getrf`` does it for ``numpy.linalg.det``/``solve``/``inv``. Sums over samples follow
NumPy's pairwise order and ``lgamma``/``digamma`` are scipy's algorithms
(:mod:`degflow.kernels.math`), so a gene's arithmetic is the NumPy version's up to the last bits of
the p x p algebra and of ``exp``/``log``; ``tests/test_deseq.py`` asserts the agreement with the
NumPy version and with R. Every gene's arithmetic is independent of the others and of the
thread count, so results are identical for 1 and N threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from degflow.kernels.jit import jit
from degflow.kernels.math import betaln, digamma, lgamma, lu_factor, lu_inv, lu_solve, pairwise_sum, xtwx

__all__ = ["fit_beta", "fit_disp", "fit_disp_grid", "optim_objective"]

_CHUNK = 64  # genes per prange iteration (scratch arrays are allocated once per chunk)


# ---------------------------------------------------------------------------------------------
# Dispersion: log posterior of log(alpha) and its derivative (DESeq2 C++)
# ---------------------------------------------------------------------------------------------


@jit(parallel=False)
def _log_posterior(la, y, mu, X, prior_mean, prior_var, use_prior, w, t, A, LU, piv):  # pragma: no cover
    m = y.shape[0]
    alpha = math.exp(la)
    a1 = 1.0 / alpha
    for k in range(m):
        w[k] = 1.0 / (1.0 / mu[k] + alpha)
    xtwx(X, w, A)
    _ok, sign, logdet = lu_factor(A, LU, piv)
    det = sign * math.exp(logdet)  # NumPy's det: sign * exp(log|det|) from the same factors
    cr = -0.5 * math.log(det) if det >= 0.0 else np.nan
    lg_a1 = lgamma(a1)
    for k in range(m):
        # y = 0: lgamma(0 + a1) is lg_a1 itself (same bits, one lgamma fewer per zero count)
        lg = lg_a1 if y[k] == 0.0 else lgamma(y[k] + a1)
        t[k] = lg - lg_a1 - y[k] * math.log(mu[k] + a1) - a1 * math.log(1.0 + mu[k] * alpha)
    res = pairwise_sum(t, 0, m) + cr
    if use_prior:
        d = la - prior_mean
        res = res - 0.5 * d * d / prior_var
    return res


@jit(parallel=False)
def _dlog_posterior(la, y, mu, X, prior_mean, prior_var, use_prior, w, t, A, dA, LU, piv, col, inv
                    ):  # pragma: no cover - compiled
    m = y.shape[0]
    p = X.shape[1]
    alpha = math.exp(la)
    a1 = 1.0 / alpha
    a2 = a1 * a1
    for k in range(m):
        w[k] = 1.0 / (1.0 / mu[k] + alpha)
    xtwx(X, w, A)
    for k in range(m):
        w[k] = -w[k] * w[k]
    xtwx(X, w, dA)
    lu_factor(A, LU, piv)
    lu_inv(LU, piv, col, inv)
    tr = 0.0
    for i in range(p):
        for j in range(p):
            tr += inv[i, j] * dA[j, i]
    cr = -0.5 * tr
    dg_a1 = digamma(a1)
    for k in range(m):
        ma = mu[k] * alpha
        dg = dg_a1 if y[k] == 0.0 else digamma(y[k] + a1)
        t[k] = dg_a1 + math.log(1.0 + ma) - ma / (1.0 + ma) - dg + y[k] / (mu[k] + a1)
    ll = a2 * pairwise_sum(t, 0, m)
    res = (ll + cr) * alpha
    if use_prior:
        res = res - (la - prior_mean) / prior_var
    return res


@jit()
def _fit_disp_kernel(Y, MU, X, log_alpha0, prior_mean, prior_var, min_log_alpha, use_prior, kappa_0, tol,
                     maxit, out_la, out_iter, out_init, out_last):  # pragma: no cover - compiled
    n, m = Y.shape
    p = X.shape[1]
    epsilon = 1.0e-4
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):
        w = np.empty(m)
        t = np.empty(m)
        A = np.empty((p, p))
        dA = np.empty((p, p))
        LU = np.empty((p, p))
        inv = np.empty((p, p))
        col = np.empty(p)
        piv = np.empty(p, dtype=np.int64)
        for g in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            y = Y[g]
            mu = MU[g]
            pm = prior_mean[g]
            a = log_alpha0[g]
            lp = _log_posterior(a, y, mu, X, pm, prior_var, use_prior, w, t, A, LU, piv)
            dlp = _dlog_posterior(a, y, mu, X, pm, prior_var, use_prior, w, t, A, dA, LU, piv, col, inv)
            out_init[g] = lp
            kappa = kappa_0
            it = 0
            it_acc = 0
            for _ in range(maxit):
                it += 1
                a_prop = a + kappa * dlp
                k = kappa
                if a_prop < -30.0:
                    k = (-30.0 - a) / dlp
                if a_prop > 10.0:
                    k = (10.0 - a) / dlp
                a_new = a + k * dlp
                lp_new = _log_posterior(a_new, y, mu, X, pm, prior_var, use_prior, w, t, A, LU, piv)
                theta_kappa = -lp_new
                theta_hat = -lp - k * epsilon * dlp * dlp
                if not theta_kappa <= theta_hat:  # NaN -> reject, as in C++
                    kappa = k / 2.0
                    continue
                it_acc += 1
                a = a_new
                if lp_new - lp < tol:
                    lp = lp_new
                    break
                if a < min_log_alpha:  # log(alpha) heading to -inf: stop without updating lp
                    break
                lp = lp_new
                dlp = _dlog_posterior(a, y, mu, X, pm, prior_var, use_prior, w, t, A, dA, LU, piv, col, inv)
                kk = min(k * 1.1, kappa_0)
                if it_acc % 5 == 0:
                    kk = kk / 2.0
                kappa = kk
            out_la[g] = a
            out_iter[g] = it
            out_last[g] = lp


@jit()
def _fit_disp_grid_kernel(Y, MU, X, prior_mean, prior_var, use_prior, grid, fine_off, out):  # pragma: no cover
    n, m = Y.shape
    p = X.shape[1]
    ng = grid.shape[0]
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):
        w = np.empty(m)
        t = np.empty(m)
        A = np.empty((p, p))
        LU = np.empty((p, p))
        piv = np.empty(p, dtype=np.int64)
        for g in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            y = Y[g]
            mu = MU[g]
            pm = prior_mean[g]
            best = -np.inf
            a_hat = grid[0]
            found = False
            for i in range(ng):
                v = _log_posterior(grid[i], y, mu, X, pm, prior_var, use_prior, w, t, A, LU, piv)
                if v > best or (not found and v == best):  # np.argmax with NaN as -inf: first maximum
                    best = v
                    a_hat = grid[i]
                    found = True
            best = -np.inf
            a_best = a_hat + fine_off[0]
            found = False
            for i in range(ng):
                a_i = a_hat + fine_off[i]
                v = _log_posterior(a_i, y, mu, X, pm, prior_var, use_prior, w, t, A, LU, piv)
                if v > best or (not found and v == best):
                    best = v
                    a_best = a_i
                    found = True
            out[g] = math.exp(a_best)


# ---------------------------------------------------------------------------------------------
# NB GLM coefficients: IRLS of C++ fitBeta
# ---------------------------------------------------------------------------------------------



# The compiled twin of degflow.de.reference._log_dnbinom_mu (NumPy, vectorised over genes): every loop of the
# port exists twice on purpose, the NumPy version being the readable reference the tests compare this with.
@jit(parallel=False, inline="always")
def _log_dnbinom_mu(y, size, mu):  # pragma: no cover - compiled
    """log NB(y; size, mu), as :func:`degflow.de.reference._log_dnbinom_mu` (accurate for large ``size``)."""
    v = -size * math.log1p(mu / size)
    if y > 0:
        v = (-betaln(size, y + 1.0) - math.log(y + size)) + v + y * (math.log(mu) - math.log(size + mu))
    return v


@jit(parallel=False)
def _nb_deviance(y, mu, alpha, t):  # pragma: no cover - compiled
    """-2 log NB(y; 1/alpha, mu) summed over samples."""
    size = 1.0 / alpha
    m = y.shape[0]
    for k in range(m):
        t[k] = _log_dnbinom_mu(y[k], size, mu[k])
    return -2.0 * pairwise_sum(t, 0, m)


_LOG_SQRT_2PI = float(np.log(np.sqrt(2 * np.pi)))  # scipy's _norm_pdf_logC


@jit(parallel=False)
def _optim_objective_kernel(pv, y, X, sf, size, sd):  # pragma: no cover - compiled
    m, p = X.shape
    ll = 0.0
    for k in range(m):
        eta = 0.0
        for j in range(p):
            eta += X[k, j] * pv[j]
        ll += _log_dnbinom_mu(y[k], size, sf[k] * 2.0**eta)
    log_sd = math.log(sd)
    lprior = 0.0
    for j in range(p):
        x = pv[j] / sd
        lprior += -(x * x) / 2.0 - _LOG_SQRT_2PI - log_sd
    v = -(ll + lprior)
    return v if math.isfinite(v) else 1e300


def optim_objective(pv: np.ndarray, y: np.ndarray, X: np.ndarray, sf: np.ndarray, size: float, sd: float) -> float:
    """Negative log posterior of ``fitNbinomGLMsOptim`` (log2-scale coefficients ``pv``, normal prior sd ``sd``).

    ``1e300`` where it is not finite, as the NumPy objective of :func:`degflow.de.reference._optim_rows`.
    """
    return _optim_objective_kernel(pv, y, X, sf, size, sd)


@jit()
def _fit_beta_kernel(Y, X, SF, alpha, beta0, lam, tol, maxit, minmu, large,
                     out_beta, out_iter, out_hat, out_var):  # pragma: no cover - compiled
    n, m = Y.shape
    p = X.shape[1]
    one_row = SF.shape[0] == 1
    n_chunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(n_chunks):
        mu = np.empty(m)
        w = np.empty(m)
        wz = np.empty(m)
        t = np.empty(m)
        A = np.empty((p, p))
        LU = np.empty((p, p))
        inv = np.empty((p, p))
        S = np.empty((p, p))
        rhs = np.empty(p)
        col = np.empty(p)
        b = np.empty(p)
        piv = np.empty(p, dtype=np.int64)
        for g in range(c * _CHUNK, min(n, (c + 1) * _CHUNK)):
            y = Y[g]
            sf = SF[0] if one_row else SF[g]
            a = alpha[g]
            for j in range(p):
                b[j] = beta0[g, j]
            for k in range(m):
                eta = 0.0
                for j in range(p):
                    eta += X[k, j] * b[j]
                mu[k] = max(sf[k] * math.exp(eta), minmu)
            it = 0
            dev_old = 0.0
            for step in range(maxit):
                it += 1
                for k in range(m):
                    w[k] = mu[k] / (1.0 + a * mu[k])
                    wz[k] = w[k] * (math.log(mu[k] / sf[k]) + (y[k] - mu[k]) / mu[k])
                xtwx(X, w, A)
                for j in range(p):
                    A[j, j] += lam
                    s = 0.0
                    for k in range(m):
                        s += wz[k] * X[k, j]
                    rhs[j] = s
                lu_factor(A, LU, piv)
                lu_solve(LU, piv, rhs, b)
                diverged = False
                for j in range(p):
                    if abs(b[j]) > large:
                        diverged = True
                if diverged:
                    it = maxit
                    break
                for k in range(m):
                    eta = 0.0
                    for j in range(p):
                        eta += X[k, j] * b[j]
                    mu[k] = max(sf[k] * math.exp(eta), minmu)
                dev = _nb_deviance(y, mu, a, t)
                conv = abs(dev - dev_old) / (abs(dev) + 0.1)
                if math.isnan(conv):
                    it = maxit
                    break
                if step > 0 and conv < tol:
                    break
                dev_old = dev
            for j in range(p):
                out_beta[g, j] = b[j]
            out_iter[g] = it
            # final weights from the (floored) mu of the last iterate, as in fitBeta
            for k in range(m):
                w[k] = mu[k] / (1.0 + a * mu[k])
            xtwx(X, w, S)
            for i in range(p):
                for j in range(p):
                    A[i, j] = S[i, j]
                A[i, i] += lam
            lu_factor(A, LU, piv)
            lu_inv(LU, piv, col, inv)
            for k in range(m):
                h = 0.0
                for i in range(p):
                    s = 0.0
                    for j in range(p):
                        s += inv[i, j] * X[k, j]
                    h += X[k, i] * s
                out_hat[g, k] = h * w[k]
            for i in range(p):  # diag(inv S inv)
                v = 0.0
                for j in range(p):
                    s = 0.0
                    for l in range(p):
                        s += S[j, l] * inv[l, i]
                    v += inv[i, j] * s
                out_var[g, i] = v


# ---------------------------------------------------------------------------------------------
# Python entry points (called by degflow.de.reference)
# ---------------------------------------------------------------------------------------------


def _f64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def fit_disp(
    Y: np.ndarray,
    MU: np.ndarray,
    X: np.ndarray,
    log_alpha0: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: float,
    min_log_alpha: float,
    use_prior: bool,
    kappa_0: float,
    tol: float,
    maxit: int,
) -> dict[str, np.ndarray]:
    """Compiled ``fitDisp`` for every row of ``Y``; the keys of :func:`degflow.de.reference._fit_disp_block`.

    Parameters
    ----------
    Y, MU : numpy.ndarray
        Counts and fitted means, genes x samples.
    X : numpy.ndarray
        Design matrix, samples x coefficients.
    log_alpha0, prior_mean : numpy.ndarray
        Start of the search and mean of the log-normal prior, one per gene.
    prior_var : float
        Variance of the prior on log(alpha).
    min_log_alpha : float
        The search stops when log(alpha) falls below this.
    use_prior : bool
        Add the prior (MAP) or not (gene-wise estimate).
    kappa_0, tol, maxit
        DESeq2's line-search settings.

    Returns
    -------
    dict
        ``log_alpha``, ``iter``, ``initial_lp``, ``last_lp`` (one value per gene).
    """
    n = Y.shape[0]
    out = {
        "log_alpha": np.empty(n),
        "iter": np.empty(n, dtype=np.int64),
        "initial_lp": np.empty(n),
        "last_lp": np.empty(n),
    }
    if n:
        _fit_disp_kernel(_f64(Y), _f64(MU), _f64(X), _f64(log_alpha0), _f64(prior_mean), float(prior_var),
                         float(min_log_alpha), bool(use_prior), float(kappa_0), float(tol), int(maxit),
                         out["log_alpha"], out["iter"], out["initial_lp"], out["last_lp"])
    return out


def fit_disp_grid(
    Y: np.ndarray,
    MU: np.ndarray,
    X: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: float,
    use_prior: bool,
    grid: np.ndarray,
    fine_offsets: np.ndarray,
) -> np.ndarray:
    """Compiled ``fitDispGrid``: the best of ``grid``, then of ``best + fine_offsets``; returns alpha."""
    out = np.empty(Y.shape[0])
    if Y.shape[0]:
        _fit_disp_grid_kernel(_f64(Y), _f64(MU), _f64(X), _f64(prior_mean), float(prior_var), bool(use_prior),
                              _f64(grid), _f64(fine_offsets), out)
    return out


def fit_beta(
    Y: np.ndarray,
    X: np.ndarray,
    sf: np.ndarray,
    alpha: np.ndarray,
    beta0: np.ndarray,
    lam: float,
    tol: float,
    maxit: int,
    minmu: float,
    large: float,
) -> dict[str, np.ndarray]:
    """Compiled ``fitBeta`` for every row of ``Y``; the keys of :func:`degflow.de.reference._fit_beta_block`.

    Parameters
    ----------
    Y : numpy.ndarray
        Counts, genes x samples.
    X : numpy.ndarray
        Design matrix, samples x coefficients.
    sf : numpy.ndarray
        Size factors (one per sample) or normalisation factors (genes x samples).
    alpha : numpy.ndarray
        Dispersion of each gene.
    beta0 : numpy.ndarray
        Starting coefficients (natural log scale), genes x coefficients.
    lam : float
        Ridge on the natural-log scale.
    tol, maxit, minmu, large
        Deviance tolerance, iteration cap, floor of the means in the weights, divergence bound.

    Returns
    -------
    dict
        ``beta``, ``iter``, ``hat`` (genes x samples), ``var`` (genes x coefficients).
    """
    n, m = Y.shape
    p = X.shape[1]
    out = {
        "beta": np.empty((n, p)),
        "iter": np.empty(n, dtype=np.int64),
        "hat": np.empty((n, m)),
        "var": np.empty((n, p)),
    }
    if n:
        SF = _f64(sf[None, :] if sf.ndim == 1 else sf)
        _fit_beta_kernel(_f64(Y), _f64(X), SF, _f64(alpha), _f64(beta0), float(lam), float(tol), int(maxit),
                         float(minmu), float(large), out["beta"], out["iter"], out["hat"], out["var"])
    return out
