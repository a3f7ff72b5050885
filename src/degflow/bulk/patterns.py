"""Likelihood-ratio test outputs: the results table, the significant genes and their expression patterns.

The pattern figure is the one users of DESeq2's LRT draw with DEGreport's ``degPatterns``: the
significant genes' variance-stabilised expression is z-scored per gene, averaged per level of the
grouping factor (arms, doses, time points), the genes are clustered by the shape of that profile and
each cluster gets a panel. degflow clusters with average-linkage hierarchical clustering on the
correlation distance ``1 - r`` of the level profiles (DEGreport uses ``cluster::diana`` on a Kendall
distance); the number of clusters is the one with the best silhouette (2 to ``max_clusters``) unless
given. It is the same kind of figure, not DEGreport's numbers. The figure is drawn by
:func:`degflow.pl.bulk.plot_patterns`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

log = logging.getLogger("degflow")

LRT_COLUMNS = ["baseMean", "log2FoldChange", "lfc_coefficient", "lfcSE", "stat", "pvalue", "padj"]


def lrt_table(res: pd.DataFrame, gene_names: pd.Series | None, *, padj: float) -> pd.DataFrame:
    """The public LRT table: gene_id, gene_name, DESeq2's LRT columns, ``significant``.

    Parameters
    ----------
    res
        :func:`degflow.de.results.lrt_results` (its ``attrs["coefficient"]`` names the log2 fold change).
    gene_names
        gene_id -> symbol, or None. Without any name (None, or every name empty) ``gene_name`` is the gene ID,
        as in :func:`degflow.de.tables.annotate_results`, so the column is always there.
    padj
        Genes with ``padj < padj`` are ``significant`` (the LRT has no fold-change threshold: it tests
        all the coefficients the reduced model drops at once).

    Returns
    -------
    pandas.DataFrame
        Genes with ``baseMean > 0`` (R's untested all-zero genes left out), in count-file order;
        ``lfc_coefficient`` names the full model's coefficient whose log2 fold change is reported
        (R's ``results()`` reports the last one).
    """
    out = res.loc[res["baseMean"] > 0].copy()
    out.index = out.index.astype(str)
    out.index.name = "gene_id"
    out.insert(2, "lfc_coefficient", str(res.attrs.get("coefficient", "")))
    out = out[LRT_COLUMNS]
    if gene_names is None or not (gene_names.fillna("").astype(str) != "").any():
        out.insert(0, "gene_name", out.index.to_numpy(dtype=str))
    else:
        out.insert(0, "gene_name", gene_names.reindex(out.index).fillna("").astype(str).to_numpy())
    out["significant"] = (out["padj"] < padj).to_numpy()
    return out.reset_index()


def significant_genes(table: pd.DataFrame) -> pd.DataFrame:
    """The significant rows of :func:`lrt_table`, sorted by padj, then by LR statistic (descending)."""
    sig = table.loc[table["significant"]]
    order = np.lexsort((-sig["stat"].to_numpy(), sig["padj"].to_numpy()))
    return sig.iloc[order]


def _silhouette_k(dist: np.ndarray, tree: np.ndarray, max_clusters: int) -> int:
    from scipy.cluster.hierarchy import fcluster  # noqa: PLC0415
    from sklearn.metrics import silhouette_score  # noqa: PLC0415

    best_k, best = 2, -np.inf
    n = dist.shape[0]
    for k in range(2, min(max_clusters, n - 1) + 1):
        labels = fcluster(tree, k, criterion="maxclust")
        if len(np.unique(labels)) < 2:
            continue
        score = silhouette_score(dist, labels, metric="precomputed")
        if score > best + 1e-12:
            best_k, best = k, score
    return best_k


def gene_patterns(
    expression: pd.DataFrame,
    groups: pd.Series,
    genes: Sequence[str],
    *,
    n_clusters: int | None = None,
    max_clusters: int = 8,
    min_cluster_size: int = 15,
    max_genes: int = 2000,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster genes by their z-scored mean expression across the levels of a factor (degPatterns style).

    Parameters
    ----------
    expression
        Variance-stabilised expression, genes x samples.
    groups
        The grouping factor per sample (index: samples); categorical order gives the x axis.
    genes
        The genes to cluster (the LRT's significant genes, most significant first).
    n_clusters
        Number of clusters; ``None`` picks the best silhouette between 2 and ``max_clusters``.
    min_cluster_size
        Clusters with fewer genes get cluster 0 ("small cluster"; degPatterns' ``minc`` drops them) and
        no panel.
    max_genes
        Only the first ``max_genes`` genes are clustered (logged when it cuts).

    Returns
    -------
    membership, profiles
        ``membership``: gene_id, cluster (1 = the largest; 0 = in a small cluster), then the gene's
        z-scored mean per level. ``profiles``: z-scores per gene and sample (long: gene_id, sample,
        level, z, cluster), for the figure.

    Raises
    ------
    DegflowInputError
        The grouping factor has fewer than 2 levels among the samples.
    """
    from scipy.cluster.hierarchy import fcluster, linkage  # noqa: PLC0415
    from scipy.spatial.distance import squareform  # noqa: PLC0415

    genes = [str(g) for g in genes]
    if len(genes) > max_genes:
        log.warning("patterns: %d significant genes, the %d most significant are clustered (max_genes)", len(genes),
                    max_genes)
        genes = genes[:max_genes]
    groups = groups.loc[expression.columns]
    levels = list(groups.cat.categories) if isinstance(groups.dtype, pd.CategoricalDtype) else sorted(groups.unique())
    levels = [lv for lv in levels if (groups == lv).any()]
    if len(levels) < 2:
        raise DegflowInputError("patterns: the grouping factor has fewer than 2 levels among the samples")
    x = expression.loc[genes].to_numpy(dtype=float)
    sd = x.std(axis=1, ddof=1, keepdims=True)
    z = np.divide(x - x.mean(axis=1, keepdims=True), sd, out=np.zeros_like(x), where=sd > 0)
    means = np.column_stack([z[:, (groups == lv).to_numpy()].mean(axis=1) for lv in levels])
    if len(genes) < 3:
        labels = np.ones(len(genes), dtype=int)
    else:
        r = np.corrcoef(means)
        r = np.nan_to_num(r, nan=0.0)
        dist = np.clip(1.0 - r, 0.0, 2.0)
        np.fill_diagonal(dist, 0.0)
        dist = (dist + dist.T) / 2
        tree = linkage(squareform(dist, checks=False), method="average")
        k = int(n_clusters) if n_clusters else _silhouette_k(dist, tree, max_clusters)
        labels = fcluster(tree, min(k, len(genes)), criterion="maxclust")
    sizes = pd.Series(labels).value_counts()
    # renumber: 1 = the largest cluster (ties: the one whose first gene is more significant)
    first = {lab: int(np.flatnonzero(labels == lab)[0]) for lab in sizes.index}
    ranked = sorted(sizes.index, key=lambda lab: (-sizes[lab], first[lab]))
    new = {}
    for lab in ranked:
        new[lab] = len([v for v in new.values() if v > 0]) + 1 if sizes[lab] >= min_cluster_size else 0
    cluster = np.array([new[lab] for lab in labels], dtype=int)
    membership = pd.DataFrame(means, columns=[f"z_{lv}" for lv in levels])
    membership.insert(0, "cluster", cluster)
    membership.insert(0, "gene_id", genes)
    prof = pd.DataFrame(z, index=pd.Index(genes, name="gene_id"), columns=expression.columns)
    long = prof.reset_index().melt(id_vars="gene_id", var_name="sample", value_name="z")
    long["level"] = pd.Categorical(groups.loc[long["sample"]].astype(str).to_numpy(), categories=[str(v) for v in levels])
    long["cluster"] = long["gene_id"].map(dict(zip(genes, cluster, strict=True)))
    n_small = int((cluster == 0).sum())
    log.info("patterns: %d genes in %d clusters (+%d genes in clusters of < %d)", len(genes),
             int(cluster.max()), n_small, min_cluster_size)
    return membership, long


def lrt_patterns(
    expression: pd.DataFrame,
    groups: pd.Series,
    significant: pd.DataFrame,
    *,
    title: str = "",
    n_clusters: int | None = None,
    max_clusters: int = 8,
    min_cluster_size: int = 15,
    max_genes: int = 2000,
) -> tuple[pd.DataFrame, Figure]:
    """The membership table and the pattern figure of an LRT's significant genes (see :func:`gene_patterns`).

    Parameters
    ----------
    expression
        Variance-stabilised expression, genes x samples.
    groups
        The grouping factor per sample; its name labels the x axis.
    significant
        :func:`significant_genes` (gene_id [, gene_name], most significant first); may be empty.
    title
        Figure title; the number of genes clustered is appended when ``max_genes`` cuts.

    Returns
    -------
    membership, figure
        gene_id [, gene_name], cluster, z_<level> per gene (empty with no significant gene), and the
        figure (a note when no cluster reaches ``min_cluster_size``).
    """
    from degflow.pl.bulk import plot_patterns  # noqa: PLC0415 - drawing lives in degflow.pl; matplotlib on demand

    if significant.empty:
        return (pd.DataFrame(columns=["gene_id", "cluster"]),
                plot_patterns(pd.DataFrame({"cluster": pd.Series([], dtype=int)}), group_label=str(groups.name)))
    membership, profiles = gene_patterns(expression, groups, list(significant["gene_id"]), n_clusters=n_clusters,
                                         max_clusters=max_clusters, min_cluster_size=min_cluster_size,
                                         max_genes=max_genes)
    if "gene_name" in significant.columns:
        names = significant.set_index("gene_id")["gene_name"].reindex(membership["gene_id"]).fillna("")
        membership.insert(1, "gene_name", names.to_numpy())
    if len(membership) < len(significant):
        title += f", the {len(membership)} most significant clustered"
    return membership, plot_patterns(profiles, group_label=str(groups.name), title=title)
