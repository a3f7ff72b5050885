"""The driver of the R-faithful DESeq2 port: the estimation steps of ``DESeq()`` in R's order.

:func:`_fit_r_faithful` (called by :func:`degflow.de.fit.fit_deseq` with ``flavor="deseq2"``) runs
size factors (:func:`_r_size_factors`, ``estimateSizeFactorsForMatrix``), :func:`_deseq_core` (gene-wise
dispersions, trend, prior variance, MAP dispersions, Wald fit, Cook's distances), then the outlier
replacement and refit, and stores the results where pydeseq2 keeps them. The per-gene loops are in
:mod:`degflow.de.reference` (NumPy) and :mod:`degflow.kernels.deseq` (numba); R's own functions are
emulated in :mod:`degflow.de.rcompat`. The underscore names here are shared inside :mod:`degflow.de` only.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import polygamma

from degflow.de import rcompat
from degflow.de.reference import (
    DISP_MAXIT,
    MIN_DISP,
    MINMU,
    _fit_disp,
    _fit_disp_grid,
    _fit_nbinom_glms,
    _groups,
    _linear_model_mu,
    _n_or_more_in_cell,
    _parametric_dispersion_fit,
    _per_cell,
    _rows,
)
from degflow.errors import DegflowInputError
from degflow.kernels import rsim

log = logging.getLogger("degflow")


def _prior_var_simulated(residuals: np.ndarray, df: int, seed: int) -> float:
    """Port of the ``(m - p) <= 3`` branch of ``estimateDispersionsPriorVar``."""
    obs = residuals[(residuals > -10) & (residuals < 10)]
    obs_dens = rcompat.hist_density(obs)
    grid = np.linspace(0.0, 8.0, 200)
    kl = rsim.kl_rows(rcompat.simulated_densities(int(df), int(seed)), obs_dens)
    fine = np.linspace(0.0, 8.0, 1000)
    fitted = rcompat.loess_interpolate(grid, kl, fine, span=0.2)
    argmin = float(fine[int(np.nanargmin(fitted))])
    return max(argmin, 0.25)


def _estimate_prior_var(
    disp_gene: np.ndarray, disp_fit: np.ndarray, var_log_disp: float, m: int, p: int, seed: int
) -> float:
    """Port of DESeq2 ``estimateDispersionsPriorVar``."""
    above = disp_gene >= MIN_DISP * 100
    if not above.any():
        raise DegflowInputError(
            "every gene-wise dispersion estimate is below 1e-6, so DESeq2's dispersion prior "
            "cannot be estimated; check the count matrix (are the samples near-identical copies?)"
        )
    if (m - p) <= 3 and m > p:
        resid = np.log(disp_gene[above]) - np.log(disp_fit[above])
        return _prior_var_simulated(resid, m - p, seed)
    if m > p:
        return max(var_log_disp - float(polygamma(1, (m - p) / 2)), 0.25)
    return var_log_disp


# ---------------------------------------------------------------------------
# The R-faithful pipeline
# ---------------------------------------------------------------------------


def _genewise_dispersions(
    Y: np.ndarray, X: np.ndarray, sf: np.ndarray, n_cpus: int, engine: str = "numba"
) -> dict[str, np.ndarray]:
    """Port of ``estimateDispersionsGeneEst`` (niter = 1, no weights)."""
    m, p = X.shape
    normed = Y / sf
    base_mean = normed.mean(axis=1)
    base_var = normed.var(axis=1, ddof=1)
    max_disp = max(10.0, m)
    # roughDispEstimate / momentsDispEstimate
    mu_lin = np.maximum(1.0, _linear_model_mu(normed, X))
    rough = np.maximum((((normed - mu_lin) ** 2 - mu_lin) / mu_lin**2).sum(axis=1) / (m - p), 0.0)
    # momentsDispEstimate: mean(1 / colMeans(normalizationFactors)) when they are set
    xim = np.mean(1.0 / (sf if sf.ndim == 1 else sf.mean(axis=0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        moments = (base_var - xim * base_mean) / base_mean**2
    alpha_init = np.minimum(np.maximum(MIN_DISP, np.minimum(rough, moments)), max_disp)
    linear_mu = np.unique(_groups(X)).size == p
    if linear_mu:
        mu = _linear_model_mu(normed, X) * sf
    else:
        mu = _fit_nbinom_glms(Y, X, sf, alpha_init, n_cpus, engine=engine)["mu"]
    mu = np.maximum(mu, MINMU)
    res = _fit_disp(Y, mu, X, np.log(alpha_init), np.log(alpha_init), 1.0, False, n_cpus, engine)
    disp = np.minimum(np.exp(res["log_alpha"]), max_disp)
    no_increase = res["last_lp"] < res["initial_lp"] + np.abs(res["initial_lp"]) / 1e6
    disp[no_increase] = alpha_init[no_increase]
    conv = (res["iter"] < DISP_MAXIT) & (res["iter"] != 1)
    refit = ~conv & (disp > MIN_DISP * 10)
    if refit.any():
        disp[refit] = _fit_disp_grid(Y[refit], mu[refit], X, np.zeros(refit.sum()), 1.0, False, engine, n_cpus)
    disp = np.minimum(np.maximum(disp, MIN_DISP), max_disp)
    return {
        "disp": disp,
        "iter": res["iter"],
        "mu": mu,
        "base_mean": base_mean,
        "n_grid": np.array([refit.sum()]),
    }


def _map_dispersions(
    Y: np.ndarray,
    X: np.ndarray,
    mu: np.ndarray,
    disp_gene: np.ndarray,
    disp_fit: np.ndarray,
    prior_var: float,
    var_log_disp: float,
    n_cpus: int,
    engine: str = "numba",
) -> dict[str, np.ndarray]:
    """Port of ``estimateDispersionsMAP`` (outlierSD = 2)."""
    m = X.shape[0]
    init = np.where(disp_gene > 0.1 * disp_fit, disp_gene, disp_fit)
    res = _fit_disp(Y, mu, X, np.log(init), np.log(disp_fit), prior_var, True, n_cpus, engine)
    disp_map = np.exp(res["log_alpha"])
    refit = res["iter"] >= DISP_MAXIT
    if refit.any():
        disp_map[refit] = _fit_disp_grid(
            Y[refit], mu[refit], X, np.log(disp_fit[refit]), prior_var, True, engine, n_cpus
        )
    disp_map = np.minimum(np.maximum(disp_map, MIN_DISP), max(10.0, m))
    outlier = np.log(disp_gene) > np.log(disp_fit) + 2.0 * math.sqrt(var_log_disp)
    final = np.where(outlier, disp_gene, disp_map)
    return {"map": disp_map, "final": final, "outlier": outlier, "iter": res["iter"]}


def _robust_mom_disp(normed: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Port of ``robustMethodOfMomentsDisp`` (genes x samples)."""
    three = _n_or_more_in_cell(X, 3)
    if three.any():
        g = _groups(X)[three]
        sub = normed[:, three]
        var_est = []
        for lvl in np.unique(g):
            cols = sub[:, g == lvl]
            k = cols.shape[1]
            idx = 0 if k < 3.5 else (1 if k < 23.5 else 2)
            trim = (1 / 3, 1 / 4, 1 / 8)[idx]
            scale = (2.04, 1.86, 1.51)[idx]
            cm = rcompat.trim_mean(cols, trim)
            var_est.append(scale * rcompat.trim_mean((cols - cm[:, None]) ** 2, trim))
        v = np.max(np.column_stack(var_est), axis=1)
    else:
        rm = rcompat.trim_mean(normed, 1 / 8)
        v = 1.51 * rcompat.trim_mean((normed - rm[:, None]) ** 2, 1 / 8)
    mean = normed.mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = (v - mean) / mean**2
    return np.maximum(alpha, 0.04)


