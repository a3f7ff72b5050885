"""DESeq2's ``results()`` tables from a fitted data set: Wald contrasts and the likelihood-ratio test.

:func:`contrast_results` (a contrast of a factor's levels, DESeq2's ``name`` / numeric / list contrasts
over :func:`coefficient_names`, thresholded alternative hypotheses, apeGLM shrinkage) and
:func:`lrt_results` (``nbinomLRT`` + ``results()``) take the data set of :func:`degflow.de.fit.fit_deseq`.
Cook's filtering, ``contrastAllZero`` and independent filtering follow R (:mod:`degflow.de.rcompat`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from degflow.de import rcompat
from degflow.de.fit import _inference, _quiet
from degflow.de.reference import LAMBDA_NAT, MINMU, _fit_nbinom_glms, _log_dnbinom_mu, _per_cell, _rows, _xtwx
from degflow.errors import DegflowInputError

log = logging.getLogger("degflow")

__all__ = ["contrast_results", "lrt_results", "coefficient_names"]

AltHypothesis = Literal["greaterAbs", "lessAbs", "greater", "less"]


RESULT_COLUMNS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]


def _check_contrast(dds: Any, contrast: Sequence[str]) -> tuple[str, str, str]:
    if isinstance(contrast, str) or len(contrast) != 3:
        raise DegflowInputError(
            "a contrast is three strings: [variable, tested level, reference level], e.g. ['dex', 'trt', 'untrt']"
        )
    var, num, den = (str(c) for c in contrast)
    if var not in dds.obs.columns or not isinstance(dds.obs[var].dtype, pd.CategoricalDtype):
        raise DegflowInputError(f"contrast variable '{var}' is not a factor of the design")
    levels = [str(c) for c in dds.obs[var].cat.categories]
    for lv in (num, den):
        if lv not in levels:
            raise DegflowInputError(f"'{lv}' is not a level of '{var}' (levels: {', '.join(levels)})")
    if num == den:
        raise DegflowInputError(f"contrast compares level '{num}' of '{var}' with itself")
    return var, num, den


def _contrast_vector(dds: Any, var: str, num: str, den: str) -> np.ndarray:
    # Built afresh rather than dds.contrast(): formulaic_contrasts registers its materializer class
    # when a FormulaicContrasts is created, so a DeseqDataSet unpickled in a new process (the
    # workflow's per-contrast jobs) cannot materialise contrasts through its stored model spec.
    from formulaic_contrasts import FormulaicContrasts  # noqa: PLC0415

    vec = FormulaicContrasts(dds.obs, dds.uns["degflow"]["design"]).contrast(
        column=var, baseline=den, group_to_compare=num
    )
    return np.asarray(vec, dtype=float)


def _wald_r(dds: Any, c: np.ndarray, minmu: float = MINMU) -> tuple[np.ndarray, np.ndarray]:
    """Natural-log contrast estimate and SE as ``getContrast``/``fitBeta(maxit=0)``."""
    X = np.asarray(dds.obsm["design_matrix"].to_numpy(), dtype=float)
    beta = dds.varm["LFC"].to_numpy()
    if "normalization_factors" in dds.layers:
        sf = np.asarray(dds.layers["normalization_factors"], dtype=float).T  # genes x samples
    else:
        sf = dds.obs["size_factors"].to_numpy(dtype=float)
    disp = dds.var["dispersions"].to_numpy()
    est = np.full(beta.shape[0], np.nan)
    se = np.full(beta.shape[0], np.nan)
    ok = np.flatnonzero(~np.isnan(beta).any(axis=1))
    if ok.size == 0:
        return est, se
    b = beta[ok]
    with np.errstate(over="ignore"):
        mu = np.maximum(_rows(sf, ok) * np.exp(b @ X.T), minmu)
    w = mu / (1.0 + disp[ok, None] * mu)
    xtwx = _xtwx(X, w)
    inv = np.linalg.inv(xtwx + np.eye(X.shape[1]) * LAMBDA_NAT)
    sigma = inv @ xtwx @ inv
    est[ok] = b @ c
    se[ok] = np.sqrt(np.einsum("i,gij,j->g", c, sigma, c))
    return est, se


def _apply_alt_hypothesis(
    lfc: np.ndarray, se: np.ndarray, threshold: float, alt: str
) -> tuple[np.ndarray, np.ndarray]:
    """The thresholded Wald tests of DESeq2 ``results(lfcThreshold, altHypothesis)``."""
    sf = stats.norm.sf
    with np.errstate(invalid="ignore", divide="ignore"):
        if alt == "greaterAbs":
            stat = np.sign(lfc) * np.maximum((np.abs(lfc) - threshold) / se, 0)
            pval = np.minimum(1.0, 2 * sf((np.abs(lfc) - threshold) / se))
        elif alt == "lessAbs":
            above = np.maximum((threshold - lfc) / se, 0)
            p_above = sf((threshold - lfc) / se)
            below = np.maximum((lfc + threshold) / se, 0)
            p_below = sf((lfc + threshold) / se)
            stat = np.minimum(above, below)
            pval = np.maximum(p_above, p_below)
        elif alt == "greater":
            stat = np.maximum((lfc - threshold) / se, 0)
            pval = sf((lfc - threshold) / se)
        elif alt == "less":
            stat = np.minimum((lfc + threshold) / se, 0)
            pval = sf((-threshold - lfc) / se)
        else:
            raise DegflowInputError(
                f"unknown alternative hypothesis '{alt}'; use greaterAbs, lessAbs, greater or less"
            )
    return stat, pval


def _results_r(
    dds: Any,
    var: str,
    num: str,
    den: str,
    alpha: float,
    cooks_filter: bool,
    independent_filter: bool,
    lfc_null: float,
    alt_hypothesis: str | None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Port of DESeq2 ``results(dds, contrast = c(var, num, den), ...)``."""
    c = _contrast_vector(dds, var, num, den)
    est, se = _wald_r(dds, c)
    counts = np.asarray(dds.X)
    in_contrast = dds.obs[var].astype(str).isin([num, den]).to_numpy()
    zero = counts[in_contrast].sum(axis=0) == 0  # contrastAllZeroCharacter
    res = _wald_results(dds, est, se, zero, alpha, cooks_filter, independent_filter, lfc_null, alt_hypothesis)
    return res, est, se


