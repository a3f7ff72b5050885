"""Bulk RNA-seq normalisation for QC figures: DESeq2's size factors and variance-stabilising transformation.

Public functions
----------------
median_of_ratios
    DESeq2 median-of-ratios size factors.
variance_stabilised
    DESeq2's variance-stabilising transformation (VST), or ``log2(normalised + 1)``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from degflow.checks import check_count_frame
from degflow.errors import DegflowInputError

__all__ = ["median_of_ratios", "variance_stabilised"]


def median_of_ratios(counts: pd.DataFrame) -> pd.Series:
    """DESeq2 median-of-ratios size factors.

    Each sample's factor is the median, over genes with no zero count in any sample, of the
    ratio of its count to the gene's geometric mean across samples (``estimateSizeFactors``).

    Parameters
    ----------
    counts
        Raw counts, genes x samples.

    Returns
    -------
    pandas.Series
        float64 size factor per sample, named ``size_factor``.
    """
    from degflow.kernels.sizefactors import size_factors_ratio  # the one implementation (numba)

    counts = check_count_frame(counts)
    sf = size_factors_ratio(counts.to_numpy().T)
    return pd.Series(sf, index=pd.Index(counts.columns, name="sample"), name="size_factor")


def _nb_cr_loss(y: np.ndarray, mu: np.ndarray, log_alpha: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of NB(mu, alpha) plus the Cox-Reid term, intercept-only design.

    ``y`` and ``mu`` are samples x genes, ``log_alpha`` one value per gene; returns one loss per
    gene. The same objective as pydeseq2's ``utils.fit_alpha_mle`` (``nb_nll`` +
    ``0.5 * log det(X' W X)`` with ``W = mu / (1 + mu * alpha)``, which for ``X = 1`` is
    ``0.5 * log(sum W)``), evaluated for all genes at once.
    """
    from scipy.special import gammaln

    alpha = np.exp(log_alpha)[None, :]
    inv = 1.0 / alpha
    n = y.shape[0]
    logbinom = gammaln(y + inv) - gammaln(y + 1.0) - gammaln(inv)
    nll = n * (inv[0] * np.log(alpha[0])) + (-logbinom + (y + inv) * np.log(inv + mu) - y * np.log(mu)).sum(axis=0)
    cr = 0.5 * np.log((mu / (1.0 + mu * alpha)).sum(axis=0))
    return nll + cr


def _dispersion_mle(y: np.ndarray, mu: np.ndarray, *, min_disp: float, max_disp: float) -> np.ndarray:
    """Gene-wise dispersion MLE (Cox-Reid adjusted, intercept-only), vectorised over genes.

    Global search on a 64-point grid of ``log(alpha)`` over ``[log min_disp, log max_disp]``,
    then golden-section refinement inside the two grid cells around the best point (48 steps,
    interval < 1e-9 in log alpha). Unlike a gradient optimiser started from a moments
    estimate (pydeseq2's L-BFGS-B), it does not depend on the start and does not stall near
    the lower bound; it takes ~0.05 s for 1,000 genes instead of ~4 s. ``tests/test_qc.py`` checks it against pydeseq2's ``alpha_mle``.
    """
    lo, hi = np.log(min_disp), np.log(max_disp)
    grid = np.linspace(lo, hi, 64)
    losses = np.stack([_nb_cr_loss(y, mu, np.full(y.shape[1], g)) for g in grid])
    best = np.argmin(losses, axis=0)
    step = grid[1] - grid[0]
    a = np.clip(grid[best] - step, lo, hi)
    b = np.clip(grid[best] + step, lo, hi)
    invphi = (np.sqrt(5.0) - 1) / 2
    c = b - invphi * (b - a)
    d = a + invphi * (b - a)
    fc, fd = _nb_cr_loss(y, mu, c), _nb_cr_loss(y, mu, d)
    for _ in range(48):
        left = fc < fd  # minimum in [a, d]: drop (d, b]; else drop [a, c)
        b = np.where(left, d, b)
        a = np.where(left, a, c)
        c_new = np.where(left, b - invphi * (b - a), d)
        d_new = np.where(left, c, a + invphi * (b - a))
        f_eval = _nb_cr_loss(y, mu, np.where(left, c_new, d_new))  # the one new interior point
        fc, fd = np.where(left, f_eval, fd), np.where(left, fc, f_eval)
        c, d = c_new, d_new
    x = (a + b) / 2
    # the grid point can beat the refined one at a bound (monotone loss): keep the better
    x = np.where(_nb_cr_loss(y, mu, x) <= losses[best, np.arange(y.shape[1])], x, grid[best])
    return np.exp(x)


