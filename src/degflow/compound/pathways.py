"""Gene sets: GMT files, pathway panels, per-sample pathway scores, ORA and preranked GSEA (all offline).

Compute only: figures are in :mod:`degflow.pl.compound`. Gene sets are named by gene
*symbols* (as in MSigDB and most GMT files); DE tables are keyed by ``gene_id`` and carry the
symbol in ``gene_name``, so genes are matched on ``gene_name`` exactly (case-sensitive:
mouse ``Il6`` is not human ``IL6``; pick the GMT of your species). Nothing here downloads
anything: GSEA runs on gseapy's local ``prerank`` with the gene sets passed as a dict.

Public functions
----------------
read_gmt, read_gene_sets
    Parse one or several GMT files, with a one-line message naming the file and line.
bundled_gene_set_files
    The bundled GMT files of a species (``resources/genesets``; sources and licences in its README).
set_members
    The gene ids of a gene set, matched on gene names.
panel_table
    log2FC / padj / regulation of a panel's genes in every contrast.
panel_scores
    Per-sample pathway score: the mean z-score of the set's genes.
ora
    Over-representation (hypergeometric test, Benjamini-Hochberg over sets) of a gene list.
prerank_gsea
    Preranked GSEA (gseapy ``prerank``) on a ranking such as the Wald statistic.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from degflow.errors import DegflowInputError

__all__ = [
    "BUNDLED_GMT",
    "bundled_gene_set_files",
    "ora",
    "panel_scores",
    "panel_table",
    "prerank_gsea",
    "ranking_from_results",
    "read_gene_sets",
    "read_gmt",
    "set_members",
]

logger = logging.getLogger(__name__)

GeneSets = dict[str, list[str]]

ORA_COLUMNS = ["gene_set", "direction", "set_size", "n_genes", "overlap", "expected", "fold_enrichment", "pvalue",
               "padj", "genes"]
GSEA_COLUMNS = ["gene_set", "set_size", "ES", "NES", "pvalue", "fdr", "leading_edge_n", "leading_edge"]


# --------------------------------------------------------------------------------------
# GMT
# --------------------------------------------------------------------------------------
def read_gmt(path: str | Path, *, label: str = "gene-set file") -> GeneSets:
    """Read a GMT file: one gene set per line, ``name<TAB>description<TAB>gene<TAB>gene...``.

    Blank lines and lines starting with ``#`` are skipped; repeated genes within a set are
    kept once (first occurrence); empty fields are ignored.

    Parameters
    ----------
    path
        The GMT file.
    label
        How the file is named in error messages, e.g. the config key it came from.

    Returns
    -------
    dict
        Set name -> list of gene symbols, in file order.

    Raises
    ------
    DegflowInputError
        File missing or empty; a line without a tab, with fewer than 3 fields, an empty name,
        no genes, or a name already used above (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise DegflowInputError(f"{label} '{path}' does not exist: check the path (a GMT file of gene symbols)")
    sets: GeneSets = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            where = f"{label} '{path}', line {lineno}"
            if len(fields) < 3:
                hint = " (fields are separated by spaces, GMT needs tabs)" if len(fields) == 1 and " " in line else ""
                raise DegflowInputError(
                    f"{where}: a GMT line needs name<TAB>description<TAB>gene1<TAB>...; found {len(fields)} field(s){hint}"
                )
            name = fields[0].strip()
            if not name:
                raise DegflowInputError(f"{where}: the gene-set name (first field) is empty")
            if name in sets:
                raise DegflowInputError(f"{where}: gene set '{name}' was already defined above; names must be unique")
            genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))
            if not genes:
                raise DegflowInputError(f"{where}: gene set '{name}' lists no genes")
            sets[name] = genes
    if not sets:
        raise DegflowInputError(f"{label} '{path}' holds no gene sets (empty file?)")
    return sets


#: Stems of the bundled GMT files (``<stem>.<species>.gmt`` in ``resources/genesets``), in load order:
#: 12 MSigDB v7.0 hallmark sets (CC BY 4.0) and 3 WikiPathways sets (CC0: MAPK, p38 MAPK, NRF2).
BUNDLED_GMT: tuple[str, ...] = ("hallmark_v7.0_selected", "wikipathways_selected")
_SPECIES = ("human", "mouse")