def _wald_results(
    dds: Any, est: np.ndarray, se: np.ndarray, zero: np.ndarray, alpha: float, cooks_filter: bool,
    independent_filter: bool, lfc_null: float, alt_hypothesis: str | None,
) -> pd.DataFrame:
    """``results()`` from a natural-log estimate and SE per gene; ``zero``: DESeq2's ``contrastAllZero``."""
    log2e = 1.0 / math.log(2)
    lfc = est * log2e
    lse = se * log2e
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = lfc / lse
    pval = 2 * stats.norm.sf(np.abs(stat))
    all_zero = ~dds.var["non_zero"].to_numpy(dtype=bool)
    contrast_all_zero = zero & ~all_zero
    lfc[contrast_all_zero] = 0.0
    stat[contrast_all_zero] = 0.0
    pval[contrast_all_zero] = 1.0
    if alt_hypothesis is None and lfc_null != 0:
        alt_hypothesis = "greaterAbs"  # DESeq2's default altHypothesis
    if alt_hypothesis is not None:
        if lfc_null < 0:
            raise DegflowInputError("lfc_null (DESeq2's lfcThreshold) must be >= 0 for thresholded tests")
        if alt_hypothesis == "lessAbs" and lfc_null == 0:
            raise DegflowInputError("altHypothesis='lessAbs' needs a positive lfc_null")
        if not (lfc_null == 0 and alt_hypothesis == "greaterAbs"):
            stat, pval = _apply_alt_hypothesis(lfc, lse, lfc_null, alt_hypothesis)
    return _finish_results(dds, lfc, lse, stat, pval, alpha, cooks_filter, independent_filter)