def _trend_fit(means: np.ndarray, disp: np.ndarray) -> tuple[float, float]:
    """Fit ``disp ~ a0 + a1 / means`` as ``DESeq2:::parametricDispersionFit`` does.

    Start from ``(0.1, 1)``; repeat: keep genes whose ratio to the current curve is in
    ``(1e-4, 15)``, fit a Gamma GLM with identity link (IRLS, as R's ``glm`` with
    ``start = coefs``), until the squared log change of the coefficients sums to < 1e-6 (at
    most 11 fits). ``tests/test_qc.py`` reproduces R's coefficients for airway. Raises
    DegflowInputError where R stops (a coefficient <= 0, no convergence); R's ``vst`` then
    falls back to a local fit, we ask for ``method='log2'`` rather than switch silently.
    """
    x_all = np.column_stack([np.ones_like(means), 1.0 / means])
    coefs = np.array([0.1, 1.0])
    fail = "the VST dispersion trend (a0 + a1/mean) {}; use method='log2' instead"
    for _ in range(11):
        ratio = disp / (x_all @ coefs)
        good = (ratio > 1e-4) & (ratio < 15)
        x, y = x_all[good], disp[good]
        beta = coefs.copy()
        mu = x @ beta
        dev_old = np.inf
        converged = False
        for _ in range(25):  # glm.control(): epsilon 1e-8, maxit 25
            if (mu <= 0).any():
                raise DegflowInputError(fail.format("went negative during fitting"))
            w = 1.0 / mu**2  # Gamma variance mu^2, identity link: working response = y
            beta = np.linalg.solve((x * w[:, None]).T @ x, (x * w[:, None]).T @ y)
            mu = x @ beta
            if (mu <= 0).any():
                raise DegflowInputError(fail.format("went negative during fitting"))
            dev = 2 * float(np.sum(-np.log(y / mu) + (y - mu) / mu))
            if abs(dev - dev_old) / (abs(dev) + 0.1) < 1e-8:
                converged = True
                break
            dev_old = dev
        old = coefs
        coefs = beta
        if not (coefs > 0).all():
            raise DegflowInputError(fail.format("has a coefficient <= 0 on these counts"))
        if (np.log(coefs / old) ** 2).sum() < 1e-6 and converged:
            return float(coefs[0]), float(coefs[1])
    raise DegflowInputError(fail.format("did not converge"))


def _vst_trend(counts: np.ndarray, sf: np.ndarray, *, nsub: int, min_disp: float = 1e-8) -> tuple[float, float, int]:
    """Fit DESeq2's parametric dispersion trend ``a0 + a1 / mean`` blind to the design.

    Mirrors R ``DESeq2::vst``: take ``nsub`` genes with mean normalised count > 5, evenly spaced
    along their mean (``o[round(seq(1, length(o), length = nsub))]``), estimate gene-wise
    dispersions with an intercept-only model (``estimateDispersionsGeneEst`` as ported in
    :mod:`degflow.de.driver`: fitted means ``s_i * mean(normalised)`` floored at 0.5), keep those above
    ``100 * min_disp`` as R's ``estimateDispersionsFit`` does, and fit the gamma-family trend.

    Returns ``(a0, a1, n_genes_used)``.
    """
    normed = counts / sf[None, :]
    base_mean = normed.mean(axis=1)
    cand = np.flatnonzero(base_mean > 5)
    if cand.size < 10:
        raise DegflowInputError(
            f"only {cand.size} genes have a mean normalised count > 5, too few to fit the VST dispersion trend; "
            "use method='log2' for such shallow data"
        )
    order = cand[np.argsort(base_mean[cand], kind="stable")]
    if order.size > nsub:
        # R rounds half to even, as np.rint does
        pick = np.rint(np.linspace(1, order.size, nsub)).astype(int) - 1
        order = order[pick]
    y = counts[order].T  # samples x genes
    ny = normed[order].T
    n = y.shape[0]
    if n < 2:
        raise DegflowInputError("the VST needs at least 2 samples to estimate dispersions")
    from degflow.de.driver import _genewise_dispersions  # noqa: PLC0415 - the R port of estimateDispersionsGeneEst

    # R's own gene-wise estimates (moments start, line search, grid fallback; design ~ 1), not the exact MLE:
    # the exact MLE (_dispersion_mle) moves airway's trend from R's a1 = 3.378 to 2.946 and the VST by up to 0.19.
    # NumPy loops (engine "pydeseq2"): 0.05 s for 1,000 genes, no compilation.
    disp = _genewise_dispersions(y.T, np.ones((n, 1)), sf, 1, engine="pydeseq2")["disp"]
    keep = disp > 100 * min_disp  # R: useForFit <- dispGeneEst > 100 * minDisp
    if keep.sum() < 10:
        raise DegflowInputError(
            "fewer than 10 genes show extra-Poisson variation, the VST trend cannot be fitted; use method='log2'"
        )
    from degflow.de.reference import _parametric_dispersion_fit  # noqa: PLC0415 - R's convergence rule exactly

    try:
        a0, a1 = (float(c) for c in _parametric_dispersion_fit(ny.mean(axis=0)[keep], disp[keep]))
    except FloatingPointError:  # where R stops; R's vst would then switch to a local fit, we ask instead
        raise DegflowInputError(
            "the VST dispersion trend (a0 + a1/mean) cannot be fitted on these counts; use method='log2' instead"
        ) from None
    return a0, a1, int(order.size)


