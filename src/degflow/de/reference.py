"""The NumPy port of DESeq2's C++ per-gene loops, the readable reference of the numba kernels.

==================================  =====================================================================
:func:`_fit_disp`                   ``fitDisp``: Armijo line search on log(alpha), gene-wise and MAP
                                    dispersions (:func:`_log_posterior`, :func:`_dlog_posterior`)
:func:`_fit_disp_grid`              ``fitDispGrid``: the coarse-then-fine grid for non-converged genes
:func:`_fit_nbinom_glms`            ``fitNbinomGLMs``: IRLS of ``fitBeta`` then R's ``optim`` (L-BFGS-B)
                                    fallback (:func:`_optim_rows`)
:func:`_parametric_dispersion_fit`  ``parametricDispersionFit`` with ``glm(family = Gamma("identity"))``
                                    (:func:`_glm_gamma_identity`)
==================================  =====================================================================

Each loop has a NumPy version vectorised over fixed blocks of genes (``engine="pydeseq2"``, in
``n_cpus`` Python threads, :func:`_run_blocks`) and dispatches to its compiled twin in
:mod:`degflow.kernels.deseq` with ``engine="numba"`` (the default). The constants are DESeq2's
defaults. Used by :mod:`degflow.de.driver`, :mod:`degflow.de.results` and :mod:`degflow.bulk.qc`; the
underscore names are shared inside degflow only (the port's steps, not a public API).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import stats
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln

from degflow.kernels import deseq as _kernels
from degflow.runtime import threads as _threads

log = logging.getLogger("degflow")


MIN_DISP = 1e-8
KAPPA_0 = 1.0
DISP_TOL = 1e-6
DISP_MAXIT = 100
BETA_TOL = 1e-8
BETA_MAXIT = 100
MINMU = 0.5
LARGE_BETA = 30.0
# DESeq2's default "wide" prior: lambda = 1e-6 on the log2 scale, i.e. 1e-6 / log(2)^2 on
# the natural-log scale used by fitBeta.
LAMBDA_LOG2 = 1e-6
LAMBDA_NAT = LAMBDA_LOG2 / math.log(2) ** 2
BLOCK = 4096  # genes per work block; fixed so results never depend on n_cpus


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------


def _run_blocks(fn: Callable[[np.ndarray], Any], n: int, n_cpus: int) -> list[Any]:
    """Apply ``fn`` to fixed-size index blocks of ``range(n)``, in ``n_cpus`` threads.

    Block boundaries depend only on ``n``, so the floating-point work done for each
    gene is identical whatever ``n_cpus`` is.
    """
    blocks = [np.arange(s, min(s + BLOCK, n)) for s in range(0, n, BLOCK)]
    if n_cpus <= 1 or len(blocks) <= 1:
        return [fn(b) for b in blocks]
    with ThreadPoolExecutor(max_workers=n_cpus) as ex:
        return list(ex.map(fn, blocks))


def _rows(norm: np.ndarray, idx: Any) -> np.ndarray:
    """Rows ``idx`` of per-gene normalisation factors; size factors (one per sample) as they are."""
    return norm if norm.ndim == 1 else norm[idx]


def _per_cell(norm: np.ndarray) -> np.ndarray:
    """Size factors as a 1 x samples row (broadcast over genes); normalisation factors unchanged."""
    return norm[None, :] if norm.ndim == 1 else norm


def _xtwx(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Stack of ``X' diag(w_g) X`` for every row ``w_g`` of ``W`` (genes x samples)."""
    return np.einsum("mi,gm,mj->gij", X, W, X, optimize=False)