def bundled_gene_set_files(species: str, bundled_dir: str | Path) -> list[Path]:
    """The bundled GMT files of ``species`` (``human`` or ``mouse``), in the order of :data:`BUNDLED_GMT`.

    Raises
    ------
    DegflowInputError
        Unknown species, or a bundled file missing from ``bundled_dir``.
    """
    if species not in _SPECIES:
        raise DegflowInputError(f"bundled gene sets exist for {list(_SPECIES)}, not {species!r}")
    files = [Path(bundled_dir) / f"{stem}.{species}.gmt" for stem in BUNDLED_GMT]
    for f in files:
        if not f.is_file():
            raise DegflowInputError(f"bundled gene-set file '{f}' is missing; restore resources/genesets from git")
    return files


def read_gene_sets(paths: Sequence[str | Path], *, label: str = "gene-set file") -> GeneSets:
    """Read several GMT files into one collection; a set name may appear in only one file."""
    out: GeneSets = {}
    origin: dict[str, str] = {}
    for p in paths:
        for name, genes in read_gmt(p, label=label).items():
            if name in out:
                raise DegflowInputError(
                    f"{label} '{p}': gene set '{name}' is also in '{origin[name]}'; rename one of them"
                )
            out[name] = genes
            origin[name] = str(p)
    return out


def _names(gene_names: pd.Series) -> pd.Series:
    if not isinstance(gene_names, pd.Series):
        raise DegflowInputError("gene_names must be a pandas Series (gene_id -> gene symbol)")
    return gene_names.astype("string").fillna("")


def set_members(genes: Sequence[str], gene_names: pd.Series) -> list[str]:
    """The gene ids whose name is in ``genes`` (all ids of a name shared by several ids).

    Parameters
    ----------
    genes
        Gene symbols of one set.
    gene_names
        gene_id -> gene symbol (e.g. the ``gene_name`` column of results.tsv).

    Returns
    -------
    list of str
        Gene ids, in the order of ``gene_names``.
    """
    names = _names(gene_names)
    wanted = set(genes)
    return [str(i) for i, n in names.items() if n in wanted]


