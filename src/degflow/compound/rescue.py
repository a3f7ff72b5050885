"""Treatment rescue: does a compound move the disease genes back toward control?

Compute only (the figure is :func:`degflow.pl.compound.rescue`). Inputs are two DE results
tables of :func:`degflow.de.tables.annotate_results` (columns ``gene_id, gene_name, log2FoldChange,
padj``): the **disease** contrast (model vs control) and one **treatment** contrast (treated
model vs model). Nothing here reads files or config.

Notation: for gene *g*, ``d`` is its disease log2 fold change and ``t`` its treatment log2 fold
change. A gene is a *disease DEG* when ``padj_d < padj`` and ``|d| > lfc``, a *treatment DEG*
when ``padj_t < padj`` and ``|t| > lfc`` (the same thresholds as ``deg.tsv``). A missing
``padj`` (gene not tested: independent filtering, outliers) never makes a gene a DEG.

Class rules (:data:`CLASSES`), applied in this order:

``reversed``
    disease DEG and treatment DEG, with opposite signs.
``aggravated``
    disease DEG and treatment DEG, with the same sign.
``partially_reversed``
    disease DEG, not a treatment DEG, opposite sign, and the treatment undoes at least
    ``partial`` (default 0.5) of the disease change: ``reversal_score >= partial``.
``not_rescued``
    any other disease DEG.
``treatment_only``
    not a disease DEG, but a treatment DEG.
``unchanged``
    everything else.

Reversal score: ``reversal_score = -t / d`` for disease DEGs (NaN otherwise): the fraction of
the disease change the treatment undoes. 1 = back to the control level, 0 = no change,
> 1 = overshoot past control, < 0 = pushed further away (aggravated). Because the treatment
contrast is against the model, ``d + t`` estimates treated vs control.

Global reversal statistic: the Pearson correlation of ``d`` and ``t`` over the disease DEGs
tested in both contrasts (Spearman also reported). A negative value means the treatment tends
to move disease genes back. Its p-value is one-sided (H1: correlation below chance): the
treatment log2 fold changes are shuffled across all genes tested in the treatment contrast
(``n_permutations`` times, ``numpy.random.default_rng(seed)``) and
``p = (1 + #{r_perm <= r_obs}) / (1 + n_permutations)``.

Caveat (written into the summary as ``r_shared_reference``): ``d`` and ``t`` share the model
group (``d = model - control``, ``t = treated - model``), so noise in the model group's mean
alone correlates them negatively, even for an inert compound. The gene-shuffling p-value does
not see this. ``r_shared_reference`` estimates the correlation an inert compound would give:
``-se_m^2 / sqrt(var_d * var_t)`` averaged over the disease DEGs, where ``se_m`` is the standard
error of the model group's mean log2 expression (from ``lfcSE``, see
:func:`shared_reference_correlation`). Judge ``r`` against it, not against 0.

Sample-label permutation test (:func:`label_permutation_reversal`, ``p_label_permutation`` in the summary): a
test that keeps the shared model arm. It works on the samples of the three arms (control *c*, model *m*,
treated *x*, sizes ``n_c, n_m, n_x``) and on ``y = log2(count / size_factor + 1)`` (DESeq2's ``normTransform``)
of the genes tested in both contrasts (finite log2FC in both, ``padj_d`` not missing). For one labelling *L* of
the samples it computes, per gene::

    d_L = mean_m(y) - mean_c(y)          t_L = mean_x(y) - mean_m(y)
    s_L = sqrt(var_m(y)/n_m + var_c(y)/n_c)          (sample variances, ddof = 1)
    z_L = |d_L| / (s_L + median(s_L))                  (a SAM-style moderated disease statistic)

takes the ``K`` genes with the largest ``z_L`` (``K`` = the number of disease DEGs used by ``pearson_r``) and
returns ``r_L = corr(d_L, t_L)`` over them. The gene set is re-selected for every labelling, because the
disease DEGs were selected with the observed model arm: keeping them fixed would hide the regression to the
mean that selection adds to the shared-arm correlation. ``r_log`` is ``r_L`` for the observed labels (it
tracks ``pearson_r`` but is not the same number: plain log means, not DESeq2 fold changes).

Relabellings keep the arm sizes. ``arms="treated_model"`` (``p_label_permutation``) exchanges labels between the
model and treated samples only, the null hypothesis being an inert compound (model and treated samples
exchangeable; the disease effect is kept): ``C(n_m + n_x, n_x)`` relabellings, 20 for 3 + 3, so the smallest
attainable p-value is 1/20. ``arms="all"`` (``p_label_permutation_all_arms``) permutes all three arms:
``(n_c+n_m+n_x)! / (n_c! n_m! n_x!)`` relabellings (1680 for 3 + 3 + 3); its null (no disease and no treatment
effect) gives strongly negative ``r_L`` by itself (-1/2 for pure noise and equal arms, lower after selection), so
it is a conservative check of reversal: an inert compound on a real disease signature gives a weakly negative
``r_log`` (the shared-arm value), well above that null. Under a full rescue (treated = control) the relabellings
that only mix control and treated samples are as extreme as the observed one, so this p-value cannot go much
below ``C(n_c + n_x, n_x) / N`` (20 / 1680 = 0.012 for 3 + 3 + 3).

When the number of relabellings is at most ``n_permutations``, all of them are enumerated (the observed one
included) and ``p = #{L : r_L <= r_log} / N`` exactly; otherwise ``n_permutations`` relabellings are drawn with
``numpy.random.default_rng(seed)`` and ``p = (1 + #{r_L <= r_log}) / (1 + n_permutations)``. The mean ``r_L``
over the relabellings is reported as ``r_label_null_mean``: the correlation that noise and the shared arm alone
give, to compare with ``r_shared_reference``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from degflow.errors import DegflowInputError

__all__ = [
    "CLASSES",
    "classify_rescue",
    "global_reversal",
    "label_permutation_reversal",
    "log_normalised",
    "rescue_summary",
    "shared_reference_correlation",
]

logger = logging.getLogger(__name__)

#: The rescue classes, in the order the rules are applied (see the module docstring).
CLASSES: tuple[str, ...] = (
    "reversed",
    "aggravated",
    "partially_reversed",
    "not_rescued",
    "treatment_only",
    "unchanged",
)

_NEEDED = ("gene_id", "log2FoldChange", "padj")


def _check_results(res: object, name: str) -> pd.DataFrame:
    if not isinstance(res, pd.DataFrame):
        raise DegflowInputError(f"{name} must be a DE results DataFrame (results.tsv), got {type(res).__name__}")
    missing = [c for c in _NEEDED if c not in res.columns]
    if missing:
        raise DegflowInputError(
            f"{name} lacks column(s) {missing}; pass a results.tsv written by the bulk DE step"
        )
    dup = res["gene_id"].astype(str).duplicated()
    if dup.any():
        raise DegflowInputError(
            f"{name}: gene_id '{res['gene_id'].astype(str)[dup].iloc[0]}' appears twice; one row per gene is needed"
        )
    return res


def _check_thresholds(lfc: float, padj: float, partial: float) -> None:
    if not (isinstance(lfc, (int, float)) and lfc >= 0):
        raise DegflowInputError(f"lfc must be a number >= 0, got {lfc!r}")
    if not (isinstance(padj, (int, float)) and 0 < padj <= 1):
        raise DegflowInputError(f"padj must be in (0, 1], got {padj!r}")
    if not (isinstance(partial, (int, float)) and 0 < partial <= 1):
        raise DegflowInputError(f"partial must be in (0, 1], got {partial!r}")


def classify_rescue(
    disease: pd.DataFrame,
    treatment: pd.DataFrame,
    *,
    lfc: float = 1.0,
    padj: float = 0.05,
    partial: float = 0.5,
) -> pd.DataFrame:
    """Per-gene rescue class and reversal score of one treatment.

    Parameters
    ----------
    disease
        Results of the disease contrast (model vs control): ``gene_id``, ``log2FoldChange``,
        ``padj`` (``gene_name``, ``lfcSE``, ``baseMean`` used when present).
    treatment
        Results of the treatment contrast (treated vs model), same columns.
    lfc, padj
        DEG thresholds (``|log2FC| > lfc`` and ``padj < padj``), as for ``deg.tsv``.
    partial
        Smallest reversal score of a ``partially_reversed`` gene.

    Returns
    -------
    pandas.DataFrame
        One row per gene of either table (outer join on ``gene_id``), sorted by class (order
        of :data:`CLASSES`) then by the larger of the two padj values: ``gene_id``,
        ``gene_name``, ``baseMean``, ``log2FC_disease``, ``padj_disease``, ``lfcSE_disease``,
        ``log2FC_treatment``, ``padj_treatment``, ``lfcSE_treatment``, ``disease_deg``,
        ``treatment_deg`` (bool), ``direction`` (``up``/``down`` in disease, ``""`` for
        non-DEGs), ``reversal_score`` (float, NaN outside the disease DEGs), ``rescue_class``
        (one of :data:`CLASSES`) and ``log2FC_treated_vs_control`` (``d + t``).
    """
    _check_results(disease, "disease results")
    _check_results(treatment, "treatment results")
    _check_thresholds(lfc, padj, partial)
    cols = ["gene_id", "log2FoldChange", "padj"]
    d = disease[[*cols, *[c for c in ("gene_name", "baseMean", "lfcSE") if c in disease.columns]]].copy()
    t = treatment[[*cols, *[c for c in ("gene_name", "lfcSE") if c in treatment.columns]]].copy()
    d["gene_id"] = d["gene_id"].astype(str)
    t["gene_id"] = t["gene_id"].astype(str)
    d = d.rename(columns={"log2FoldChange": "log2FC_disease", "padj": "padj_disease", "lfcSE": "lfcSE_disease"})
    t = t.rename(columns={"log2FoldChange": "log2FC_treatment", "padj": "padj_treatment", "lfcSE": "lfcSE_treatment",
                          "gene_name": "gene_name_t"})
    out = d.merge(t, on="gene_id", how="outer", sort=False)
    if "gene_name" not in out.columns:
        out["gene_name"] = ""
    if "gene_name_t" in out.columns:
        out["gene_name"] = out["gene_name"].where(out["gene_name"].notna() & (out["gene_name"] != ""),
                                                  out["gene_name_t"])
        out = out.drop(columns="gene_name_t")
    out["gene_name"] = out["gene_name"].fillna("").astype(str)
    for c in ("baseMean", "lfcSE_disease", "lfcSE_treatment"):
        if c not in out.columns:
            out[c] = np.nan
    dx = out["log2FC_disease"].to_numpy(dtype=float)
    tx = out["log2FC_treatment"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        dis = (out["padj_disease"].to_numpy(dtype=float) < padj) & (np.abs(dx) > lfc)
        trt = (out["padj_treatment"].to_numpy(dtype=float) < padj) & (np.abs(tx) > lfc)
        opposite = np.sign(dx) * np.sign(tx) < 0
        same = np.sign(dx) * np.sign(tx) > 0
        score = np.where(dis, -tx / dx, np.nan)
    cls = np.full(len(out), "unchanged", dtype=object)
    cls[trt] = "treatment_only"
    cls[dis] = "not_rescued"
    cls[dis & ~trt & opposite & (score >= partial)] = "partially_reversed"
    cls[dis & trt & same] = "aggravated"
    cls[dis & trt & opposite] = "reversed"
    out["disease_deg"] = dis
    out["treatment_deg"] = trt
    out["direction"] = np.where(dis & (dx > 0), "up", np.where(dis, "down", ""))
    out["reversal_score"] = score
    out["rescue_class"] = pd.Categorical(cls, categories=list(CLASSES))
    out["log2FC_treated_vs_control"] = dx + tx
    worst = np.fmax(out["padj_disease"].to_numpy(dtype=float), out["padj_treatment"].to_numpy(dtype=float))
    out["_order"] = worst
    out = out.sort_values(["rescue_class", "_order", "gene_id"], kind="mergesort", na_position="last")
    out["rescue_class"] = out["rescue_class"].astype(str)
    order = ["gene_id", "gene_name", "baseMean", "log2FC_disease", "padj_disease", "lfcSE_disease",
             "log2FC_treatment", "padj_treatment", "lfcSE_treatment", "disease_deg", "treatment_deg", "direction",
             "reversal_score", "rescue_class", "log2FC_treated_vs_control"]
    return out[order].reset_index(drop=True)


def global_reversal(
    genes: pd.DataFrame,
    *,
    n_permutations: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """Correlation of disease and treatment log2FC over the disease DEGs, with a permutation p-value.

    Parameters
    ----------
    genes
        The table of :func:`classify_rescue`.
    n_permutations
        Gene-label shuffles of the treatment log2FC (>= 1).
    seed
        Seed of ``numpy.random.default_rng``; the same seed gives the same p-value.

    Returns
    -------
    dict
        ``n_genes`` (disease DEGs tested in both contrasts), ``pearson_r``, ``spearman_r``,
        ``slope`` (least-squares slope of ``t`` on ``d``), ``p_permutation`` (one-sided, see
        the module docstring), ``n_permutations``, ``seed``. With fewer than 3 genes the
        statistics are NaN and a warning is logged.
    """
    if not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise DegflowInputError(f"n_permutations must be an integer >= 1, got {n_permutations!r}")
    need = ("log2FC_disease", "log2FC_treatment", "disease_deg")
    miss = [c for c in need if c not in genes.columns]
    if miss:
        raise DegflowInputError(f"genes lacks column(s) {miss}; pass the table of rescue.classify_rescue")
    d_all = genes["log2FC_disease"].to_numpy(dtype=float)
    t_all = genes["log2FC_treatment"].to_numpy(dtype=float)
    sel = genes["disease_deg"].to_numpy(dtype=bool) & np.isfinite(d_all) & np.isfinite(t_all)
    d, t = d_all[sel], t_all[sel]
    out = {"n_genes": int(sel.sum()), "pearson_r": np.nan, "spearman_r": np.nan, "slope": np.nan,
           "p_permutation": np.nan, "n_permutations": int(n_permutations), "seed": int(seed)}
    if sel.sum() < 3 or np.ptp(d) == 0 or np.ptp(t) == 0:
        logger.warning("global reversal: %d disease DEG(s) with both fold changes; too few for a correlation",
                       int(sel.sum()))
        return out
    r_obs = float(np.corrcoef(d, t)[0, 1])
    out["pearson_r"] = r_obs
    out["spearman_r"] = float(stats.spearmanr(d, t).statistic)
    out["slope"] = float(np.polyfit(d, t, 1)[0])
    pool = t_all[np.isfinite(t_all)]
    rng = np.random.default_rng(seed)
    dc = (d - d.mean()) / np.sqrt(((d - d.mean()) ** 2).sum())
    n = len(d)
    hits = 0
    chunk = 1000
    for start in range(0, n_permutations, chunk):
        k = min(chunk, n_permutations - start)
        idx = np.stack([rng.choice(pool.size, size=n, replace=False) for _ in range(k)])
        tp = pool[idx]
        tp = tp - tp.mean(axis=1, keepdims=True)
        norm = np.sqrt((tp ** 2).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (tp @ dc) / norm
        hits += int(np.sum(r <= r_obs + 1e-12))
    out["p_permutation"] = (1 + hits) / (1 + n_permutations)
    return out


def log_normalised(counts: pd.DataFrame, size_factors: pd.Series) -> pd.DataFrame:
    """``log2(count / size_factor + 1)`` (DESeq2's ``normTransform``), genes x samples.

    Raises
    ------
    DegflowInputError
        A sample of ``counts`` without a finite positive size factor.
    """
    sf = pd.Series(size_factors).reindex(counts.columns).astype(float)
    bad = ~(np.isfinite(sf.to_numpy()) & (sf.to_numpy() > 0))
    if bad.any():
        raise DegflowInputError(
            f"sample '{counts.columns[bad][0]}' has no positive size factor; re-run the size-factor step"
        )
    return np.log2(counts.astype(float) / sf.to_numpy() + 1.0)


_ARMS = ("treated_model", "all")


def _relabellings(n: tuple[int, int, int], arms: str, n_permutations: int, seed: int) -> tuple[np.ndarray, bool]:
    """Arm codes (0 = control, 1 = model, 2 = treated) of each relabelling, one row each; first row observed.

    Samples are ordered control, model, treated. Exact (every relabelling once) when there are at most
    ``n_permutations`` of them, else ``n_permutations`` random ones after the observed labels.
    """
    from itertools import combinations
    from math import comb, factorial

    nc, nm, nx = n
    observed = np.repeat([0, 1, 2], [nc, nm, nx])
    if arms == "treated_model":
        total = comb(nm + nx, nx)
    else:
        total = factorial(nc + nm + nx) // (factorial(nc) * factorial(nm) * factorial(nx))
    if total <= n_permutations:
        rows = []
        if arms == "treated_model":
            pool = range(nc, nc + nm + nx)
            for xs in combinations(pool, nx):
                lab = observed.copy()
                lab[nc:] = 1
                lab[list(xs)] = 2
                rows.append(lab)
        else:
            idx = range(nc + nm + nx)
            for cs in combinations(idx, nc):
                rest = [i for i in idx if i not in cs]
                for xs in combinations(rest, nx):
                    lab = np.ones(nc + nm + nx, dtype=int)
                    lab[list(cs)] = 0
                    lab[list(xs)] = 2
                    rows.append(lab)
        out = np.array(rows, dtype=int)
        first = int(np.flatnonzero((out == observed).all(axis=1))[0])
        out[[0, first]] = out[[first, 0]]
        return out, True
    rng = np.random.default_rng(seed)
    rows = [observed]
    for _ in range(n_permutations):
        lab = observed.copy()
        if arms == "treated_model":
            lab[nc:] = rng.permutation(lab[nc:])
        else:
            lab = rng.permutation(lab)
        rows.append(lab)
    return np.array(rows, dtype=int), False


def _row_median(x: np.ndarray) -> np.ndarray:
    """Median of each row (as ``numpy.median(x, axis=1)``, via one partition: much faster on wide rows)."""
    g = x.shape[1]
    h = g // 2
    p = np.partition(x, [h] if g % 2 else [h - 1, h], axis=1)
    return p[:, h] if g % 2 else 0.5 * (p[:, h - 1] + p[:, h])


def _label_statistics(y: np.ndarray, labels: np.ndarray, k: int, *, chunk: int = 64) -> np.ndarray:
    """``r_L`` (module docstring) of each labelling; ``y`` genes x samples, ``labels`` labellings x samples.

    Works on labellings x genes blocks (rows contiguous, so the per-labelling median and top-``k`` are fast).
    """
    n_lab = labels.shape[0]
    g = y.shape[0]
    yt = np.ascontiguousarray(y.T)  # samples x genes
    yt2 = yt * yt
    out = np.empty(n_lab)
    for start in range(0, n_lab, chunk):
        lab = labels[start:start + chunk]
        w = [(lab == a).astype(float) for a in range(3)]  # labellings x samples indicators
        cnt = [wa.sum(axis=1, keepdims=True) for wa in w]
        mean = [(wa / ca) @ yt for wa, ca in zip(w, cnt, strict=True)]  # labellings x genes
        var = [((wa / ca) @ yt2 - m * m) * (ca / (ca - 1)) for wa, ca, m in zip(w[:2], cnt[:2], mean[:2], strict=True)]
        d = mean[1] - mean[0]
        t = mean[2] - mean[1]
        se = np.sqrt(np.clip(var[1], 0, None) / cnt[1] + np.clip(var[0], 0, None) / cnt[0])
        z = np.abs(d) / (se + _row_median(se)[:, None] + 1e-12)
        if k < g:
            top = np.argpartition(-z, k - 1, axis=1)[:, :k]
            d = np.take_along_axis(d, top, axis=1)
            t = np.take_along_axis(t, top, axis=1)
        dc = d - d.mean(axis=1, keepdims=True)
        tc = t - t.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = np.sqrt((dc * dc).sum(axis=1) * (tc * tc).sum(axis=1))
            out[start:start + lab.shape[0]] = (dc * tc).sum(axis=1) / norm
    return out


def label_permutation_reversal(
    genes: pd.DataFrame,
    log_expr: pd.DataFrame,
    groups: pd.Series,
    *,
    control: str,
    model: str,
    treated: str,
    arms: str = "treated_model",
    n_permutations: int = 10_000,
    seed: int = 0,
) -> dict[str, object]:
    """Sample-label permutation p-value of the global reversal statistic, keeping the shared model arm.

    The statistic, the relabellings and the p-value are defined in the module docstring.

    Parameters
    ----------
    genes
        The table of :func:`classify_rescue` (gives the tested genes and ``K``, the number of disease DEGs).
    log_expr
        ``log2`` normalised expression, genes (``gene_id``) x samples, e.g. :func:`log_normalised`.
    groups
        Level of each sample on the contrasts' factor (index: sample names); samples of other levels are
        ignored.
    control, model, treated
        The three levels: reference of the disease contrast, shared level, test level of the treatment contrast.
    arms
        ``treated_model`` (exchange model and treated labels: null = inert compound) or ``all`` (all three arms).
    n_permutations
        Largest number of relabellings enumerated exactly; beyond it, this many are drawn at random (>= 1).
    seed
        Seed of ``numpy.random.default_rng`` for drawn relabellings.

    Returns
    -------
    dict
        ``r_log`` (``r_L`` of the observed labels), ``r_label_null_mean`` (mean ``r_L`` over the relabellings),
        ``p_label_permutation``, ``n_label_permutations`` (relabellings used, the observed one included when
        exact), ``label_permutation_exact`` (bool), ``n_label_genes`` (``K``) and ``label_arms``. NaN statistics
        (with a warning) when ``K < 3`` or an arm has fewer than 2 samples.

    Raises
    ------
    DegflowInputError
        Unknown ``arms``, bad ``n_permutations``, a level with no sample, or no tested gene in ``log_expr``.
    """
    if arms not in _ARMS:
        raise DegflowInputError(f"arms must be one of {list(_ARMS)}, got {arms!r}")
    if not isinstance(n_permutations, (int, np.integer)) or n_permutations < 1:
        raise DegflowInputError(f"n_permutations must be an integer >= 1, got {n_permutations!r}")
    need = ("gene_id", "log2FC_disease", "log2FC_treatment", "padj_disease", "disease_deg")
    miss = [c for c in need if c not in genes.columns]
    if miss:
        raise DegflowInputError(f"genes lacks column(s) {miss}; pass the table of rescue.classify_rescue")
    lv = pd.Series(groups).astype(str)
    samples = []
    for name, level in (("control", control), ("model", model), ("treated", treated)):
        s = [c for c in log_expr.columns if lv.get(c) == str(level)]
        if not s:
            raise DegflowInputError(
                f"{name} level '{level}' has no sample among the expression columns; check the sample sheet"
            )
        samples.append(s)
    d_all = genes["log2FC_disease"].to_numpy(dtype=float)
    t_all = genes["log2FC_treatment"].to_numpy(dtype=float)
    tested = np.isfinite(d_all) & np.isfinite(t_all) & genes["padj_disease"].notna().to_numpy()
    ids = pd.Index(genes.loc[tested, "gene_id"].astype(str))
    deg = genes.loc[tested, "disease_deg"].to_numpy(dtype=bool)
    expr = log_expr.copy()
    expr.index = expr.index.astype(str)
    keep = ids.isin(expr.index)
    if not keep.any():
        raise DegflowInputError("no tested gene of the rescue table is in the expression matrix (gene_id mismatch)")
    k = int(deg[keep].sum())
    sizes = tuple(len(s) for s in samples)
    out: dict[str, object] = {"r_log": np.nan, "r_label_null_mean": np.nan, "p_label_permutation": np.nan,
                              "n_label_permutations": 0, "label_permutation_exact": False, "n_label_genes": k,
                              "label_arms": arms}
    if k < 3 or min(sizes) < 2:
        logger.warning("label permutation: %d disease DEG(s), arm sizes %s; need >= 3 genes and >= 2 samples per arm",
                       k, sizes)
        return out
    y = expr.loc[ids[keep], [c for s in samples for c in s]].to_numpy(dtype=float)
    labels, exact = _relabellings(sizes, arms, int(n_permutations), int(seed))
    start = time.perf_counter()
    r = _label_statistics(y, labels, k)
    r_obs = float(r[0])
    null = r if exact else r[1:]
    hits = int(np.sum(null <= r_obs + 1e-12))
    out.update({
        "r_log": r_obs,
        "r_label_null_mean": float(np.nanmean(null)),
        "p_label_permutation": hits / null.size if exact else (1 + hits) / (1 + null.size),
        "n_label_permutations": int(labels.shape[0] if exact else null.size),
        "label_permutation_exact": bool(exact),
    })
    logger.info("label permutation (%s): %d %s relabellings of %s samples, %d genes: r_log %.3f, null mean %.3f, "
                "p %.4g (%.1f s)", arms, out["n_label_permutations"], "enumerated" if exact else "drawn", sizes, k,
                r_obs, out["r_label_null_mean"], out["p_label_permutation"], time.perf_counter() - start)
    return out


def shared_reference_correlation(genes: pd.DataFrame, *, n_reference: int, n_treated: int) -> float:
    """The correlation an inert compound would give, from the model group both contrasts share.

    ``d = m - c`` and ``t = x - m`` share the model-group mean ``m``. For an inert compound
    (``t`` is noise only) the covariance of ``d`` and ``t`` across genes is
    ``-mean(se_m^2)``, where ``se_m`` is the standard error of a gene's model-group mean, so
    the expected correlation over the disease DEGs is::

        r_shared = -mean(se_m^2) / sqrt(var(d) * mean(lfcSE_t^2))

    with ``se_m^2 = lfcSE_t^2 * (1/n_m) / (1/n_x + 1/n_m)`` (``lfcSE_t^2`` is the variance of
    ``t``: one part from the model group, one from the treated group, in proportion to
    ``1/n``). It is an approximation (the DESeq2 standard errors are on the log2 scale and
    include the dispersion prior); judge the observed ``pearson_r`` against it, not against 0.

    Parameters
    ----------
    genes
        Table of :func:`classify_rescue` (needs ``lfcSE_treatment``).
    n_reference, n_treated
        Samples in the model (reference of the treatment contrast) and treated groups.

    Returns
    -------
    float
        NaN when fewer than 3 disease DEGs have both fold changes and a standard error.
    """
    for name, v in (("n_reference", n_reference), ("n_treated", n_treated)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise DegflowInputError(f"{name} must be a positive number of samples, got {v!r}")
    d = genes["log2FC_disease"].to_numpy(dtype=float)
    t = genes["log2FC_treatment"].to_numpy(dtype=float)
    se = genes["lfcSE_treatment"].to_numpy(dtype=float)
    sel = genes["disease_deg"].to_numpy(dtype=bool) & np.isfinite(d) & np.isfinite(t) & np.isfinite(se)
    if sel.sum() < 3 or np.ptp(d[sel]) == 0:
        return float("nan")
    var_t = se[sel] ** 2
    a, b = 1.0 / n_reference, 1.0 / n_treated
    var_m = var_t * a / (a + b)
    return float(-var_m.mean() / np.sqrt(d[sel].var() * var_t.mean()))


def rescue_summary(
    genes: pd.DataFrame,
    *,
    treatment: str,
    disease: str,
    reversal: Mapping[str, float],
    shared_reference_r: float | None = None,
    label_permutation: Mapping[str, object] | None = None,
    label_permutation_all_arms: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """One row of ``summary.tsv`` for a treatment.

    Returns
    -------
    dict
        ``treatment``, ``disease``, ``n_disease_deg`` (+ ``_up``/``_down``), the number of
        genes per class (``n_reversed`` ...), ``share_reversed`` (reversed / disease DEGs),
        ``share_reversed_or_partial``, ``median_reversal_score`` (over disease DEGs tested in
        the treatment contrast), the fields of :func:`global_reversal`, ``r_shared_reference``, and, when
        given, the sample-label permutation results of :func:`label_permutation_reversal`: ``r_log``,
        ``n_label_genes``, ``r_label_null_mean``, ``p_label_permutation``, ``n_label_permutations``,
        ``label_permutation_exact`` (model <-> treated exchange) and the same four with suffix ``_all_arms``.
    """
    cls = genes["rescue_class"].astype(str)
    dis = genes["disease_deg"].to_numpy(dtype=bool)
    n_dis = int(dis.sum())
    row: dict[str, object] = {
        "treatment": treatment,
        "disease": disease,
        "n_disease_deg": n_dis,
        "n_disease_deg_up": int((genes["direction"] == "up").sum()),
        "n_disease_deg_down": int((genes["direction"] == "down").sum()),
    }
    for c in CLASSES:
        row[f"n_{c}"] = int((cls == c).sum())
    row["share_reversed"] = row["n_reversed"] / n_dis if n_dis else np.nan
    row["share_reversed_or_partial"] = (row["n_reversed"] + row["n_partially_reversed"]) / n_dis if n_dis else np.nan
    sc = genes.loc[dis, "reversal_score"].to_numpy(dtype=float)
    sc = sc[np.isfinite(sc)]
    row["median_reversal_score"] = float(np.median(sc)) if sc.size else np.nan
    row.update({k: reversal[k] for k in ("n_genes", "pearson_r", "spearman_r", "slope", "p_permutation",
                                         "n_permutations", "seed")})
    row["r_shared_reference"] = np.nan if shared_reference_r is None else float(shared_reference_r)
    keys = ("r_label_null_mean", "p_label_permutation", "n_label_permutations", "label_permutation_exact")
    if label_permutation is not None:
        row["r_log"] = label_permutation["r_log"]
        row["n_label_genes"] = label_permutation["n_label_genes"]
        row.update({k: label_permutation[k] for k in keys})
    if label_permutation_all_arms is not None:
        row.update({f"{k}_all_arms": label_permutation_all_arms[k] for k in keys})
    return row
