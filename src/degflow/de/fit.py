"""Bulk RNA-seq differential expression that reproduces DESeq2 (R) on top of pydeseq2: :func:`fit_deseq`.

The DESeq2 engine of :mod:`degflow.de` has two entry points used by the workflow scripts:

* :func:`fit_deseq` (here) fits the negative-binomial model and returns a fitted
  :class:`pydeseq2.dds.DeseqDataSet` (size factors in ``obs["size_factors"]``,
  normalised counts in ``layers["normed_counts"]``, dispersions in ``var``,
  natural-log coefficients in ``varm["LFC"]``).
* :func:`degflow.de.results.contrast_results` turns a fitted data set into a DESeq2 ``results()`` table
  (:mod:`degflow.de.results` also has :func:`~degflow.de.results.lrt_results` and
  :func:`~degflow.de.results.coefficient_names`).

``flavor="pydeseq2"`` runs stock pydeseq2 0.5.4 unchanged (for comparison).
``flavor="deseq2"`` (the default) keeps pydeseq2's data container but replaces the
estimation steps by ports of the DESeq2 1.38 R/C++ code.  Measured against DESeq2 1.38.3:
airway (8 samples, ``~ cell + dex``) log2 fold changes agree to 5e-7 relative, p-values
to 6e-5 (99.9% of genes to 2e-8), the same 512 up / 472 down genes are called (stock
pydeseq2: 546 / 506); pydeseq2's synthetic references agree to ~1e-12.  The R-faithful
deviations from pydeseq2, each mirroring a named DESeq2 function, are:

1. Gene-wise dispersions (``estimateDispersionsGeneEst`` + C++ ``fitDisp``): the
   Armijo backtracking line search on log(alpha) with R's step rules, the
   "no increase -> keep the rough start" rule, and the grid refit
   (``fitDispGridWrapper``) for genes that do not converge *or stop after one
   iteration*.  pydeseq2 uses L-BFGS-B, which stops near 1e-5 on genes whose
   maximum-likelihood dispersion is ~0 where R goes to 1e-8; those genes then enter
   the trend fit in pydeseq2 but not in R.
2. The means used for gene-wise dispersions: R's ``linearModelMu`` when the design has
   as many distinct rows as coefficients, otherwise the NB GLM (``fitNbinomGLMs``),
   both floored at ``minmu = 0.5``.
3. Dispersion trend (``estimateDispersionsFit`` / ``parametricDispersionFit``):
   genes with ``dispGeneEst > 100 * minDisp`` only, and the outlier window
   ``1e-4 < disp / fit < 15`` recomputed from *all* of them at each outer iteration
   (pydeseq2 drops genes cumulatively), with each inner fit an exact port of
   ``glm(family = Gamma(link = "identity"))`` IRLS.
4. Dispersion prior variance (``estimateDispersionsPriorVar``): for residual degrees of
   freedom ``m - p <= 3`` R matches the histogram of log-dispersion residuals to
   simulated ``log(chi^2_{m-p}/(m-p)) + N(0, s^2)`` draws over a grid of ``s^2``,
   smooths the KL divergences with ``loess(span = 0.2)`` and takes the argmin.  This
   is reproduced bit-for-bit: R's Mersenne-Twister seeding (``set.seed``), its
   inversion ``rnorm``, its ``rchisq`` (Ahrens-Dieter GD gamma), ``hist`` and the
   ``loess`` kd-tree/vertex interpolation are emulated (:mod:`degflow.de.rcompat`,
   :mod:`degflow.kernels.rsim`).  pydeseq2 keeps the
   floored MAD estimate (0.25), shrinking about twice as hard on airway.
   The MAD uses R's constant 1.4826.
5. MAP dispersions (``estimateDispersionsMAP``): the same line search with the normal
   prior, starting at the gene-wise estimate unless it is 10x below the trend.
6. Coefficients and Wald tests (``nbinomWaldTest`` / ``fitNbinomGLMs`` / C++
   ``fitBeta``): IRLS started from the least-squares fit of ``log(normed + 0.1)``,
   ridge ``1e-6`` on the log2 scale, ``minmu = 0.5`` in the weights, deviance
   convergence ``1e-8``, and R's L-BFGS-B fallback (``fitNbinomGLMsOptim``).
7. Cook's distances, outlier replacement and refit (``calculateCooksDistance``,
   ``replaceOutliers``, ``refitWithoutOutliers``) and ``results()``: Cook's filtering
   with R's "3 larger counts" rule, ``contrastAllZero`` handling, thresholded
   alternative hypotheses, and independent filtering with genefilter's
   ``filtered_p`` and R's C ``lowess`` (pydeseq2's lowess uses a wider window).

Not ported (documented deviations): when the parametric trend fails R substitutes a
``locfit`` local fit; here DESeq2's ``fitType = "mean"`` rule is used and a warning is
logged.  The rare genes whose IRLS does not converge are refitted with scipy's L-BFGS-B
rather than R's ``optim`` (same objective, start and bounds; agreement to optimiser
tolerance).  Observation weights and ``betaPrior = TRUE`` are not supported.  The likelihood-ratio test
(:func:`lrt_results`, a port of ``nbinomLRT`` + ``results()``) and DESeq2's ``name`` / numeric / list
contrasts over ``resultsNames`` (:func:`coefficient_names`) are.

``engine`` chooses how the per-gene loops run.  ``"numba"`` (default): with ``flavor="deseq2"`` the
port's C++ loops (``fitDisp``, ``fitDispGrid``, ``fitBeta`` and the ``optim`` objective) are numba
kernels (:mod:`degflow.kernels.deseq`: ``prange`` over genes on ``n_cpus`` threads); with
``flavor="pydeseq2"`` every pydeseq2 step runs on :class:`degflow.de.inference.NumbaInference`.
``"pydeseq2"``: the same port with its loops vectorised in NumPy over fixed blocks of genes (in
``n_cpus`` Python threads), and pydeseq2's ``DefaultInference``.  Either way each gene's arithmetic
does not depend on ``n_cpus``, so neither do the results; the two engines agree within the
tolerances asserted in ``tests/test_deseq.py`` (the port) and ``tests/test_inference.py``.  The apeGLM
shrinkage of both flavors uses the engine's pydeseq2 ``Inference``.

Where things are: this module checks the inputs and runs either stock pydeseq2 or the port;
:mod:`degflow.de.driver` chains the DESeq2 steps of the port (``estimateSizeFactors`` ...
``refitWithoutOutliers``) and stores them on the data set; :mod:`degflow.de.reference` holds the NumPy
port of DESeq2's C++ loops (their numba twins: :mod:`degflow.kernels.deseq`); :mod:`degflow.de.rcompat`
the emulation of R functions (``lowess``, ``loess``, ``hist``, ``quantile``, ``p.adjust``, ``mad``; R's
RNG is :mod:`degflow.kernels.rsim`); :mod:`degflow.de.results` the Wald and LRT ``results()`` tables.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd

from degflow.de.driver import _fit_r_faithful
from degflow.errors import DegflowInputError

log = logging.getLogger("degflow")

__all__ = ["fit_deseq"]

Flavor = Literal["deseq2", "pydeseq2"]
Engine = Literal["numba", "pydeseq2"]


def _design_variables(design: str, samples: pd.DataFrame) -> list[str]:
    """Column names of ``samples`` used by the formula ``design``."""
    import re  # noqa: PLC0415

    tokens = set(re.findall(r"[A-Za-z_.][A-Za-z0-9_.]*", design))
    quoted = set(re.findall(r"`([^`]+)`", design))
    return [c for c in samples.columns if c in tokens or c in quoted]


def _prepare_metadata(
    samples: pd.DataFrame, variables: list[str], reference_levels: dict[str, str]
) -> pd.DataFrame:
    """Categoricals with R's level order: reference first, then the others sorted."""
    md = samples.copy()
    for var in reference_levels:
        if var not in md.columns:
            raise DegflowInputError(
                f"reference level given for '{var}', which is not a column of the sample table "
                f"(columns: {', '.join(map(str, md.columns))})"
            )
    for var in variables:
        col = md[var]
        if col.isna().any():
            raise DegflowInputError(f"sample table column '{var}' has missing values; fill them in")
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if numeric and var not in reference_levels:
            md[var] = col.astype(float)
            continue
        values = col.astype(str)
        levels = sorted(pd.unique(values))
        if var in reference_levels:
            ref = str(reference_levels[var])
            if ref not in levels:
                raise DegflowInputError(
                    f"reference level '{ref}' is not a value of '{var}' (values: {', '.join(levels)})"
                )
            levels = [ref] + [lv for lv in levels if lv != ref]
        md[var] = pd.Categorical(values, categories=levels)
    return md