def _cooks(Y: np.ndarray, X: np.ndarray, sf: np.ndarray, mu: np.ndarray, hat: np.ndarray) -> np.ndarray:
    """Port of ``calculateCooksDistance`` (genes x samples)."""
    p = X.shape[1]
    d = _robust_mom_disp(Y / sf, X)
    V = mu + d[:, None] * mu**2
    with np.errstate(divide="ignore", invalid="ignore"):
        return (Y - mu) ** 2 / V / p * hat / (1.0 - hat) ** 2


def _max_cooks(cooks: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Port of ``recordMaxCooks``."""
    use = _n_or_more_in_cell(X, 3)
    m, p = X.shape
    if m > p and use.any():
        return cooks[:, use].max(axis=1)
    return np.full(cooks.shape[0], np.nan)


def _deseq_core(
    Y: np.ndarray,
    X: np.ndarray,
    sf: np.ndarray,
    n_cpus: int,
    seed: int,
    trend: np.ndarray | None = None,
    prior_var: float | None = None,
    var_log_disp: float | None = None,
    engine: str = "numba",
) -> dict[str, Any]:
    """Dispersions + Wald fit for the non-all-zero genes ``Y`` (genes x samples).

    With ``trend``/``prior_var``/``var_log_disp`` given (the refit after outlier
    replacement) the trend is not refitted, as in ``refitWithoutOutliers``.
    """
    m, p = X.shape
    ge = _genewise_dispersions(Y, X, sf, n_cpus, engine)
    disp_gene, base_mean = ge["disp"], ge["base_mean"]
    info: dict[str, Any] = {"n_grid_genewise": int(ge["n_grid"][0])}
    if trend is None:
        use = disp_gene > 100 * MIN_DISP
        if not use.any():
            raise DegflowInputError(
                "all gene-wise dispersion estimates are within 2 orders of magnitude of the "
                "minimum (1e-8), so no dispersion trend can be fitted; check the count matrix"
            )
        try:
            trend = _parametric_dispersion_fit(base_mean[use], disp_gene[use])
            info["fit_type"] = "parametric"
        except (FloatingPointError, np.linalg.LinAlgError) as exc:
            # R substitutes a locfit local regression here; locfit is not ported, so
            # we use DESeq2's fitType="mean" rule instead and say so.
            log.warning(
                "parametric dispersion trend failed (%s); using the mean of gene-wise "
                "dispersions (DESeq2 would use fitType='local')",
                exc,
            )
            use_mean = disp_gene > 10 * MIN_DISP
            mean_disp = float(rcompat.trim_mean(disp_gene[use_mean][None, :], 0.001)[0])
            trend = np.array([mean_disp, 0.0])
            info["fit_type"] = "mean"
        disp_fit = trend[0] + trend[1] / base_mean
        above = disp_gene >= MIN_DISP * 100
        var_log_disp = rcompat.mad(np.log(disp_gene[above]) - np.log(disp_fit[above])) ** 2
        prior_var = _estimate_prior_var(disp_gene, disp_fit, var_log_disp, m, p, seed)
    else:
        disp_fit = trend[0] + trend[1] / base_mean
    assert prior_var is not None and var_log_disp is not None
    mp = _map_dispersions(Y, X, ge["mu"], disp_gene, disp_fit, prior_var, var_log_disp, n_cpus, engine)
    fit = _fit_nbinom_glms(Y, X, sf, mp["final"], n_cpus, engine=engine)
    cooks = _cooks(Y, X, sf, fit["mu"], fit["hat"])
    info.update(
        {
            "trend": np.asarray(trend, dtype=float),
            "prior_var": float(prior_var),
            "var_log_disp": float(var_log_disp),
        }
    )
    return {
        "base_mean": base_mean,
        "disp_gene": disp_gene,
        "disp_gene_iter": ge["iter"],
        "disp_fit": disp_fit,
        "disp_map": mp["map"],
        "disp": mp["final"],
        "disp_outlier": mp["outlier"],
        "mu_disp": ge["mu"],
        "beta": fit["beta"],
        "beta_var": fit["var"],
        "mu": fit["mu"],
        "hat": fit["hat"],
        "cooks": cooks,
        "max_cooks": _max_cooks(cooks, X),
        "info": info,
    }


def _r_size_factors(Y: np.ndarray) -> np.ndarray:
    """Port of ``estimateSizeFactorsForMatrix`` (median of ratios; Y genes x samples)."""
    with np.errstate(divide="ignore"):
        logc = np.log(Y.astype(float))
    loggeo = logc.mean(axis=1)
    ok = np.isfinite(loggeo)
    if not ok.any():
        raise DegflowInputError(
            "every gene has a zero count in at least one sample, so median-of-ratios size factors "
            "are undefined (DESeq2 stops here too); pass size_factors= or remove empty samples"
        )
    sf = np.empty(Y.shape[1])
    for j in range(Y.shape[1]):
        use = ok & (Y[:, j] > 0)
        sf[j] = math.exp(float(np.median(logc[use, j] - loggeo[use])))
    return sf


def _fit_r_faithful(
    dds: Any, X: np.ndarray, sf_given: np.ndarray | None, refit_cooks: bool, n_cpus: int, rseed: int,
    nf_given: np.ndarray | None = None,
    engine: str = "numba",
) -> None:
    """Run the DESeq2 port and store everything where pydeseq2 keeps it.

    ``nf_given`` (genes x samples) replaces the size factors everywhere, as DESeq2's
    ``normalizationFactors``; ``sf`` below is then that matrix restricted to the genes at hand.
    """
    counts = np.asarray(dds.X, dtype=np.int64).T  # genes x samples
    G, m = counts.shape
    p = X.shape[1]
    Y = counts.astype(float)
    all_zero = counts.sum(axis=1) == 0
    nz = np.flatnonzero(~all_zero)
    if nf_given is not None:
        sf_all = nf_given
        sf = nf_given[nz]
    else:
        sf = sf_all = _r_size_factors(counts) if sf_given is None else sf_given
    Ynz = Y[nz]
    core = _deseq_core(Ynz, X, sf, n_cpus, rseed, engine=engine)
    info = core["info"]
    base_mean = core["base_mean"].copy()
    # --- refitWithoutOutliers ---------------------------------------------------
    replace = np.zeros(nz.size, dtype=bool)
    new_all_zero = np.zeros(nz.size, dtype=bool)
    refitted = np.zeros(nz.size, dtype=bool)
    replaceable = _n_or_more_in_cell(X, 7)
    max_cooks = core["max_cooks"].copy()
    if refit_cooks and replaceable.any() and m > p:
        cutoff = stats.f.ppf(0.99, p, m - p)
        with np.errstate(invalid="ignore"):
            flagged = core["cooks"] > cutoff
        replace = flagged.any(axis=1)
        if replace.any():
            trim_bm = rcompat.trim_mean(Ynz / sf, 0.2)
            repl = np.trunc(trim_bm[:, None] * _per_cell(sf))
            newY = Ynz.copy()
            mask = flagged & replaceable[None, :]
            newY[mask] = repl[mask]
            base_mean = (newY / sf).mean(axis=1)
            new_all_zero = replace & (newY.sum(axis=1) == 0)
            refitted = replace & ~new_all_zero
            if refitted.any():
                log.info("replacing outliers and refitting for %d genes", int(replace.sum()))
                sub = _deseq_core(
                    newY[refitted],
                    X,
                    _rows(sf, refitted),
                    n_cpus,
                    rseed,
                    trend=info["trend"],
                    prior_var=info["prior_var"],
                    var_log_disp=info["var_log_disp"],
                    engine=engine,
                )
                for key in ("disp_gene", "disp_fit", "disp_map", "disp", "beta", "beta_var", "mu", "hat"):
                    core[key][refitted] = sub[key]
                core["disp_outlier"][refitted] = sub["disp_outlier"]
                base_mean[refitted] = sub["base_mean"]
                if replaceable.all():
                    max_cooks[:] = np.nan
                else:
                    rc = core["cooks"].copy()
                    rc[:, replaceable] = 0.0
                    max_cooks = _max_cooks(rc, X)
            for key in ("beta", "beta_var"):
                core[key][new_all_zero] = np.nan
            replaced_counts = counts.astype(float).copy()
            replaced_counts[nz] = newY
            dds.layers["replace_counts"] = replaced_counts.T  # R's assay "replaceCounts" (the LRT refits on them)
    # --- store in the DeseqDataSet ------------------------------------------------
    def full(vals: np.ndarray, fill: float = np.nan) -> np.ndarray:
        out = np.full((G,) + vals.shape[1:], fill, dtype=float)
        out[nz] = vals
        return out

    if nf_given is not None:
        dds.obs["size_factors"] = np.exp(np.log(nf_given).mean(axis=0))
        dds.layers["normalization_factors"] = nf_given.T.copy()
        dds.layers["normed_counts"] = counts.T / nf_given.T
        dds.uns["degflow"]["normalization"] = "normalization_factors"
    else:
        dds.obs["size_factors"] = sf_all
        dds.layers["normed_counts"] = counts.T / sf_all[:, None]
        dds.uns["degflow"]["normalization"] = "size_factors"
    bm_full = full(base_mean, 0.0)
    dds.var["_normed_means"] = bm_full
    dds.var["non_zero"] = ~all_zero
    dds.non_zero_idx = nz
    dds.non_zero_genes = dds.var_names[~all_zero]
    dds.var["_MoM_dispersions"] = np.nan
    dds.var["genewise_dispersions"] = full(core["disp_gene"])
    dds.var["_disp_gene_iter"] = full(core["disp_gene_iter"].astype(float))
    dds.var["fitted_dispersions"] = full(core["disp_fit"])
    dds.var["MAP_dispersions"] = full(core["disp_map"])
    dds.var["dispersions"] = full(core["disp"])
    dds.var["_outlier_genes"] = full(core["disp_outlier"].astype(float), 0.0).astype(bool)
    dds.var["_max_cooks"] = full(max_cooks)
    dds.var["replaced"] = full(replace.astype(float), 0.0).astype(bool)
    dds.var["refitted"] = full(refitted.astype(float), 0.0).astype(bool)
    dds.var["_new_all_zero"] = full(new_all_zero.astype(float), 0.0).astype(bool)
    dds.new_all_zeroes_genes = dds.var_names[dds.var["_new_all_zero"].to_numpy()]
    cols = dds.obsm["design_matrix"].columns
    dds.varm["LFC"] = pd.DataFrame(full(core["beta"]), index=dds.var_names, columns=cols)
    dds.varm["_beta_var"] = full(core["beta_var"])
    dds.layers["cooks"] = full(core["cooks"]).T
    dds.layers["_mu_hat"] = full(core["mu_disp"]).T
    dds.layers["_mu_LFC"] = full(core["mu"]).T
    trend = info["trend"]
    if info.get("fit_type", "parametric") == "parametric":
        dds.uns["disp_function_type"] = "parametric"
        dds.uns["trend_coeffs"] = pd.Series(trend, index=["a0", "a1"])
    else:
        dds.uns["disp_function_type"] = "mean"
        dds.uns["mean_disp"] = float(trend[0])
    dds.uns["prior_disp_var"] = np.array(info["prior_var"])
    dds.uns["_squared_logres"] = info["var_log_disp"]
    dds.uns["degflow"].update(
        {
            "trend": [float(t) for t in trend],
            "fit_type": info.get("fit_type", "parametric"),
            "prior_var": info["prior_var"],
            "var_log_disp": info["var_log_disp"],
            "n_replaced": int(replace.sum()),
            "n_grid_genewise": info["n_grid_genewise"],
        }
    )
    log.info(
        "DESeq2 fit: %d genes (%d all-zero), trend %.5g + %.5g/mu, prior variance %.4g",
        G,
        int(all_zero.sum()),
        trend[0],
        trend[1],
        info["prior_var"],
    )