def _cooks_outliers(dds: Any) -> np.ndarray:
    """Genes whose p-value ``results()`` sets to NA for a Cook's outlier (``cooksCutoff``, default cutoff)."""
    X = np.asarray(dds.obsm["design_matrix"].to_numpy(), dtype=float)
    m, p = X.shape
    counts = np.asarray(dds.X)
    cutoff = stats.f.ppf(0.99, p, m - p)
    mc = dds.var["_max_cooks"].to_numpy()
    with np.errstate(invalid="ignore"):
        outlier = mc > cutoff
    variables = dds.uns["degflow"]["variables"]
    if outlier.any() and len(variables) == 1:
        v = dds.obs[variables[0]]
        if isinstance(v.dtype, pd.CategoricalDtype) and len(v.cat.categories) == 2:
            cooks = dds.layers["cooks"]
            for g in np.flatnonzero(outlier):
                out_count = counts[int(np.nanargmax(cooks[:, g])), g]
                if np.sum(counts[:, g] > out_count) >= 3:
                    outlier[g] = False
    return outlier


def _finish_results(
    dds: Any, lfc: np.ndarray, lse: np.ndarray, stat: np.ndarray, pval: np.ndarray, alpha: float,
    cooks_filter: bool, independent_filter: bool,
) -> pd.DataFrame:
    """The end of DESeq2 ``results()``: Cook's filter, genes made all-zero by outlier replacement, padj."""
    if cooks_filter:
        pval[_cooks_outliers(dds)] = np.nan
    now_zero = dds.var["replaced"].to_numpy(dtype=bool) & (dds.var["_normed_means"].to_numpy() == 0)
    if now_zero.any():
        lfc[now_zero] = 0.0
        lse[now_zero] = 0.0
        stat[now_zero] = 0.0
        pval[now_zero] = 1.0
    base_mean = dds.var["_normed_means"].to_numpy(dtype=float)
    if independent_filter:
        padj, threshold = rcompat.independent_filtering(base_mean, pval, alpha)
    else:
        padj, threshold = rcompat.p_adjust_bh(pval), 0.0
    res = pd.DataFrame(
        {"baseMean": base_mean, "log2FoldChange": lfc, "lfcSE": lse, "stat": stat, "pvalue": pval, "padj": padj},
        index=dds.var_names,
    )
    res.attrs["filter_threshold"] = threshold
    return res


def _shrink_lfc(dds: Any, var: str, num: str, den: str, est: np.ndarray, se: np.ndarray, n_cpus: int) -> np.ndarray:
    """apeGLM-shrunken log2 fold changes (pydeseq2's ``lfc_shrink``) for any contrast.

    pydeseq2 shrinks one design coefficient.  When ``den`` is not the reference level
    of ``var`` the design is re-parametrised with ``den`` as reference (same column
    space, so the MLE coefficients map exactly) before shrinking.
    """
    from formulaic_contrasts import FormulaicContrasts  # noqa: PLC0415
    from pydeseq2.ds import DeseqStats  # noqa: PLC0415

    X_old = dds.obsm["design_matrix"]
    md = dds.obs.copy()
    levels = [str(c) for c in md[var].cat.categories]
    if levels[0] != den:
        md[var] = md[var].cat.reorder_categories([den] + [lv for lv in levels if lv != den])
    X_new = FormulaicContrasts(md, dds.uns["degflow"]["design"]).design_matrix
    c_new = np.asarray(
        FormulaicContrasts(md, dds.uns["degflow"]["design"]).contrast(
            column=var, baseline=den, group_to_compare=num
        ),
        dtype=float,
    )
    k = int(np.flatnonzero(c_new)[0])
    coeff = str(X_new.columns[k])
    T = np.linalg.lstsq(X_new.to_numpy(dtype=float), X_old.to_numpy(dtype=float), rcond=None)[0]
    beta_old = dds.varm["LFC"].to_numpy()
    beta_new = beta_old @ T.T
    with _quiet():
        ds = DeseqStats(
            dds,
            contrast=c_new,
            quiet=True,
            inference=_inference(dds.uns["degflow"].get("engine", "pydeseq2"), n_cpus),
        )
        ds.design_matrix = X_new
        ds.LFC = pd.DataFrame(beta_new, index=dds.var_names, columns=X_new.columns)
        ds.SE = pd.Series(se, index=dds.var_names)
        ds.lfc_shrink(coeff=coeff)
    return ds.LFC[coeff].to_numpy() / math.log(2)