def variance_stabilised(
    counts: pd.DataFrame,
    size_factors: pd.Series | None = None,
    *,
    method: Literal["vst", "log2"] = "vst",
    nsub: int = 1000,
    pseudocount: float = 1.0,
) -> pd.DataFrame:
    """Variance-stabilised expression for PCA, sample distances and heatmaps.

    ``method="vst"`` (default) is DESeq2's ``vst(blind = TRUE)``: the parametric dispersion
    trend ``alpha(mu) = a0 + a1 / mu`` is fitted on ``nsub`` genes (see below) and every
    normalised count ``q`` becomes

    ``log2((1 + a1 + 2 a0 q + 2 sqrt(a0 q (1 + a1 + a0 q))) / (4 a0))``.

    Why not ``pydeseq2.DeseqDataSet.vst``: it fits dispersions for *every* gene (160 s on
    airway's 33k expressed genes on one core). R fits the trend on a 1,000-gene subset; we
    follow R: the subset is the ``nsub`` genes with mean normalised count > 5, evenly spaced by
    mean (all of them if fewer), their dispersions are DESeq2's gene-wise estimates under an
    intercept-only design (blind; the port in :mod:`degflow.de.reference`, whose line search stops where
    R's does), and the trend is R's ``parametricDispersionFit`` (ported there too). On airway the
    trend and the VST are R's to ~1e-9 (``tests/test_batch_goi.py``). 0.3 s on airway.

    ``method="log2"`` is ``log2(counts / size_factor + pseudocount)``: instantaneous and fine
    for a quick look, but low counts then dominate the variance (DESeq2 vignette, section
    "Transformations"), so it is not the default.

    Parameters
    ----------
    counts
        Raw counts, genes x samples.
    size_factors
        Per-sample size factors (e.g. from the DE step); median-of-ratios if ``None``.
    method
        ``"vst"`` or ``"log2"``.
    nsub
        Genes used to fit the VST trend (R's ``nsub``).
    pseudocount
        Added before ``log2`` when ``method="log2"``.

    Returns
    -------
    pandas.DataFrame
        float64, genes x samples, same index and columns as ``counts``. ``attrs["degflow"]``
        holds ``method``, and for the VST the trend coefficients ``a0``, ``a1`` and the number
        of genes used to fit them.
    """
    counts = check_count_frame(counts)
    if method not in ("vst", "log2"):
        raise DegflowInputError(f"method must be 'vst' or 'log2', got {method!r}")
    if size_factors is None:
        sf_s = median_of_ratios(counts)
    else:
        sf_s = pd.Series(size_factors)
        missing = [s for s in counts.columns if s not in sf_s.index]
        if missing:
            raise DegflowInputError(f"size_factors has no value for sample(s) {missing[:3]}")
        sf_s = sf_s.reindex(counts.columns).astype(float)
        if not (np.isfinite(sf_s) & (sf_s > 0)).all():
            raise DegflowInputError("size_factors must be finite and > 0 for every sample")
    sf = sf_s.to_numpy(dtype=float)
    values = counts.to_numpy(dtype=float)
    normed = values / sf[None, :]
    params: dict[str, object] = {"method": method, "size_factors": dict(zip(counts.columns, sf.tolist(), strict=True))}
    if method == "log2":
        if pseudocount <= 0:
            raise DegflowInputError(f"pseudocount must be > 0, got {pseudocount!r}")
        out = np.log2(normed + pseudocount)
        params["pseudocount"] = pseudocount
    else:
        if int(nsub) < 10:
            raise DegflowInputError(f"nsub must be >= 10, got {nsub!r}")
        a0, a1, used = _vst_trend(values, sf, nsub=int(nsub))
        out = np.log2(
            (1 + a1 + 2 * a0 * normed + 2 * np.sqrt(a0 * normed * (1 + a1 + a0 * normed))) / (4 * a0)
        )
        params.update({"a0": a0, "a1": a1, "n_genes_trend": used, "nsub": int(nsub), "blind": True})
    res = pd.DataFrame(out, index=counts.index, columns=counts.columns)
    res.attrs["degflow"] = params
    return res

