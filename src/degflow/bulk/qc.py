"""Bulk RNA-seq sample QC: compute only, no drawing.

Every public function here returns pandas objects that :mod:`degflow.pl.bulk` draws and the
workflow writes as tables. Nothing here reads files, drops samples or looks at config.

Public functions
----------------
sample_qc
    Per-sample library size, detected genes, share of the top genes, % mitochondrial.
pca
    PCA on the most variable genes, as DESeq2's ``plotPCA``.
sample_distances
    Euclidean sample-to-sample distances and a hierarchical clustering of the samples.
outlier_flags
    Leave-one-out distance on the first principal components; flags, never drops.

The expression they take comes from :mod:`degflow.bulk.vst` (and :mod:`degflow.bulk.batch`);
DE result summaries are in :mod:`degflow.bulk.degs`; the input checks in :mod:`degflow.checks`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import pdist, squareform

from degflow.checks import check_count_frame, check_matrix
from degflow.errors import DegflowInputError

__all__ = [
    "SampleDistances",
    "outlier_flags",
    "pca",
    "sample_distances",
    "sample_qc",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# per-sample QC
# --------------------------------------------------------------------------------------
def sample_qc(
    counts: pd.DataFrame,
    *,
    gene_names: pd.Series | Mapping[str, str] | None = None,
    top_n: int = 100,
    mito_prefixes: Sequence[str] = ("MT-", "mt-"),
    mito_genes: Sequence[str] | None = None,
    quantifier_qc: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per-sample QC metrics of a raw count matrix.

    Parameters
    ----------
    counts
        Raw counts, genes x samples (integers, or estimated counts from Salmon/kallisto).
    gene_names
        Gene symbol per gene id (``Series`` or mapping indexed by ``counts.index``), used to
        find mitochondrial genes. If ``None``, the index of ``counts`` itself is searched
        (useful when genes are already named by symbol).
    top_n
        Number of most-expressed genes per sample for ``pct_top{top_n}``.
    mito_prefixes
        Symbol prefixes of mitochondrially encoded genes (``MT-`` human, ``mt-`` mouse), as
        in Ensembl/GENCODE names. NCBI/org.Hs.eg.db symbols lack the prefix (``COX1``,
        ``ND1``): pass ``mito_genes`` then.
    mito_genes
        Explicit ids (index of ``counts``) of mitochondrial genes, e.g. the genes on chrM of
        the annotation. Overrides ``gene_names``/``mito_prefixes``.
    quantifier_qc
        Optional per-sample table from the quantifier (e.g. STAR/Salmon assignment rates),
        indexed by sample. Its columns are appended; every sample of ``counts`` must be in it.

    Returns
    -------
    pandas.DataFrame
        Indexed by sample (column order of ``counts``), with columns

        ``library_size`` : float64
            Sum of counts.
        ``detected_genes`` : int64
            Genes with a count > 0.
        ``pct_top{top_n}`` : float64
            Percentage (0-100) of the sample's counts in its ``top_n`` most-expressed genes.
            High values mean few genes dominate the library (degradation, rRNA, low complexity).
        ``n_mito_genes`` : int64
            How many genes matched ``mito_prefixes`` (the same for every sample).
        ``pct_mito`` : float64
            Percentage (0-100) of counts in those genes; **NaN when no gene matched**
            (no names given, or symbols without the ``MT-`` prefix) - ``n_mito_genes`` is then
            0 and ``attrs["pct_mito"]`` says why.
        quantifier columns
            Whatever ``quantifier_qc`` holds, in its column order.

        ``attrs["degflow"]`` records the parameters.
    """
    counts = check_count_frame(counts)
    if not isinstance(top_n, (int, np.integer)) or top_n < 1:
        raise DegflowInputError(f"top_n must be a positive integer, got {top_n!r}")
    if isinstance(mito_prefixes, str):
        mito_prefixes = (mito_prefixes,)
    values = counts.to_numpy(dtype=float)
    lib = values.sum(axis=0)
    detected = (values > 0).sum(axis=0)
    k = min(int(top_n), values.shape[0])
    # sum of the k largest per column (np.partition: order within the top k is irrelevant)
    top = np.partition(values, values.shape[0] - k, axis=0)[values.shape[0] - k :].sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct_top = np.where(lib > 0, 100.0 * top / lib, np.nan)

    if mito_genes is not None:
        wanted = set(map(str, [mito_genes] if isinstance(mito_genes, str) else mito_genes))
        is_mito = counts.index.astype(str).isin(wanted)
        source = "mito_genes"
        match = f"{int(is_mito.sum())} of the {len(wanted)} ids in mito_genes found in counts"
    else:
        if gene_names is None:
            names = pd.Series(counts.index.astype(str), index=counts.index)
            source = "the count table's gene ids"
        else:
            names = pd.Series(gene_names) if not isinstance(gene_names, pd.Series) else gene_names
            names = names.reindex(counts.index)
            source = "gene_names"
        is_mito = names.astype("string").str.startswith(tuple(mito_prefixes)).fillna(False).to_numpy(dtype=bool)
        match = f"{int(is_mito.sum())} genes whose name in {source} starts with {tuple(mito_prefixes)}"
    n_mito = int(is_mito.sum())
    if n_mito:
        with np.errstate(invalid="ignore", divide="ignore"):
            pct_mito = np.where(lib > 0, 100.0 * values[is_mito].sum(axis=0) / lib, np.nan)
        mito_note = match
    else:
        pct_mito = np.full(values.shape[1], np.nan)
        mito_note = f"not computed: {match}; pass mito_genes (ids of chrM genes) or Ensembl-style gene_names"

    out = pd.DataFrame(
        {
            "library_size": lib,
            "detected_genes": detected.astype(np.int64),
            f"pct_top{top_n}": pct_top,
            "n_mito_genes": np.full(values.shape[1], n_mito, dtype=np.int64),
            "pct_mito": pct_mito,
        },
        index=pd.Index(counts.columns, name="sample"),
    )
    if quantifier_qc is not None:
        if not isinstance(quantifier_qc, pd.DataFrame):
            raise DegflowInputError("quantifier_qc must be a DataFrame indexed by sample")
        missing = [s for s in out.index if s not in quantifier_qc.index]
        if missing:
            raise DegflowInputError(
                f"quantifier_qc has no row for sample(s) {missing[:3]}; its index must hold the count table's samples"
            )
        clash = [c for c in quantifier_qc.columns if c in out.columns]
        if clash:
            raise DegflowInputError(f"quantifier_qc column(s) {clash} clash with sample_qc's own; rename them")
        out = out.join(quantifier_qc, how="left")
    out.attrs["pct_mito"] = mito_note
    out.attrs["degflow"] = {"top_n": int(top_n), "mito_prefixes": list(mito_prefixes)}
    return out