def contrast_results(
    dds: Any,
    contrast: Sequence[str],
    *,
    alpha: float = 0.05,
    cooks_filter: bool = True,
    independent_filter: bool = True,
    lfc_null: float = 0.0,
    alt_hypothesis: AltHypothesis | None = None,
    shrink: bool = False,
    n_cpus: int = 1,
) -> pd.DataFrame:
    """DESeq2 ``results()`` table for ``contrast = [variable, level, reference]``.

    Parameters
    ----------
    dds : pydeseq2.dds.DeseqDataSet
        Output of :func:`fit_deseq`.
    contrast : sequence of str or mapping
        ``[variable, tested level, reference level]``; any two levels of a factor.  Or, over
        DESeq2's ``resultsNames`` (:func:`coefficient_names`): ``{"name": coef}`` (one coefficient,
        ``results(name=)``, interaction terms included), ``{"vector": [...]}`` (a numeric contrast,
        one weight per coefficient in R's order) or ``{"list": [[num...], [den...]], "list_values":
        [1, -1]}`` (DESeq2's list contrast).  ``shrink`` is done for ``name`` (the coefficient's
        apeGLM prior, as ``lfcShrink(coef=)``); vector and list contrasts have no shrunken column
        (apeGLM shrinks coefficients only), which is logged.
    alpha : float
        Target FDR for independent filtering (DESeq2 ``alpha``).
    cooks_filter : bool
        Set p-values of Cook's-distance outliers to NaN (DESeq2 ``cooksCutoff``).
    independent_filter : bool
        DESeq2 independent filtering on the mean of normalised counts.
    lfc_null : float
        DESeq2 ``lfcThreshold`` (log2 scale).  With the ``"deseq2"`` flavor and no
        ``alt_hypothesis`` a positive value tests ``|LFC| > lfc_null`` (R's default
        ``"greaterAbs"``); the ``"pydeseq2"`` flavor keeps pydeseq2's semantics.
    alt_hypothesis : {"greaterAbs", "lessAbs", "greater", "less"}, optional
        DESeq2 ``altHypothesis``.
    shrink : bool
        Add ``log2FoldChange_shrunk`` (apeGLM prior, pydeseq2's implementation); the
        raw ``log2FoldChange`` is left unchanged.
    n_cpus : int
        Threads (engine ``"numba"``) or joblib workers (``"pydeseq2"``) for pydeseq2 steps (Wald
        tests of the pydeseq2 flavor, shrinkage); the engine is the one given to :func:`fit_deseq`.

    Returns
    -------
    pandas.DataFrame
        Indexed by gene id in ``dds`` order, columns ``baseMean, log2FoldChange,
        lfcSE, stat, pvalue, padj`` (+ ``log2FoldChange_shrunk``).  All-zero genes keep
        ``baseMean = 0`` and NaN elsewhere, as in R.
    """
    from pydeseq2.ds import DeseqStats  # noqa: PLC0415

    if "LFC" not in dds.varm:
        raise DegflowInputError("the data set is not fitted; call fit_deseq first")
    if not 0 < alpha < 1:
        raise DegflowInputError(f"alpha must be between 0 and 1 (got {alpha})")
    if isinstance(contrast, Mapping):
        return _coefficient_results(dds, contrast, alpha=alpha, cooks_filter=cooks_filter,
                                    independent_filter=independent_filter, lfc_null=lfc_null,
                                    alt_hypothesis=alt_hypothesis, shrink=shrink, n_cpus=max(1, int(n_cpus)))
    var, num, den = _check_contrast(dds, contrast)
    flavor = dds.uns.get("degflow", {}).get("flavor", "pydeseq2")
    n_cpus = max(1, int(n_cpus))
    if flavor == "deseq2":
        res, est, se = _results_r(
            dds, var, num, den, alpha, cooks_filter, independent_filter, lfc_null, alt_hypothesis
        )
    else:
        with _quiet():
            ds = DeseqStats(
                dds,
                contrast=_contrast_vector(dds, var, num, den),  # same vector as [var, num, den]
                alpha=alpha,
                cooks_filter=cooks_filter,
                independent_filter=independent_filter,
                lfc_null=lfc_null,
                alt_hypothesis=alt_hypothesis,
                quiet=True,
                inference=_inference(dds.uns["degflow"].get("engine", "pydeseq2"), n_cpus),
            )
            ds.summary()
        res = ds.results_df[RESULT_COLUMNS].copy()
        res.loc[~dds.var["non_zero"].to_numpy(dtype=bool), "baseMean"] = 0.0
        est = res["log2FoldChange"].to_numpy() * math.log(2)
        se = res["lfcSE"].to_numpy() * math.log(2)
    res.index.name = "gene_id"
    if shrink:
        if "normalization_factors" in dds.layers:
            log.warning("log2FoldChange_shrunk: pydeseq2's apeGLM shrinkage takes one offset per sample, so it uses "
                        "obs['size_factors'] (each sample's geometric mean of the normalisation factors), not the "
                        "per-gene factors of the fit; the unshrunken log2FoldChange uses them exactly")
        res["log2FoldChange_shrunk"] = _shrink_lfc(dds, var, num, den, est, se, n_cpus)
    return res