# --------------------------------------------------------------------------------------
# panels
# --------------------------------------------------------------------------------------
def panel_table(genes: Sequence[str], results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """log2FC, padj and regulation of a panel's genes in every contrast.

    Parameters
    ----------
    genes
        Gene symbols of the panel.
    results
        Contrast name -> results table (``gene_id``, ``gene_name``, ``log2FoldChange``,
        ``padj``, ``regulation``).

    Returns
    -------
    pandas.DataFrame
        One row per gene id found in any contrast: ``gene_id``, ``gene_name``, then for each
        contrast ``log2FC_<contrast>``, ``padj_<contrast>``, ``regulation_<contrast>``.
        Sorted by gene name. Empty (with those columns) when no panel gene is in the data.
    """
    if not results:
        raise DegflowInputError("results is empty: give at least one contrast's results table")
    wanted = set(genes)
    frames = []
    ids: dict[str, str] = {}
    for name, res in results.items():
        miss = [c for c in ("gene_id", "gene_name", "log2FoldChange", "padj") if c not in res.columns]
        if miss:
            raise DegflowInputError(f"results of contrast '{name}' lack column(s) {miss}")
        sub = res.loc[res["gene_name"].astype("string").fillna("").isin(wanted)].copy()
        sub["gene_id"] = sub["gene_id"].astype(str)
        ids.update(dict(zip(sub["gene_id"], sub["gene_name"].astype(str), strict=True)))
        reg = sub["regulation"] if "regulation" in sub.columns else pd.Series("", index=sub.index)
        frames.append(pd.DataFrame({f"log2FC_{name}": sub["log2FoldChange"].to_numpy(float),
                                    f"padj_{name}": sub["padj"].to_numpy(float),
                                    f"regulation_{name}": reg.astype(str).to_numpy()},
                                   index=pd.Index(sub["gene_id"], name="gene_id")))
    table = pd.concat(frames, axis=1, join="outer") if frames else pd.DataFrame()
    table.insert(0, "gene_name", [ids.get(i, "") for i in table.index])
    table = table.reset_index()
    return table.sort_values(["gene_name", "gene_id"], kind="mergesort").reset_index(drop=True)


def panel_scores(
    expression: pd.DataFrame,
    gene_sets: Mapping[str, Sequence[str]],
    gene_names: pd.Series,
    *,
    min_genes: int = 3,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-sample pathway score: the mean z-score of the set's genes.

    Each gene is z-scored across samples (:func:`degflow.bulk.degs.zscore_rows`) on the log scale
    (pass variance-stabilised or log2 normalised counts), then the score of a sample is the
    mean over the set's genes that vary across samples. A positive score means the set's
    genes are, on average, above their own mean in that sample. Scores are comparable between
    samples of one run, not between gene sets (each set has its own genes).

    Parameters
    ----------
    expression
        Genes x samples, log scale, indexed by gene id.
    gene_sets
        Set name -> gene symbols.
    gene_names
        gene_id -> symbol.
    min_genes
        Sets with fewer varying genes in the data get NaN scores (and a warning).

    Returns
    -------
    scores, sizes
        ``scores``: samples x sets (float). ``sizes``: one row per set with ``set_size``
        (symbols in the set), ``n_found`` (gene ids in the data), ``n_used`` (varying genes).
    """
    from degflow.bulk.degs import zscore_rows

    if not isinstance(expression, pd.DataFrame):
        raise DegflowInputError("expression must be a genes x samples DataFrame")
    z = zscore_rows(expression)
    varying = expression.to_numpy(dtype=float).std(axis=1) > 0
    z = z.loc[varying]
    names = _names(gene_names).reindex(z.index.astype(str)).fillna("")
    names.index = z.index
    scores = {}
    sizes = []
    for name, genes in gene_sets.items():
        found = set_members(genes, _names(gene_names))
        use = names.index[names.isin(set(genes))]
        if len(use) < min_genes:
            logger.warning("gene set %s: %d varying gene(s) in the data (< %d); score is NaN", name, len(use), min_genes)
            scores[name] = pd.Series(np.nan, index=expression.columns)
        else:
            scores[name] = z.loc[use].mean(axis=0)
        sizes.append({"gene_set": name, "set_size": len(genes), "n_found": len(found), "n_used": int(len(use))})
    out = pd.DataFrame(scores, index=expression.columns)
    out.index.name = "sample"
    return out, pd.DataFrame(sizes, columns=["gene_set", "set_size", "n_found", "n_used"])


# --------------------------------------------------------------------------------------
# enrichment
# --------------------------------------------------------------------------------------
def _bh(p: np.ndarray) -> np.ndarray:
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def ora(
    genes: Sequence[str],
    universe: Sequence[str],
    gene_sets: Mapping[str, Sequence[str]],
    *,
    direction: str = "",
    min_size: int = 5,
    max_size: int = 500,
) -> pd.DataFrame:
    """Over-representation analysis: is a gene list enriched in each set? (hypergeometric, BH).

    For a set with ``K`` genes in the universe (``N`` genes) and a list of ``n`` genes of which
    ``k`` are in the set, ``pvalue = P(X >= k)`` with ``X ~ Hypergeometric(N, K, n)``
    (one-sided, ``scipy.stats.hypergeom.sf(k - 1, N, K, n)``); ``padj`` is Benjamini-Hochberg
    over the sets tested (``min_size <= K <= max_size``). The universe should be the genes that
    could have been in the list, e.g. every gene with a padj in the contrast.

    Parameters
    ----------
    genes
        The gene list (symbols), e.g. the up-regulated DEGs; must lie in ``universe``.
    universe
        Background gene symbols.
    gene_sets
        Set name -> symbols.
    direction
        Label copied into the ``direction`` column (``up``/``down``).
    min_size, max_size
        Sets with fewer/more universe genes are not tested.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ORA_COLUMNS`, sorted by pvalue then name: ``set_size`` (K),
        ``n_genes`` (n), ``overlap`` (k), ``expected`` (n K / N), ``fold_enrichment``,
        ``pvalue``, ``padj``, ``genes`` (the overlap, ``;``-joined).
    """
    uni = set(map(str, universe))
    lst = set(map(str, genes)) & uni
    if len(set(map(str, genes)) - uni):
        logger.info("ORA: %d gene(s) of the list are outside the universe and ignored", len(set(genes) - uni))
    N, n = len(uni), len(lst)
    rows = []
    for name, members in gene_sets.items():
        s = set(members) & uni
        K = len(s)
        if K < min_size or K > max_size:
            continue
        hit = sorted(s & lst)
        k = len(hit)
        p = float(stats.hypergeom.sf(k - 1, N, K, n)) if n else 1.0
        exp = n * K / N if N else np.nan
        rows.append({"gene_set": name, "direction": direction, "set_size": K, "n_genes": n, "overlap": k,
                     "expected": exp, "fold_enrichment": k / exp if exp else np.nan, "pvalue": p,
                     "padj": np.nan, "genes": ";".join(hit)})
    out = pd.DataFrame(rows, columns=ORA_COLUMNS)
    if len(out):
        out["padj"] = _bh(out["pvalue"].to_numpy(dtype=float))
        out = out.sort_values(["pvalue", "gene_set"], kind="mergesort").reset_index(drop=True)
    return out


def ranking_from_results(results: pd.DataFrame, *, column: str = "stat") -> pd.Series:
    """Gene symbol -> ranking value (default the Wald statistic) for GSEA.

    Genes without a name or a value are left out; a symbol shared by several gene ids keeps the
    value with the largest absolute size. Sorted decreasing.
    """
    for c in ("gene_name", column):
        if c not in results.columns:
            raise DegflowInputError(f"results lack column '{c}' needed to rank genes for GSEA")
    r = pd.DataFrame({"name": results["gene_name"].astype("string").fillna(""),
                      "v": pd.to_numeric(results[column], errors="coerce")})
    r = r[(r["name"] != "") & r["v"].notna()]
    r = r.loc[r["v"].abs().sort_values(ascending=False, kind="mergesort").index].drop_duplicates("name")
    return pd.Series(r["v"].to_numpy(float), index=r["name"].astype(str).to_numpy()).sort_values(ascending=False,
                                                                                               kind="mergesort")


def prerank_gsea(
    ranking: pd.Series,
    gene_sets: Mapping[str, Sequence[str]],
    *,
    permutations: int = 1000,
    seed: int = 0,
    min_size: int = 5,
    max_size: int = 500,
    threads: int = 1,
) -> pd.DataFrame:
    """Preranked GSEA with gseapy ``prerank`` (offline: gene sets are passed as a dict).

    Gene-set permutations (gseapy's only mode for prerank), weighted score (p = 1), as in GSEA
    (Subramanian et al. 2005). ``pvalue`` is gseapy's nominal p-value, ``fdr`` its FDR q-value;
    with ``permutations`` permutations the smallest p-value is about ``1 / permutations``.

    Parameters
    ----------
    ranking
        Gene symbol -> value, e.g. :func:`ranking_from_results` (Wald statistic).
    gene_sets
        Set name -> symbols.
    permutations, seed
        gseapy ``permutation_num`` and ``seed``; the same seed gives the same table.
    min_size, max_size
        Sets with fewer/more ranked genes are skipped.
    threads
        gseapy ``threads``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`GSEA_COLUMNS`, sorted by pvalue then name. Empty when no set has a size
        in range.
    """
    import gseapy

    if not isinstance(ranking, pd.Series) or ranking.empty:
        raise DegflowInputError("ranking must be a non-empty Series (gene symbol -> statistic)")
    sets = {k: [g for g in v] for k, v in gene_sets.items()}
    names = set(ranking.index)
    sizes = {k: len(set(v) & names) for k, v in sets.items()}
    sets = {k: v for k, v in sets.items() if min_size <= sizes[k] <= max_size}
    if not sets:
        logger.warning("GSEA: no gene set has between %d and %d ranked genes", min_size, max_size)
        return pd.DataFrame(columns=GSEA_COLUMNS)
    rnk = pd.DataFrame({0: ranking.index.astype(str), 1: ranking.to_numpy(dtype=float)})
    res = gseapy.prerank(rnk=rnk, gene_sets=sets, outdir=None, permutation_num=int(permutations), seed=int(seed),
                         min_size=min_size, max_size=max_size, threads=int(threads), no_plot=True, verbose=False)
    d = res.res2d
    lead = d["Lead_genes"].astype(str)
    out = pd.DataFrame({
        "gene_set": d["Term"].astype(str),
        "set_size": [sizes[t] for t in d["Term"].astype(str)],
        "ES": pd.to_numeric(d["ES"]).to_numpy(float),
        "NES": pd.to_numeric(d["NES"]).to_numpy(float),
        "pvalue": pd.to_numeric(d["NOM p-val"]).to_numpy(float),
        "fdr": pd.to_numeric(d["FDR q-val"]).to_numpy(float),
        "leading_edge_n": [len([g for g in s.split(";") if g]) for s in lead],
        "leading_edge": lead.to_numpy(),
    })
    return out.sort_values(["pvalue", "gene_set"], kind="mergesort").reset_index(drop=True)