def _log_dnbinom_mu(y: np.ndarray, size: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """log NB(y; size, mu), accurate for very large ``size`` (R's ``dnbinom_mu``)."""
    y = np.asarray(y, dtype=float)
    size = np.broadcast_to(size, y.shape)
    mu = np.broadcast_to(mu, y.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        size_term = -size * np.log1p(mu / size)
        pos = y > 0
        # lgamma(y+size) - lgamma(size) - lgamma(y+1) = -betaln(size, y+1) - log(y+size)
        comb = np.where(pos, -betaln(size, y + 1.0) - np.log(y + size), 0.0)
        y_term = np.where(pos, y * (np.log(mu) - np.log(size + mu)), 0.0)
    return comb + size_term + y_term


def _nb_deviance(Y: np.ndarray, alpha: np.ndarray, MU: np.ndarray) -> np.ndarray:
    return -2.0 * _log_dnbinom_mu(Y, (1.0 / alpha)[:, None], MU).sum(axis=1)


def _groups(X: np.ndarray) -> np.ndarray:
    """Integer id of each distinct design-matrix row (R ``modelMatrixGroups``)."""
    _, inv = np.unique(np.round(X, 12), axis=0, return_inverse=True)
    return inv.ravel()


def _n_or_more_in_cell(X: np.ndarray, n: int) -> np.ndarray:
    """R ``nOrMoreInCell``: does each sample have >= n samples with its design row."""
    g = _groups(X)
    counts = np.bincount(g)
    return counts[g] >= n


def _linear_model_mu(Y: np.ndarray, X: np.ndarray) -> np.ndarray:
    """R ``linearModelMu``: least-squares fitted values of each row of ``Y`` on ``X``."""
    Q, R = np.linalg.qr(X)
    Rinv = np.linalg.inv(R)
    return (Y @ Q) @ (X @ Rinv).T


# ---------------------------------------------------------------------------
# Dispersion line search: port of DESeq2's C++ log_posterior / dlog_posterior /
# fitDisp / fitDispGrid
# ---------------------------------------------------------------------------


def _log_posterior(
    log_alpha: np.ndarray,
    Y: np.ndarray,
    MU: np.ndarray,
    X: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: float,
    use_prior: bool,
) -> np.ndarray:
    alpha = np.exp(log_alpha)
    a1 = 1.0 / alpha
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        W = 1.0 / (1.0 / MU + alpha[:, None])
        B = _xtwx(X, W)
        cr = -0.5 * np.log(np.linalg.det(B))
        ll = (
            gammaln(Y + a1[:, None])
            - gammaln(a1)[:, None]
            - Y * np.log(MU + a1[:, None])
            - a1[:, None] * np.log(1.0 + MU * alpha[:, None])
        ).sum(axis=1)
    res = ll + cr
    if use_prior:
        res = res - 0.5 * (log_alpha - prior_mean) ** 2 / prior_var
    return res


def _dlog_posterior(
    log_alpha: np.ndarray,
    Y: np.ndarray,
    MU: np.ndarray,
    X: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: float,
    use_prior: bool,
) -> np.ndarray:
    alpha = np.exp(log_alpha)
    a1 = 1.0 / alpha
    a2 = a1 * a1
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        W = 1.0 / (1.0 / MU + alpha[:, None])
        dW = -W * W
        B = _xtwx(X, W)
        dB = _xtwx(X, dW)
        cr = -0.5 * np.trace(np.linalg.solve(B, dB), axis1=1, axis2=2)
        ma = MU * alpha[:, None]
        ll = a2 * (
            digamma(a1)[:, None]
            + np.log(1.0 + ma)
            - ma / (1.0 + ma)
            - digamma(Y + a1[:, None])
            + Y / (MU + a1[:, None])
        ).sum(axis=1)
    res = (ll + cr) * alpha
    if use_prior:
        res = res - (log_alpha - prior_mean) / prior_var
    return res


def _fit_disp_block(
    Y: np.ndarray,
    MU: np.ndarray,
    X: np.ndarray,
    log_alpha0: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: float,
    min_log_alpha: float,
    use_prior: bool,
    kappa_0: float = KAPPA_0,
    tol: float = DISP_TOL,
    maxit: int = DISP_MAXIT,
) -> dict[str, np.ndarray]:
    """Vectorised port of DESeq2's C++ ``fitDisp`` (Armijo line search on log alpha)."""
    epsilon = 1.0e-4
    n = Y.shape[0]
    a = log_alpha0.astype(float).copy()
    lp = _log_posterior(a, Y, MU, X, prior_mean, prior_var, use_prior)
    dlp = _dlog_posterior(a, Y, MU, X, prior_mean, prior_var, use_prior)
    initial_lp = lp.copy()
    kappa = np.full(n, kappa_0)
    it = np.zeros(n, dtype=int)
    it_acc = np.zeros(n, dtype=int)
    active = np.ones(n, dtype=bool)
    for _ in range(maxit):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        it[idx] += 1
        a_i, dlp_i, k_i, lp_i = a[idx], dlp[idx], kappa[idx], lp[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            a_prop = a_i + k_i * dlp_i
            k_i = np.where(a_prop < -30.0, (-30.0 - a_i) / dlp_i, k_i)
            k_i = np.where(a_prop > 10.0, (10.0 - a_i) / dlp_i, k_i)
        a_new = a_i + k_i * dlp_i
        lp_new = _log_posterior(
            a_new, Y[idx], MU[idx], X, prior_mean[idx], prior_var, use_prior
        )
        theta_kappa = -lp_new
        theta_hat = -lp_i - k_i * epsilon * dlp_i**2
        accept = theta_kappa <= theta_hat  # NaN -> reject, as in C++
        # rejected: halve kappa
        rej = idx[~accept]
        kappa[rej] = k_i[~accept] / 2.0
        acc = idx[accept]
        if acc.size:
            it_acc[acc] += 1
            a[acc] = a_new[accept]
            change = lp_new[accept] - lp_i[accept]
            small = change < tol
            # change < tol: keep lpnew and stop
            stop_small = acc[small]
            lp[stop_small] = lp_new[accept][small]
            active[stop_small] = False
            rest = ~small
            acc_r = acc[rest]
            lpn_r = lp_new[accept][rest]
            below = a[acc_r] < min_log_alpha
            # log(alpha) heading to -inf: stop without updating lp (as in C++)
            active[acc_r[below]] = False
            cont = acc_r[~below]
            if cont.size:
                lp[cont] = lpn_r[~below]
                dlp[cont] = _dlog_posterior(
                    a[cont], Y[cont], MU[cont], X, prior_mean[cont], prior_var, use_prior
                )
                kk = np.minimum(k_i[accept][rest][~below] * 1.1, kappa_0)
                kk = np.where(it_acc[cont] % 5 == 0, kk / 2.0, kk)
                kappa[cont] = kk
    return {"log_alpha": a, "iter": it, "initial_lp": initial_lp, "last_lp": lp}


def _fit_disp(
    Y: np.ndarray,
    MU: np.ndarray,
    X: np.ndarray,
    log_alpha0: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: float,
    use_prior: bool,
    n_cpus: int,
    engine: str = "numba",
) -> dict[str, np.ndarray]:
    min_log_alpha = math.log(MIN_DISP / 10)
    if engine == "numba":
        with _threads(n_cpus):
            return _kernels.fit_disp(
                Y, MU, X, log_alpha0, prior_mean, prior_var, min_log_alpha, use_prior, KAPPA_0, DISP_TOL, DISP_MAXIT
            )

    def one(b: np.ndarray) -> dict[str, np.ndarray]:
        return _fit_disp_block(
            Y[b], MU[b], X, log_alpha0[b], prior_mean[b], prior_var, min_log_alpha, use_prior
        )

    parts = _run_blocks(one, Y.shape[0], n_cpus)
    if not parts:
        return {k: np.zeros(0) for k in ("log_alpha", "iter", "initial_lp", "last_lp")}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _fit_disp_grid(
    Y: np.ndarray,
    MU: np.ndarray,
    X: np.ndarray,
    prior_mean: np.ndarray,
    prior_var: float,
    use_prior: bool,
    engine: str = "numba",
    n_cpus: int = 1,
) -> np.ndarray:
    """Port of R ``fitDispGridWrapper`` + C++ ``fitDispGrid``: coarse then fine grid."""
    n_genes = Y.shape[0]
    max_log = math.log(max(10.0, Y.shape[1]))
    grid = np.linspace(math.log(1e-8), max_log, 20)
    delta = grid[1] - grid[0]
    if engine == "numba":
        with _threads(n_cpus):
            return _kernels.fit_disp_grid(
                Y, MU, X, prior_mean, prior_var, use_prior, grid, np.linspace(-delta, delta, grid.size)
            )

    def evaluate(vals: np.ndarray) -> np.ndarray:  # vals: genes x 20
        out = np.empty_like(vals)
        for t in range(vals.shape[1]):
            out[:, t] = _log_posterior(vals[:, t], Y, MU, X, prior_mean, prior_var, use_prior)
        return out

    lp = evaluate(np.broadcast_to(grid, (n_genes, grid.size)).copy())
    a_hat = grid[np.argmax(np.where(np.isnan(lp), -np.inf, lp), axis=1)]
    # arma::linspace(a_hat - delta, a_hat + delta, n)
    fine = a_hat[:, None] + np.linspace(-delta, delta, grid.size)[None, :]
    lp2 = evaluate(fine)
    best = np.argmax(np.where(np.isnan(lp2), -np.inf, lp2), axis=1)
    return np.exp(fine[np.arange(n_genes), best])


# ---------------------------------------------------------------------------
# NB GLM coefficients: port of fitNbinomGLMs / C++ fitBeta / fitNbinomGLMsOptim
# ---------------------------------------------------------------------------


def _fit_beta_block(
    Y: np.ndarray,
    X: np.ndarray,
    sf: np.ndarray,
    alpha: np.ndarray,
    beta0: np.ndarray,
    tol: float = BETA_TOL,
    maxit: int = BETA_MAXIT,
    minmu: float = MINMU,
) -> dict[str, np.ndarray]:
    n, m = Y.shape
    p = X.shape[1]
    ridge = np.eye(p) * LAMBDA_NAT
    beta = beta0.copy()
    with np.errstate(over="ignore"):
        mu = np.maximum(sf * np.exp(beta @ X.T), minmu)
    it = np.zeros(n, dtype=int)
    dev_old = np.zeros(n)
    active = np.ones(n, dtype=bool)
    for t in range(maxit):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        it[idx] += 1
        mu_i = mu[idx]
        y_i = Y[idx]
        w = mu_i / (1.0 + alpha[idx, None] * mu_i)
        z = np.log(mu_i / _rows(sf, idx)) + (y_i - mu_i) / mu_i
        A = _xtwx(X, w) + ridge
        rhs = (w * z) @ X
        bnew = np.linalg.solve(A, rhs[:, :, None])[:, :, 0]
        beta[idx] = bnew
        diverged = (np.abs(bnew) > LARGE_BETA).any(axis=1)
        if diverged.any():
            it[idx[diverged]] = maxit
            active[idx[diverged]] = False
        ok = idx[~diverged]
        if ok.size == 0:
            continue
        with np.errstate(over="ignore"):
            mu[ok] = np.maximum(_rows(sf, ok) * np.exp(beta[ok] @ X.T), minmu)
        dev = _nb_deviance(Y[ok], alpha[ok], mu[ok])
        with np.errstate(invalid="ignore"):
            conv = np.abs(dev - dev_old[ok]) / (np.abs(dev) + 0.1)
        isnan = np.isnan(conv)
        it[ok[isnan]] = maxit
        active[ok[isnan]] = False
        done = (~isnan) & (t > 0) & (conv < tol)
        active[ok[done]] = False
        dev_old[ok] = dev
    # final weights from the (floored) mu of the last iterate, as in fitBeta
    w = mu / (1.0 + alpha[:, None] * mu)
    xtwx = _xtwx(X, w)
    inv = np.linalg.inv(xtwx + ridge)
    hat = np.einsum("mi,gij,mj->gm", X, inv, X, optimize=False) * w
    sigma = inv @ xtwx @ inv
    var = np.diagonal(sigma, axis1=1, axis2=2).copy()
    return {"beta": beta, "iter": it, "hat": hat, "var": var}


def _optim_rows(
    rows: np.ndarray,
    Y: np.ndarray,
    X: np.ndarray,
    sf: np.ndarray,
    alpha: np.ndarray,
    beta_nat: np.ndarray,
    beta_init_nat: np.ndarray,
    stable: np.ndarray,
    minmu: float,
    engine: str = "numba",
) -> tuple[np.ndarray, np.ndarray]:
    """Port of ``fitNbinomGLMsOptim``: L-BFGS-B on the log2-scale negative log posterior.

    As R's ``optim`` here, scipy's L-BFGS-B uses finite-difference gradients: ~(p + 1) objective
    calls per step. With ``engine="numba"`` the objective is compiled
    (:func:`degflow.kernels.deseq.optim_objective`, ~100x faster than the NumPy one).
    """
    log2e = 1.0 / math.log(2)
    lam = LAMBDA_LOG2
    sd = math.sqrt(1.0 / lam)
    out_beta = np.empty((rows.size, X.shape[1]))
    out_var = np.empty((rows.size, X.shape[1]))
    ridge = np.eye(X.shape[1]) * LAMBDA_NAT
    for k, r in enumerate(rows):
        b2 = beta_nat[r] * log2e
        start = b2 if (stable[r] and np.all(np.abs(b2) < LARGE_BETA)) else beta_init_nat[r]
        y = Y[r]
        a = alpha[r]
        sf_r = _rows(sf, r)

        if engine == "numba":
            sf_c = np.ascontiguousarray(np.broadcast_to(sf_r, y.shape), dtype=float)
            y_c = np.ascontiguousarray(y, dtype=float)
            X_c = np.ascontiguousarray(X, dtype=float)

            def obj(pv: np.ndarray, y: np.ndarray = y_c, a: float = a, sf_r: np.ndarray = sf_c,
                    X_c: np.ndarray = X_c) -> float:
                return _kernels.optim_objective(pv, y, X_c, sf_r, 1.0 / a, sd)
        else:
            def obj(pv: np.ndarray, y: np.ndarray = y, a: float = a, sf_r: np.ndarray = sf_r) -> float:
                mu_row = sf_r * np.power(2.0, X @ pv)
                ll = _log_dnbinom_mu(y, np.full_like(y, 1.0 / a), mu_row).sum()
                lprior = stats.norm.logpdf(pv, 0.0, sd).sum()
                v = -(ll + lprior)
                return float(v) if np.isfinite(v) else 1e300

        o = minimize(obj, start, method="L-BFGS-B", bounds=[(-LARGE_BETA, LARGE_BETA)] * X.shape[1])
        pv = o.x
        out_beta[k] = pv / log2e  # back to natural log
        mu_row = np.maximum(sf_r * np.power(2.0, X @ pv), minmu)
        w = 1.0 / (1.0 / mu_row + a)
        xtwx = (X.T * w) @ X
        inv = np.linalg.inv(xtwx + ridge)
        out_var[k] = np.diag(inv @ xtwx @ inv)
    return out_beta, out_var


def _fit_nbinom_glms(
    Y: np.ndarray,
    X: np.ndarray,
    sf: np.ndarray,
    alpha: np.ndarray,
    n_cpus: int,
    minmu: float = MINMU,
    engine: str = "numba",
) -> dict[str, np.ndarray]:
    """Port of ``fitNbinomGLMs`` (no beta prior, QR start, optim fallback)."""
    n = Y.shape[0]
    normed = Y / sf
    Q, R = np.linalg.qr(X)
    beta_init = np.linalg.solve(R, Q.T @ np.log(normed + 0.1).T).T

    if engine == "numba":
        with _threads(n_cpus):
            res = _kernels.fit_beta(Y, X, sf, alpha, beta_init, LAMBDA_NAT, BETA_TOL, BETA_MAXIT, minmu, LARGE_BETA)
    else:
        def one(b: np.ndarray) -> dict[str, np.ndarray]:
            return _fit_beta_block(Y[b], X, _rows(sf, b), alpha[b], beta_init[b], minmu=minmu)

        parts = _run_blocks(one, n, n_cpus)
        res = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {
            "beta": np.zeros((0, X.shape[1])),
            "iter": np.zeros(0, dtype=int),
            "hat": np.zeros((0, X.shape[0])),
            "var": np.zeros((0, X.shape[1])),
        }
    beta, var = res["beta"], res["var"]
    stable = ~np.isnan(beta).any(axis=1)
    var_pos = (var > 0).all(axis=1)
    conv = res["iter"] < BETA_MAXIT
    rows = np.flatnonzero(~conv | ~stable | ~var_pos)
    if rows.size:
        log.debug("fitNbinomGLMs: %d rows refitted with L-BFGS-B", rows.size)
        # R passes the natural-log starting values (beta_mat) as log2-scale starts when
        # the IRLS iterate is unusable; mirrored as is.
        ob, ov = _optim_rows(rows, Y, X, sf, alpha, beta, beta_init, stable, minmu, engine)
        beta = beta.copy()
        var = var.copy()
        beta[rows] = ob
        var[rows] = ov
    with np.errstate(over="ignore"):
        mu = sf * np.exp(beta @ X.T)
    return {
        "beta": beta,
        "var": np.maximum(var, 0.0),
        "mu": mu,
        "hat": res["hat"],
        "iter": res["iter"],
        "optim_rows": rows,
    }


# ---------------------------------------------------------------------------
# Dispersion trend: port of parametricDispersionFit (glm Gamma identity link)
# ---------------------------------------------------------------------------


def _glm_gamma_identity(
    x: np.ndarray, y: np.ndarray, start: np.ndarray, epsilon: float = 1e-8, maxit: int = 25
) -> tuple[np.ndarray, bool]:
    """Port of R's ``glm.fit`` for ``y ~ x`` with ``Gamma(link = "identity")``."""
    Xd = np.column_stack([np.ones_like(x), x])

    def dev_of(mu: np.ndarray) -> float:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(y == 0, 1.0, y / mu)
            return float(np.sum(-2.0 * (np.log(r) - (y - mu) / mu)))

    def valid(mu: np.ndarray) -> bool:
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    coef = np.asarray(start, dtype=float).copy()
    coefold = coef.copy()
    eta = Xd @ coef
    mu = eta
    devold = dev_of(mu)
    conv = False
    for _ in range(maxit):
        z = eta + (y - mu)  # mu.eta = 1 for the identity link
        w = np.sqrt(1.0 / mu**2)  # 1 / variance(mu) * mu.eta^2, square-rooted
        coef = np.linalg.lstsq(Xd * w[:, None], z * w, rcond=None)[0]
        eta = Xd @ coef
        mu = eta
        dev = dev_of(mu)
        if not np.isfinite(dev):
            ii = 1
            while not np.isfinite(dev):
                if ii > maxit:
                    raise FloatingPointError("inner loop 1; cannot correct step size")
                ii += 1
                coef = (coef + coefold) / 2
                eta = Xd @ coef
                mu = eta
                dev = dev_of(mu)
        if not valid(mu):
            ii = 1
            while not valid(mu):
                if ii > maxit:
                    raise FloatingPointError("inner loop 2; cannot correct step size")
                ii += 1
                coef = (coef + coefold) / 2
                eta = Xd @ coef
                mu = eta
            dev = dev_of(mu)
        if abs(dev - devold) / (abs(dev) + 0.1) < epsilon:
            conv = True
            break
        devold = dev
        coefold = coef.copy()
    return coef, conv


def _parametric_dispersion_fit(means: np.ndarray, disps: np.ndarray) -> np.ndarray:
    """Port of DESeq2 ``parametricDispersionFit``; raises on failure like R's ``stop``."""
    coefs = np.array([0.1, 1.0])
    it = 0
    while True:
        residuals = disps / (coefs[0] + coefs[1] / means)
        good = (residuals > 1e-4) & (residuals < 15)
        old = coefs
        coefs, converged = _glm_gamma_identity(1.0 / means[good], disps[good], coefs)
        if not np.all(coefs > 0):
            raise FloatingPointError("parametric dispersion fit failed")
        if np.sum(np.log(coefs / old) ** 2) < 1e-6 and converged:
            return coefs
        it += 1
        if it > 10:
            raise FloatingPointError("dispersion fit did not converge")
