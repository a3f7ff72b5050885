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

Kernels. The per-gene routines are in :mod:`degflow.kernels.inference` (``alpha_mle``:
:mod:`degflow.kernels.lbfgsb`), their scalar math in
:mod:`degflow.kernels.math`; this module holds the ``Inference`` subclass that lays out the arrays and
calls them.

Numerics. Sums over samples use NumPy's pairwise summation order
(:func:`degflow.kernels.math.pairwise_sum`), and
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
from pydeseq2 import inference as _pd_inference

from degflow.kernels.inference import (
    ALT_CODES,
    irls_kernel,
    lin_mu_kernel,
    moments_disp_kernel,
    rough_disp_kernel,
    shrink_kernel,
    wald_kernel,
)
from degflow.kernels.lbfgsb import alpha_mle_kernel
from degflow.runtime import threads as _threads

__all__ = ["NumbaInference"]

log = logging.getLogger("degflow")


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
            lin_mu_kernel(Y, sf, H, float(min_mu), out)
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
            irls_kernel(Y, sf, X, np.ascontiguousarray(P), d, float(min_mu), float(beta_tol), float(max_beta),
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
            alpha_mle_kernel(Y, MU, X, ah, math.log(min_disp), math.log(max_disp), bool(cr_reg), bool(prior_reg),
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
        if alt_hypothesis not in ALT_CODES:
            raise ValueError(f"unknown alt_hypothesis {alt_hypothesis!r}")
        X = np.ascontiguousarray(design_matrix, dtype=np.float64)
        MU = _genes_by_samples(mu)
        G = MU.shape[0]
        L = np.ascontiguousarray(lfc, dtype=np.float64)
        pval, stat, se = np.empty(G), np.empty(G), np.empty(G)
        with _threads(self._n_cpus):
            wald_kernel(X, np.ascontiguousarray(disp, dtype=np.float64), L, MU,
                         np.ascontiguousarray(ridge_factor, dtype=np.float64),
                         np.ascontiguousarray(contrast, dtype=np.float64), float(lfc_null),
                         ALT_CODES[alt_hypothesis], pval, stat, se)
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
            rough_disp_kernel(N, _projection(X), float(m - p), out)
        return out

    def fit_moments_dispersions(self, normed_counts: np.ndarray, size_factors: np.ndarray) -> np.ndarray:
        """Method-of-moments dispersions of the genes not all zero (pydeseq2 ``utils.fit_moments_dispersions``)."""
        nc = np.asarray(normed_counts, dtype=np.float64)
        nc = nc[:, ~(nc == 0).all(axis=0)]
        N = _genes_by_samples(nc)
        out = np.empty(N.shape[0])
        s_mean_inv = float((1 / np.asarray(size_factors, dtype=np.float64)).mean(axis=0))
        with _threads(self._n_cpus):
            moments_disp_kernel(N, s_mean_inv, out)
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
            shrink_kernel(X, Y, np.ascontiguousarray(size, dtype=np.float64).reshape(G),
                           np.ascontiguousarray(offset, dtype=np.float64), float(prior_no_shrink_scale),
                           float(prior_scale), int(shrink_index), beta, inv, ok)
        rows = np.flatnonzero(~ok)
        self.last_fallbacks["lfc_shrink"] = int(rows.size)
        for g in rows:
            b, h, c = nbinomGLM(X, Y[g], size[g], offset, prior_no_shrink_scale, prior_scale, optimizer, shrink_index)
            beta[g], inv[g], ok[g] = b, h, c
        return beta, inv, ok