# ---------------------------------------------------------------------------
# Coefficients by DESeq2 name, numeric and list contrasts; the likelihood-ratio test
# ---------------------------------------------------------------------------


def coefficient_names(dds: Any) -> tuple[list[str], np.ndarray]:
    """DESeq2's ``resultsNames(dds)`` and where each is in the fitted design matrix.

    Returns
    -------
    names, order
        The names in R's order, and ``order[k]``: the column of ``dds.obsm["design_matrix"]``
        (and of ``varm["LFC"]``) holding coefficient ``names[k]``.  See
        :func:`degflow.plan.design.design_columns` for the naming rules.
    """
    from degflow.plan.design import design_columns  # noqa: PLC0415

    info = dds.uns["degflow"]
    names, columns, order = design_columns(info["design"], dds.obs[info["variables"]])
    if columns != [str(c) for c in dds.obsm["design_matrix"].columns]:
        raise DegflowInputError(f"the design matrix of '{info['design']}' does not match its formula's columns")
    return names, order


def _coefficient_results(
    dds: Any, spec: Mapping[str, Any], *, alpha: float, cooks_filter: bool, independent_filter: bool,
    lfc_null: float, alt_hypothesis: AltHypothesis | None, shrink: bool, n_cpus: int,
) -> pd.DataFrame:
    """``results(name=)`` / ``results(contrast=numeric or list)`` (see :func:`contrast_results`)."""
    from degflow.plan.design import contrast_vector  # noqa: PLC0415

    names, order = coefficient_names(dds)
    c_r = contrast_vector(spec, names, key="contrast")
    c = np.zeros(len(names))
    c[order] = c_r
    flavor = dds.uns["degflow"].get("flavor", "pydeseq2")
    beta = dds.varm["LFC"].to_numpy()
    zero = np.zeros(beta.shape[0], dtype=bool)
    if flavor != "deseq2":
        from pydeseq2.ds import DeseqStats  # noqa: PLC0415

        with _quiet():
            ds = DeseqStats(dds, contrast=c, alpha=alpha, cooks_filter=cooks_filter,
                            independent_filter=independent_filter, lfc_null=lfc_null, alt_hypothesis=alt_hypothesis,
                            quiet=True, inference=_inference(dds.uns["degflow"].get("engine", "pydeseq2"), n_cpus))
            ds.summary()
        res = ds.results_df[RESULT_COLUMNS].copy()
        res.loc[~dds.var["non_zero"].to_numpy(dtype=bool), "baseMean"] = 0.0
    elif "name" in spec:  # results(name=): the fit's coefficient and SE, no contrastAllZero rule
        k = int(order[names.index(spec["name"])])
        est = beta[:, k].copy()
        se = np.sqrt(np.maximum(np.asarray(dds.varm["_beta_var"])[:, k], 0.0))
        res = _wald_results(dds, est, se, zero, alpha, cooks_filter, independent_filter, lfc_null, alt_hypothesis)
    else:
        est, se = _wald_r(dds, c)
        if (c > 0).any() and (c < 0).any():  # contrastAllZeroNumeric
            X = np.asarray(dds.obsm["design_matrix"].to_numpy(), dtype=float)
            samples = (X @ (c != 0).astype(float)) != 0
            zero = np.asarray(dds.X)[samples].sum(axis=0) == 0
        res = _wald_results(dds, est, se, zero, alpha, cooks_filter, independent_filter, lfc_null, alt_hypothesis)
    res.index.name = "gene_id"
    if shrink:
        if "name" not in spec:
            log.warning("log2FoldChange_shrunk is left out for a vector or list contrast: apeGLM shrinks one "
                        "coefficient (lfcShrink(coef=)); use a name contrast to shrink")
        else:
            from pydeseq2.ds import DeseqStats  # noqa: PLC0415

            coeff = str(dds.obsm["design_matrix"].columns[int(order[names.index(spec["name"])])])
            with _quiet():
                ds = DeseqStats(dds, contrast=c, quiet=True,
                                inference=_inference(dds.uns["degflow"].get("engine", "pydeseq2"), n_cpus))
                ds.LFC = dds.varm["LFC"].copy()
                ds.SE = pd.Series(res["lfcSE"].to_numpy() * math.log(2), index=dds.var_names)
                ds.lfc_shrink(coeff=coeff)
            res["log2FoldChange_shrunk"] = ds.LFC[coeff].to_numpy() / math.log(2)
    return res