def _check_inputs(counts: pd.DataFrame, samples: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    if not isinstance(counts, pd.DataFrame) or not isinstance(samples, pd.DataFrame):
        raise DegflowInputError("counts and samples must be pandas DataFrames (genes x samples, samples x variables)")
    if counts.shape[1] < 2:
        raise DegflowInputError("the count matrix needs at least two samples (columns)")
    if counts.index.has_duplicates:
        dup = counts.index[counts.index.duplicated()][0]
        raise DegflowInputError(f"gene id '{dup}' appears more than once in the count matrix")
    cols = [str(c) for c in counts.columns]
    idx = [str(i) for i in samples.index]
    if set(cols) != set(idx) or len(cols) != len(idx):
        missing = sorted(set(cols) - set(idx)) + sorted(set(idx) - set(cols))
        raise DegflowInputError(
            f"count-matrix columns and sample-table rows must name the same samples (mismatch: {', '.join(missing[:5])})"
        )
    counts = counts.copy()
    counts.columns = cols
    samples = samples.copy()
    samples.index = idx
    samples = samples.loc[cols]
    values = counts.to_numpy()
    if not np.issubdtype(values.dtype, np.number):
        raise DegflowInputError("the count matrix must be numeric")
    if np.isnan(values.astype(float)).any():
        raise DegflowInputError("the count matrix has missing values (NaN)")
    if (values < 0).any() or (np.mod(values, 1) != 0).any():
        raise DegflowInputError("counts must be non-negative integers")
    return counts.astype(np.int64), samples


@contextlib.contextmanager
def _quiet() -> Any:
    """Silence pydeseq2's prints and warnings; forward them to the degflow logger."""
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        # numeric RuntimeWarnings from per-gene optimisers are expected and can be
        # very many; only keep pydeseq2's UserWarnings (once per location)
        warnings.simplefilter("ignore")
        warnings.simplefilter("default", UserWarning)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    for w in caught:
        if not issubclass(w.category, (FutureWarning, DeprecationWarning)):
            log.info("pydeseq2: %s", w.message)
    text = (out.getvalue() + err.getvalue()).strip()
    if text:
        log.debug("pydeseq2 output:\n%s", text)


def _inference(engine: str, n_cpus: int) -> Any:
    """pydeseq2 ``Inference`` object of an engine: numba kernels or pydeseq2's ``DefaultInference``."""
    if engine == "numba":
        from degflow.de.inference import NumbaInference  # noqa: PLC0415

        return NumbaInference(n_cpus=n_cpus)
    from pydeseq2.default_inference import DefaultInference  # noqa: PLC0415

    return DefaultInference(n_cpus=n_cpus)


def fit_deseq(
    counts: pd.DataFrame,
    samples: pd.DataFrame,
    design: str = "~ cell + dex",
    reference_levels: dict[str, str] | None = None,
    *,
    flavor: Flavor = "deseq2",
    engine: Engine = "numba",
    size_factors: np.ndarray | pd.Series | None = None,
    normalization_factors: np.ndarray | pd.DataFrame | None = None,
    refit_cooks: bool = True,
    n_cpus: int = 1,
    seed: int = 0,
) -> Any:
    """Fit the DESeq2 negative-binomial model.

    Parameters
    ----------
    counts : pandas.DataFrame
        Raw counts, genes x samples (index: gene ids, columns: sample names),
        non-negative integers.
    samples : pandas.DataFrame
        Sample table indexed by sample name (the same samples as ``counts`` columns);
        columns are design variables.  Text/categorical columns become factors whose
        levels are sorted as R does, with the reference level first; numeric columns
        without a reference level are continuous covariates.
    design : str
        Formulaic/R formula, e.g. ``"~ cell + dex"``.
    reference_levels : dict, optional
        ``{variable: reference level}``; honoured for every factor given.
    flavor : {"deseq2", "pydeseq2"}
        ``"deseq2"`` (default) reproduces DESeq2 1.38 (see the module docstring for
        every deviation from pydeseq2 and the R function it mirrors); ``"pydeseq2"``
        runs stock pydeseq2 0.5.4.
    engine : {"numba", "pydeseq2"}
        The per-gene computation backend; the answers are the same within the tolerances of
        ``tests/test_deseq.py`` and ``tests/test_inference.py``.  ``"numba"`` (default): compiled
        kernels, parallel over genes on ``n_cpus`` threads -- the DESeq2 port's line search, grid and
        IRLS (``"deseq2"`` flavor), or :class:`degflow.de.inference.NumbaInference` in place of
        pydeseq2's ``DefaultInference`` in every step including the Wald tests (``"pydeseq2"``
        flavor); both use it for the apeGLM shrinkage of :func:`contrast_results`.
        ``"pydeseq2"``: the port's loops vectorised in NumPy, and ``DefaultInference`` (scipy per
        gene, ``n_cpus`` joblib workers).
    size_factors : array-like, optional
        One positive factor per sample (in ``counts`` column order, or a Series indexed
        by sample); used instead of median-of-ratios, like ``sizeFactors(dds) <-``.
    normalization_factors : array-like, optional
        Genes x samples positive factors (the shape of ``counts``; a DataFrame is aligned on
        its index and columns), used instead of size factors like
        ``normalizationFactors(dds) <-``: the means are ``mu_ij = NF_ij * exp(x_j' b_i)``,
        normalised counts and ``baseMean`` use ``counts / NF``, and every step (gene-wise,
        MAP dispersions, Wald test, Cook's distances, outlier replacement) uses them as
        DESeq2 does.  Build them from tximport lengths with
        :func:`degflow.bulk.dataset.length_normalization_factors`.  ``"deseq2"`` flavor only; not
        with ``size_factors``.  ``obs["size_factors"]`` then holds each sample's geometric
        mean of its factors (a summary; DESeq2 has no size factors then) and
        ``layers["normalization_factors"]`` the factors.
    refit_cooks : bool
        Replace Cook's-distance outliers in cells with >= 7 replicates and refit, as
        ``DESeq(minReplicatesForReplace = 7)``.
    n_cpus : int
        numba threads (engine ``"numba"``), or Python threads over gene blocks (``"deseq2"``
        flavor) / joblib workers (``"pydeseq2"`` flavor) with engine ``"pydeseq2"``; results do
        not depend on it.
    seed : int
        Seed of R's ``set.seed`` for the dispersion-prior simulation (only run when
        the residual degrees of freedom are <= 3).  ``0`` (default) means DESeq2's own
        fixed ``set.seed(2)``, which reproduces R exactly.

    Returns
    -------
    pydeseq2.dds.DeseqDataSet
        Fitted data set; ``uns["degflow"]`` records the flavor, the dispersion trend
        coefficients, the prior variance and the fit options.

    Raises
    ------
    DegflowInputError
        For inputs DESeq2 cannot fit (mismatched samples, non-integer counts, unknown
        reference levels, rank-deficient designs, level names formulaic cannot encode).
    """
    from pydeseq2.dds import DeseqDataSet  # noqa: PLC0415

    if flavor not in ("deseq2", "pydeseq2"):
        raise DegflowInputError(f"unknown DE flavor '{flavor}'; use 'deseq2' or 'pydeseq2'")
    if engine not in ("numba", "pydeseq2"):
        raise DegflowInputError(f"unknown DE engine '{engine}'; use 'numba' or 'pydeseq2'")
    counts, samples = _check_inputs(counts, samples)
    reference_levels = dict(reference_levels or {})
    variables = _design_variables(design, samples)
    if not variables:
        raise DegflowInputError(
            f"design '{design}' names no column of the sample table (columns: {', '.join(map(str, samples.columns))})"
        )
    md = _prepare_metadata(samples, variables, reference_levels)
    n_cpus = max(1, int(n_cpus))
    try:
        with _quiet():
            dds = DeseqDataSet(
                counts=counts.T,
                metadata=md,
                design=design,
                refit_cooks=refit_cooks,
                inference=_inference(engine, n_cpus),
                quiet=True,
            )
    except DegflowInputError:
        raise
    except Exception as exc:  # formulaic / pydeseq2 errors on the formula or levels
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DegflowInputError(f"cannot build the design matrix for '{design}': {msg}") from None
    X = np.asarray(dds.obsm["design_matrix"].to_numpy(), dtype=float)
    m, p = X.shape
    if np.linalg.matrix_rank(X) < p:
        raise DegflowInputError(
            f"the design '{design}' is not full rank for these samples (a variable is confounded "
            "with another or a level combination is missing); simplify the design"
        )
    if m <= p:
        raise DegflowInputError(
            f"the design '{design}' has {p} coefficients but only {m} samples: no replicates to "
            "estimate dispersion"
        )
    nf_given: np.ndarray | None = None
    if normalization_factors is not None:
        if size_factors is not None:
            raise DegflowInputError(
                "give size_factors or normalization_factors, not both (DESeq2 uses one or the other)"
            )
        if flavor != "deseq2":
            raise DegflowInputError(
                "normalization_factors need flavor 'deseq2' (stock pydeseq2 has no per-gene factors)"
            )
        if isinstance(normalization_factors, pd.DataFrame):
            nf_frame = normalization_factors.copy()
            nf_frame.index = nf_frame.index.astype(str)
            nf_frame.columns = nf_frame.columns.astype(str)
            nf_given = nf_frame.reindex(index=counts.index.astype(str), columns=dds.obs_names).to_numpy(dtype=float)
        else:
            nf_given = np.asarray(normalization_factors, dtype=float)
        if nf_given.shape != counts.shape or not np.all(np.isfinite(nf_given)) or np.any(nf_given <= 0):
            raise DegflowInputError(
                f"normalization_factors must be {counts.shape[0]} x {m} positive numbers (genes x samples, as the "
                f"counts), got shape {nf_given.shape}"
            )
    sf_given: np.ndarray | None = None
    if size_factors is not None:
        if isinstance(size_factors, pd.Series):
            sf_given = size_factors.reindex(dds.obs_names).to_numpy(dtype=float)
        else:
            sf_given = np.asarray(size_factors, dtype=float).ravel()
        if sf_given.size != m or not np.all(np.isfinite(sf_given)) or np.any(sf_given <= 0):
            raise DegflowInputError(
                f"size_factors must be {m} positive numbers, one per sample (got {sf_given.size})"
            )
    dds.uns["degflow"] = {
        "flavor": flavor,
        "engine": engine,
        "design": design,
        "reference_levels": reference_levels,
        "variables": variables,
        "seed": seed,
    }
    if flavor == "pydeseq2":
        with _quiet():
            if sf_given is None:
                dds.deseq2()
            else:
                dds.obs["size_factors"] = sf_given
                dds.layers["normed_counts"] = dds.X / sf_given[:, None]
                dds.var["_normed_means"] = dds.layers["normed_counts"].mean(axis=0)
                dds.fit_genewise_dispersions()
                dds.fit_dispersion_trend()
                dds.fit_dispersion_prior()
                dds.fit_MAP_dispersions()
                dds.fit_LFC()
                dds.calculate_cooks()
                if refit_cooks:
                    dds.refit()
                dds.cooks_outlier()
        if "trend_coeffs" in dds.uns:
            dds.uns["degflow"]["trend"] = [float(v) for v in dds.uns["trend_coeffs"]]
        dds.uns["degflow"]["prior_var"] = float(np.asarray(dds.uns["prior_disp_var"]))
        return dds
    _fit_r_faithful(dds, X, sf_given, refit_cooks, n_cpus, 2 if seed == 0 else seed, nf_given, engine)
    return dds
