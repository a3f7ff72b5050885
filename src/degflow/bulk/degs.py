"""Summaries of DE results for tables and figures: classes, counts, overlaps, top genes, z-scores.

Public functions
----------------
classify, regulation
    ``up`` / ``down`` / ``ns`` from log2 fold change and adjusted p-value thresholds (or the table's own column).
deg_counts
    Number of up and down genes per contrast.
deg_overlap, overlap_counts
    Gene-by-contrast membership matrix, and the size of every intersection (UpSet/Venn).
top_genes
    The most significant differentially expressed genes of a results table.
zscore_rows
    Per-gene z-scores for heatmaps.

The checks of a results table and of the thresholds are in :mod:`degflow.checks`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from degflow.checks import check_matrix, check_results, check_thresholds
from degflow.errors import DegflowInputError

__all__ = [
    "classify",
    "deg_counts",
    "deg_overlap",
    "overlap_counts",
    "regulation",
    "top_genes",
    "zscore_rows",
]

_REGULATION_LEVELS = ("up", "down", "ns")


def classify(
    res: pd.DataFrame,
    *,
    lfc: float = 1.0,
    padj: float = 0.05,
    lfc_col: str = "log2FoldChange",
) -> pd.Series:
    """``up`` / ``down`` / ``ns`` per gene: ``padj < padj`` and ``|LFC| > lfc`` (strict).

    Genes with NaN ``padj`` (not tested, independent filtering, Cook's outliers) are ``ns``.

    Returns
    -------
    pandas.Series
        Categorical with categories ``["up", "down", "ns"]``, named ``regulation``.
    """
    res = check_results(res, columns=(lfc_col, "padj"))
    check_thresholds(lfc, padj)
    x = res[lfc_col].to_numpy(dtype=float)
    p = res["padj"].to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        sig = (p < padj) & (np.abs(x) > lfc)
        lab = np.where(sig & (x > 0), "up", np.where(sig & (x < 0), "down", "ns"))
    return pd.Series(pd.Categorical(lab, categories=list(_REGULATION_LEVELS)), index=res.index, name="regulation")


def regulation(res: pd.DataFrame, lfc: float, padj: float, *, lfc_col: str = "log2FoldChange") -> pd.Series:
    """The table's own ``regulation`` column if present, else :func:`classify`.

    Parameters
    ----------
    res
        DE results (checked by :func:`check_results`).
    lfc, padj
        Thresholds of :func:`classify` (used only without a ``regulation`` column).
    lfc_col
        Fold-change column of :func:`classify`.

    Returns
    -------
    pandas.Series
        Categorical ``up`` / ``down`` / ``ns``, named ``regulation``, indexed as ``res``.

    Raises
    ------
    DegflowInputError
        A ``regulation`` column holding other values or missing ones.
    """
    if "regulation" in res.columns:
        reg = res["regulation"].astype("string")
        bad = sorted(set(reg.dropna().unique()) - set(_REGULATION_LEVELS))
        if bad or reg.isna().any():
            raise DegflowInputError(
                f"column 'regulation' must hold only up/down/ns, found {bad[:3] or ['<missing>']}"
            )
        return pd.Series(pd.Categorical(reg.to_numpy(dtype=object), categories=list(_REGULATION_LEVELS)),
                         index=res.index, name="regulation")
    return classify(res, lfc=lfc, padj=padj, lfc_col=lfc_col)


def deg_counts(
    results: Mapping[str, pd.DataFrame],
    *,
    lfc: float = 1.0,
    padj: float = 0.05,
) -> pd.DataFrame:
    """Number of up- and down-regulated genes per contrast.

    Uses each table's ``regulation`` column when present, else :func:`classify` with the
    given thresholds.

    Returns
    -------
    pandas.DataFrame
        Indexed by contrast (input order): ``up``, ``down``, ``tested`` (genes with a
        non-NaN padj), all int64.
    """
    if not results:
        raise DegflowInputError("results is empty: pass {contrast name: DE results table}")
    rows = {}
    for name, res in results.items():
        check_results(res, name=f"results[{name!r}]")
        reg = regulation(res, lfc, padj)
        rows[name] = {
            "up": int((reg == "up").sum()),
            "down": int((reg == "down").sum()),
            "tested": int(res["padj"].notna().sum()),
        }
    out = pd.DataFrame.from_dict(rows, orient="index").astype(np.int64)
    out.index.name = "contrast"
    return out


def deg_overlap(deg_sets: Mapping[str, set[str] | Sequence[str]]) -> pd.DataFrame:
    """Membership matrix of genes in several DEG sets (input of UpSet and Venn plots).

    Parameters
    ----------
    deg_sets
        ``{set name: gene ids}``, e.g. ``{"trt_vs_untrt up": {...}, ...}``.

    Returns
    -------
    pandas.DataFrame
        bool, one row per gene in any set (sorted by gene id), one column per set (input
        order). Empty sets give an all-False column.
    """
    if not isinstance(deg_sets, Mapping) or len(deg_sets) == 0:
        raise DegflowInputError("deg_sets must be a non-empty {name: set of gene ids} mapping")
    sets = {str(k): set(map(str, v)) for k, v in deg_sets.items()}
    if len(sets) != len(deg_sets):
        raise DegflowInputError("deg_sets has names that collide once converted to text")
    genes = sorted(set().union(*sets.values()))
    out = pd.DataFrame({k: [g in s for g in genes] for k, s in sets.items()}, index=pd.Index(genes, name="gene_id"))
    return out.astype(bool)


def overlap_counts(membership: pd.DataFrame) -> pd.DataFrame:
    """Size of every exclusive intersection of a membership matrix.

    Parameters
    ----------
    membership
        bool genes x sets, as returned by :func:`deg_overlap`.

    Returns
    -------
    pandas.DataFrame
        One row per combination of sets that holds at least one gene: a bool column per set
        (True = in that set) and ``n_genes`` (int64) - genes in exactly those sets. Sorted
        by ``n_genes`` descending, then by the number of sets and the pattern, so the
        order is deterministic.
    """
    if not isinstance(membership, pd.DataFrame) or membership.shape[1] == 0:
        raise DegflowInputError("membership must be a genes x sets bool DataFrame (see qc.deg_overlap)")
    if not all(pd.api.types.is_bool_dtype(membership[c]) for c in membership.columns):
        raise DegflowInputError("membership must hold True/False only (see qc.deg_overlap)")
    cols = list(membership.columns)
    m = membership[membership.any(axis=1)]
    if m.empty:
        return pd.DataFrame({**{c: pd.Series(dtype=bool) for c in cols}, "n_genes": pd.Series(dtype=np.int64)})
    counts = m.groupby(cols, sort=True).size().rename("n_genes").reset_index()
    counts["n_genes"] = counts["n_genes"].astype(np.int64)
    counts["_degree"] = counts[cols].sum(axis=1)
    key = counts[cols].astype(int).astype(str).agg("".join, axis=1)
    counts["_key"] = key
    counts = counts.sort_values(["n_genes", "_degree", "_key"], ascending=[False, True, False], kind="stable")
    return counts.drop(columns=["_degree", "_key"]).reset_index(drop=True)


def top_genes(
    res: pd.DataFrame,
    n: int = 20,
    *,
    lfc: float = 1.0,
    padj: float = 0.05,
    lfc_col: str = "log2FoldChange",
    direction: Literal["both", "up", "down"] = "both",
) -> pd.DataFrame:
    """The ``n`` most significant DE genes of a results table.

    Genes are those called up/down (``regulation`` column, else :func:`classify`), ordered
    by ``padj`` ascending, then ``|LFC|`` descending, then gene id (deterministic).

    Returns
    -------
    pandas.DataFrame
        The selected rows of ``res`` (all columns), at most ``n``; a ``regulation`` column is
        added when ``res`` lacks one.
    """
    res = check_results(res, columns=(lfc_col, "padj"))
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise DegflowInputError(f"n must be a non-negative integer, got {n!r}")
    if direction not in ("both", "up", "down"):
        raise DegflowInputError(f"direction must be both, up or down, got {direction!r}")
    reg = regulation(res, lfc, padj, lfc_col=lfc_col)
    keep = reg.isin(["up", "down"]) if direction == "both" else reg == direction
    sub = res.loc[keep.to_numpy()].copy()
    if "regulation" not in sub.columns:
        sub["regulation"] = reg[keep.to_numpy()].astype(str)
    key = pd.DataFrame(
        {"p": sub["padj"].to_numpy(dtype=float), "a": -np.abs(sub[lfc_col].to_numpy(dtype=float)),
         "g": sub.index.astype(str)},
        index=np.arange(len(sub)),
    )
    idx = key.sort_values(["p", "a", "g"], kind="stable").index.to_numpy()
    return sub.iloc[idx[:n]]


def zscore_rows(matrix: pd.DataFrame) -> pd.DataFrame:
    """Z-score each gene across samples: ``(x - mean) / sd`` (sd with ddof=1).

    Genes with no variation get 0 everywhere (not NaN), so they show as the neutral colour.

    Returns
    -------
    pandas.DataFrame
        float64, same shape, index and columns as ``matrix``.
    """
    matrix = check_matrix(matrix, "matrix")
    v = matrix.to_numpy(dtype=float)
    mean = v.mean(axis=1, keepdims=True)
    sd = v.std(axis=1, ddof=1, keepdims=True) if v.shape[1] > 1 else np.zeros((v.shape[0], 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(sd > 0, (v - mean) / np.where(sd > 0, sd, 1.0), 0.0)
    return pd.DataFrame(z, index=matrix.index, columns=matrix.columns)