def lrt_results(
    dds: Any,
    reduced: str,
    *,
    alpha: float = 0.05,
    cooks_filter: bool = True,
    independent_filter: bool = True,
    n_cpus: int = 1,
) -> pd.DataFrame:
    """DESeq2's likelihood-ratio test, ``DESeq(dds, test = "LRT", reduced = ...)`` then ``results()``.

    Port of ``nbinomLRT`` (DESeq2 1.38): the full model is the fitted design (the same IRLS and the
    same dispersions as the Wald fit, so its coefficients are those of :func:`fit_deseq`); the
    reduced model is fitted by ``fitNbinomGLMs`` with those dispersions (``~ 1``: the mean of the
    normalised counts, as R's intercept-only shortcut).  The statistic is the deviance difference
    ``2 * (logLik_full - logLik_reduced)`` (log-likelihoods at ``mu = NF * exp(X b)``), chi-squared
    with ``p_full - p_reduced`` degrees of freedom.  Genes whose outliers were replaced
    (``refitWithoutOutliers``) are tested on the replaced counts, as R does.  ``results()`` then
    applies Cook's filtering (maximum Cook's distance of the full model, R's cutoff and its
    two-level exception) and independent filtering.

    Parameters
    ----------
    dds
        From :func:`fit_deseq` with ``flavor="deseq2"``.
    reduced
        The reduced formula, nested in the design (e.g. ``"~ 1"``, ``"~ batch"``).
    alpha, cooks_filter, independent_filter
        As :func:`contrast_results`.
    n_cpus
        Threads for the reduced model's IRLS.

    Returns
    -------
    pandas.DataFrame
        ``baseMean, log2FoldChange, lfcSE, stat, pvalue, padj`` indexed by gene id.  ``stat`` is the
        LR statistic; ``log2FoldChange``/``lfcSE`` are the full model's LAST coefficient, as R's
        ``results()`` reports them (named in ``attrs["coefficient"]``); ``attrs["df"]`` is the
        chi-squared degrees of freedom, ``attrs["filter_threshold"]`` the independent-filtering
        baseMean threshold.

    Raises
    ------
    DegflowInputError
        Not the ``deseq2`` flavor, or a reduced formula that is not nested in the design.
    """
    from formulaic import model_matrix  # noqa: PLC0415

    from degflow.plan.design import check_lrt  # noqa: PLC0415

    info = dds.uns.get("degflow", {})
    if info.get("flavor") != "deseq2":
        raise DegflowInputError("the likelihood-ratio test needs bulk.de.flavor deseq2 (pydeseq2 has no LRT)")
    design = info["design"]
    meta = dds.obs[info["variables"]]
    df, _ = check_lrt(design, reduced, meta, key="reduced")
    names, order = coefficient_names(dds)
    rhs = reduced.split("~", 1)[1].strip()
    X_red = np.asarray(model_matrix(rhs or "1", meta), dtype=float)
    X = np.asarray(dds.obsm["design_matrix"].to_numpy(), dtype=float)
    nz = np.flatnonzero(dds.var["non_zero"].to_numpy(dtype=bool))
    G = dds.n_vars
    source = dds.layers["replace_counts"] if "replace_counts" in dds.layers else dds.X
    Y = np.asarray(source, dtype=float).T[nz]
    if "normalization_factors" in dds.layers:
        sf = np.asarray(dds.layers["normalization_factors"], dtype=float).T[nz]
    else:
        sf = dds.obs["size_factors"].to_numpy(dtype=float)
    disp = dds.var["dispersions"].to_numpy(dtype=float)[nz]
    beta = dds.varm["LFC"].to_numpy()[nz]
    ok = ~np.isnan(beta).any(axis=1)  # genes made all-zero by outlier replacement have no fit (NA in R)
    with np.errstate(over="ignore"):
        mu_full = _per_cell(sf) * np.exp(beta @ X.T)
    size = (1.0 / disp)[:, None]
    ll_full = _log_dnbinom_mu(Y, size, mu_full).sum(axis=1)
    if rhs == "1":  # fitNbinomGLMs' justIntercept shortcut: log2 of the mean normalised count
        with np.errstate(divide="ignore"):
            mu_red = _per_cell(sf) * (Y / sf).mean(axis=1, keepdims=True)
    else:
        fit = _fit_nbinom_glms(Y[ok], X_red, _rows(sf, ok), disp[ok], n_cpus,
                               engine=info.get("engine", "numba"))
        mu_red = np.full(Y.shape, np.nan)
        mu_red[ok] = fit["mu"]
    ll_red = _log_dnbinom_mu(Y, size, mu_red).sum(axis=1)
    stat = np.full(G, np.nan)
    stat[nz] = np.where(ok, 2.0 * (ll_full - ll_red), np.nan)
    with np.errstate(invalid="ignore"):
        pval = stats.chi2.sf(stat, df)
    k = int(order[-1])  # results(): the last coefficient's log2 fold change (lastCoefName)
    log2e = 1.0 / math.log(2)
    lfc = dds.varm["LFC"].to_numpy()[:, k] * log2e
    lse = np.sqrt(np.maximum(np.asarray(dds.varm["_beta_var"])[:, k], 0.0)) * log2e
    res = _finish_results(dds, lfc, lse, stat, pval, alpha, cooks_filter, independent_filter)
    res.index.name = "gene_id"
    res.attrs.update({"coefficient": names[-1], "df": int(df), "reduced": reduced, "design": design})
    return res