# --------------------------------------------------------------------------------------
# PCA, distances, outliers
# --------------------------------------------------------------------------------------
def pca(
    matrix: pd.DataFrame,
    *,
    n_top: int | None = 500,
    n_components: int | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """Principal components of the samples, as DESeq2's ``plotPCA``.

    Keeps the ``n_top`` genes with the highest variance across samples (all genes if
    ``None``), centres each gene (no scaling) and takes the SVD. Signs are fixed so that the
    largest-magnitude gene loading of each PC is positive, making results deterministic.

    Parameters
    ----------
    matrix
        Variance-stabilised expression, genes x samples (see :func:`variance_stabilised`).
    n_top
        Number of most variable genes used (DESeq2: 500).
    n_components
        Number of PCs returned; default ``min(n_samples - 1, n_genes used)`` (at least 1).

    Returns
    -------
    coords : pandas.DataFrame
        samples x ``PC1..PCk`` (float64).
    variance_ratio : pandas.Series
        Fraction (0-1) of the total variance of the selected genes explained by each PC, as
        ``plotPCA``'s ``percentVar / 100``.
    """
    matrix = check_matrix(matrix, "matrix")
    n_samples = matrix.shape[1]
    if n_samples < 2:
        raise DegflowInputError(f"PCA needs at least 2 samples, got {n_samples}")
    values = matrix.to_numpy(dtype=float)
    var = values.var(axis=1, ddof=1)
    if n_top is not None:
        if n_top < 1:
            raise DegflowInputError(f"n_top must be >= 1 or None, got {n_top!r}")
        k = min(int(n_top), values.shape[0])
        # stable sort on -variance: ties broken by gene order, deterministic
        sel = np.argsort(-var, kind="stable")[:k]
        values = values[sel]
    x = values.T - values.T.mean(axis=0)  # samples x genes, centred
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    max_k = max(1, min(n_samples - 1, x.shape[1]))
    k = max_k if n_components is None else int(n_components)
    if not 1 <= k <= min(x.shape):
        raise DegflowInputError(f"n_components must be between 1 and {min(x.shape)}, got {n_components!r}")
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1
    scores = u * s * signs
    total = float((s**2).sum())
    ratio = (s**2) / total if total > 0 else np.zeros_like(s)
    names = [f"PC{i + 1}" for i in range(k)]
    coords = pd.DataFrame(scores[:, :k], index=pd.Index(matrix.columns, name="sample"), columns=names)
    vr = pd.Series(ratio[:k], index=names, name="variance_ratio")
    coords.attrs["degflow"] = {"n_top": n_top, "n_genes_used": int(x.shape[1])}
    return coords, vr


class SampleDistances(NamedTuple):
    """Result of :func:`sample_distances`."""

    #: samples x samples Euclidean distances, in the input sample order.
    distances: pd.DataFrame
    #: scipy linkage matrix of the hierarchical clustering of the samples.
    linkage: np.ndarray
    #: sample names in the clustering's leaf order (top to bottom of the heatmap).
    order: list[str]


def sample_distances(
    matrix: pd.DataFrame,
    *,
    method: Literal["complete", "average", "single", "ward"] = "complete",
) -> SampleDistances:
    """Euclidean distances between samples and their hierarchical clustering.

    As in the DESeq2 vignette: ``dist(t(assay(vsd)))`` on all genes of the variance-stabilised
    matrix, clustered with ``hclust`` (complete linkage by default).

    Parameters
    ----------
    matrix
        Variance-stabilised expression, genes x samples.
    method
        Linkage method passed to :func:`scipy.cluster.hierarchy.linkage`.

    Returns
    -------
    SampleDistances
        ``distances`` (DataFrame, float64), ``linkage`` (ndarray) and ``order`` (list[str]).
    """
    matrix = check_matrix(matrix, "matrix")
    if method not in ("complete", "average", "single", "ward"):
        raise DegflowInputError(f"method must be complete, average, single or ward, got {method!r}")
    if matrix.shape[1] < 2:
        raise DegflowInputError(f"sample distances need at least 2 samples, got {matrix.shape[1]}")
    cond = pdist(matrix.to_numpy(dtype=float).T, metric="euclidean")
    link = hierarchy.linkage(cond, method=method)
    order = [str(matrix.columns[i]) for i in hierarchy.leaves_list(link)]
    dist = pd.DataFrame(squareform(cond), index=matrix.columns, columns=matrix.columns)
    dist.index.name = dist.columns.name = "sample"
    return SampleDistances(dist, link, order)


def outlier_flags(
    coords: pd.DataFrame,
    *,
    n_pcs: int = 2,
    quantile: float = 0.999,
    min_samples: int = 4,
) -> pd.DataFrame:
    """Flag samples lying far from the others on the first principal components.

    Rule (leave-one-out distance, with sequential deletion):

    1. On PC1..PC``k`` (``k = n_pcs``), for each sample *i* take the other samples
       (``m`` of them), their mean ``c`` and their pooled per-PC variance
       ``s**2 = sum_PC var(others, ddof=1) / k``.
    2. ``z_i = ||x_i - c|| / (s * sqrt(1 + 1/m))``: how far the sample lies from the others,
       in units of the others' own spread. For Gaussian samples ``z_i**2 / k`` follows an
       F(k, k(m-1)) distribution (prediction of a new point from m points).
    3. The sample with the largest ``z`` is flagged if ``z**2 / k`` exceeds the ``quantile``
       (default 0.999) of that F distribution (``z > 5.09`` for 8 samples and k = 2). It is
       then left out of the reference set and step 1-3 repeat on the rest, until no sample is
       flagged or fewer than ``min_samples`` remain. This unmasks a second outlier that the
       first would hide.

    Why not per-PC robust z-scores (median/MAD): an outlier usually *defines* PC1, the other
    samples then sit close together on it, and on airway with one corrupted sample the MAD
    rule also flagged an ordinary donor pair (its two samples differ from the other five on
    PC2). Leaving the tested sample out keeps it from inflating the spread it is judged
    against, while a pair (or group) of similar samples is judged against a spread that
    includes its partner, so it is not flagged. Limitation: two gross outliers far apart in
    different directions can hide each other.

    Samples are never removed: the flag is for a person to look at. With fewer than
    ``min_samples`` samples (default 4) nothing is computed (``z`` NaN, no flag) and
    ``attrs["note"]`` says so (also logged at WARNING level).

    Parameters
    ----------
    coords
        samples x PCs, as returned by :func:`pca`.
    n_pcs
        Number of leading PCs used.
    quantile
        F-distribution quantile above which a sample is flagged (0.5 < quantile < 1).
    min_samples
        Fewest samples for which flags are computed (>= 3).

    Returns
    -------
    pandas.DataFrame
        Indexed by sample: ``distance`` (float64; to the mean of the reference samples, PCA
        units), ``z`` (float64; as defined above, from the pass that flagged the sample, or
        the last pass), ``threshold`` (float64; the cut-off that ``z`` was compared with) and
        ``outlier`` (bool). ``attrs["rule"]`` states the rule.
    """
    from scipy.stats import f as f_dist

    if not isinstance(coords, pd.DataFrame):
        raise DegflowInputError(f"coords must be a samples x PCs DataFrame, got {type(coords).__name__}")
    if not isinstance(n_pcs, (int, np.integer)) or n_pcs < 1 or n_pcs > coords.shape[1]:
        raise DegflowInputError(f"n_pcs must be between 1 and {coords.shape[1]} (columns of coords), got {n_pcs!r}")
    if not 0.5 < quantile < 1:
        raise DegflowInputError(f"quantile must be between 0.5 and 1, got {quantile!r}")
    if min_samples < 3:
        raise DegflowInputError(f"min_samples must be >= 3, got {min_samples!r}")
    cols = list(coords.columns[:n_pcs])
    x = coords[cols].to_numpy(dtype=float)
    if not np.isfinite(x).all():
        raise DegflowInputError("coords has NaN or infinite values")
    k = len(cols)
    rule = (
        f"leave-one-out distance on {', '.join(map(str, cols))}: z = |x - mean(others)| / "
        f"(pooled sd(others) * sqrt(1 + 1/m)); flagged if z^2/{k} > F({k}, {k}(m-1)) {quantile:g} quantile; "
        "repeated without flagged samples"
    )
    n = x.shape[0]
    out = pd.DataFrame(index=coords.index.copy())
    out["distance"] = np.nan
    out["z"] = np.nan
    out["threshold"] = np.nan
    out["outlier"] = False
    if n < min_samples:
        note = f"only {n} samples (< {min_samples}): outliers cannot be told from groups; none flagged"
        logger.warning("outlier_flags: %s", note)
        out.attrs.update({"rule": rule, "note": note})
        return out
    dist = np.full(n, np.nan)
    z = np.full(n, np.nan)
    thr = np.full(n, np.nan)
    flagged = np.zeros(n, dtype=bool)
    ref = np.ones(n, dtype=bool)
    while ref.sum() >= min_samples:
        idx = np.flatnonzero(ref)
        m = idx.size - 1
        cut = float(np.sqrt(k * f_dist.ppf(quantile, k, k * (m - 1))))
        d_pass = np.empty(idx.size)
        z_pass = np.empty(idx.size)
        for j, i in enumerate(idx):
            others = x[idx[idx != i]]
            c = others.mean(axis=0)
            sd = float(np.sqrt(others.var(axis=0, ddof=1).sum() / k))
            d_pass[j] = float(np.sqrt(((x[i] - c) ** 2).sum()))
            z_pass[j] = d_pass[j] / (sd * np.sqrt(1 + 1 / m)) if sd > 0 else (np.inf if d_pass[j] > 0 else 0.0)
        dist[idx], z[idx], thr[idx] = d_pass, z_pass, cut
        worst = int(np.argmax(z_pass))
        if not z_pass[worst] > cut:
            break
        flagged[idx[worst]] = True
        ref[idx[worst]] = False
    out["distance"] = dist
    out["z"] = z
    out["threshold"] = thr
    out["outlier"] = flagged
    out.attrs.update({"rule": rule, "note": ""})
    return out
