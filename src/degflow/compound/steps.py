"""The workflow's compound-study steps that combine several library calls, one function per ``compound_*`` script.

Each function is the one library call of a ``workflow/scripts/compound_*.py`` script (the script reads the inputs
and writes what it returns): ``compound_rescue``, ``compound_ora``, ``compound_gsea``, ``compound_pathway_scores``,
``compound_panel_heatmap``, ``compound_qpcr``, ``compound_workbook``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from degflow.compound import pathways, qpcr, rescue

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["PathwayScores", "gsea", "ora", "panel_heatmap", "pathway_scores", "qpcr_tables", "rescue_tables",
           "workbook_sheets"]


def rescue_tables(disease: pd.DataFrame, treatment: pd.DataFrame, counts: pd.DataFrame, size_factors: pd.Series,
                  sheet: pd.DataFrame, *, treatment_name: str, disease_name: str, arms: Mapping[str, str],
                  options: Mapping[str, Any], thresholds: Mapping[str, float], sizes: Mapping[str, int]
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rescue of one treatment: per-gene classes and reversal scores, and its summary row.

    The summary carries the gene-shuffling and the sample-label permutation p-values of the global reversal
    statistic (:mod:`degflow.compound.rescue`).

    Parameters
    ----------
    disease, treatment
        The disease contrast's and the treatment contrast's results tables.
    counts, size_factors
        The bulk dataset's counts and size factors (:func:`degflow.io.tables.read_bulk_dataset`).
    sheet
        The sample sheet (its ``arms["factor"]`` column gives each sample's arm).
    treatment_name, disease_name
        The treatment and the disease contrast, as the summary names them.
    arms
        ``factor`` and the ``control``, ``model``, ``treated`` levels.
    options
        ``bulk.rescue`` (``partial``, ``permutations``, ``seed``).
    thresholds
        ``bulk.thresholds``.
    sizes
        The arms' group sizes (:func:`degflow.compound.rescue.shared_reference_correlation`).

    Returns
    -------
    (genes, one-row summary).
    """
    genes = rescue.classify_rescue(disease, treatment, lfc=thresholds["lfc"], padj=thresholds["padj"],
                                   partial=options["partial"])
    reversal = rescue.global_reversal(genes, n_permutations=options["permutations"], seed=options["seed"])
    shared = rescue.shared_reference_correlation(genes, **sizes)
    logn, groups = rescue.log_normalised(counts, size_factors), sheet[arms["factor"]]
    levels = {k: arms[k] for k in ("control", "model", "treated")}
    label = {a: rescue.label_permutation_reversal(genes, logn, groups, **levels, arms=a,
                                                  n_permutations=options["permutations"], seed=options["seed"])
             for a in ("treated_model", "all")}
    row = rescue.rescue_summary(genes, treatment=treatment_name, disease=disease_name, reversal=reversal,
                                shared_reference_r=shared, label_permutation=label["treated_model"],
                                label_permutation_all_arms=label["all"])
    return genes, pd.DataFrame([row])


def ora(results: pd.DataFrame, gene_sets: Mapping[str, Sequence[str]], *, min_size: int, max_size: int
        ) -> pd.DataFrame:
    """Over-representation of a contrast's up and down DEGs in each gene set (hypergeometric, BH).

    The universe is the tested genes (``padj`` not NA) with a name; up, then down.

    Parameters
    ----------
    results
        The contrast's results table.
    gene_sets
        :func:`degflow.compound.pathways.read_gene_sets`.
    min_size, max_size
        ``bulk.enrichment`` set-size limits.
    """
    tested = results[results["padj"].notna() & results["gene_name"].fillna("").ne("")]
    tables = [pathways.ora(tested.loc[tested["regulation"] == d, "gene_name"], tested["gene_name"], gene_sets,
                           direction=d, min_size=min_size, max_size=max_size) for d in ("up", "down")]
    return pd.concat(tables, ignore_index=True)


def gsea(results: pd.DataFrame, gene_sets: Mapping[str, Sequence[str]], *, permutations: int, seed: int,
         min_size: int, max_size: int, threads: int = 1) -> pd.DataFrame:
    """Preranked GSEA of a contrast on the Wald statistic (gseapy prerank, offline).

    Parameters
    ----------
    results
        The contrast's results table (ranked by ``stat``).
    gene_sets
        :func:`degflow.compound.pathways.read_gene_sets`.
    permutations, seed, min_size, max_size
        ``bulk.enrichment`` keys.
    threads
        The rule's threads.
    """
    return pathways.prerank_gsea(pathways.ranking_from_results(results, column="stat"), gene_sets,
                                 permutations=permutations, seed=seed, min_size=min_size, max_size=max_size,
                                 threads=threads)


@dataclass
class PathwayScores:
    """The pathway-panel tables of :func:`pathway_scores`."""

    #: Per-sample score of each panel (index ``sample``).
    scores: pd.DataFrame
    #: Each panel's set size and genes found.
    sizes: pd.DataFrame
    #: The panel genes' variance-stabilised expression (index ``gene_id``).
    expression: pd.DataFrame
    #: Per panel (in order): its genes' log2FC/padj in every contrast.
    panel_tables: list[pd.DataFrame]


def pathway_scores(counts: pd.DataFrame, size_factors: pd.Series, gene_names: pd.Series,
                   gene_sets: Mapping[str, Sequence[str]], results: Mapping[str, pd.DataFrame], *,
                   panels: Sequence[str], min_genes: int) -> PathwayScores:
    """Pathway panels: per-sample scores, set sizes, the panel genes' expression (VST), their log2FC/padj tables.

    Parameters
    ----------
    counts, size_factors
        The bulk dataset's counts and size factors.
    gene_names
        Gene ID -> name (the dataset's ``var["gene_name"]``).
    gene_sets
        :func:`degflow.compound.pathways.read_gene_sets`.
    results
        Contrast name -> its results table.
    panels
        The gene sets scored (``bulk.pathways.panels``).
    min_genes
        Fewest panel genes found for a score.
    """
    from degflow.bulk.vst import variance_stabilised

    chosen = {name: gene_sets[name] for name in panels}
    names = gene_names.astype(str)
    vst = variance_stabilised(counts, size_factors)
    scores, sizes = pathways.panel_scores(vst, chosen, names, min_genes=min_genes)
    members = sorted({g for genes in chosen.values() for g in pathways.set_members(genes, names)})
    return PathwayScores(scores=scores, sizes=sizes, expression=vst.loc[members].rename_axis("gene_id"),
                         panel_tables=[pathways.panel_table(genes, results) for genes in chosen.values()])


def panel_heatmap(expression: pd.DataFrame, genes: pd.DataFrame, sheet: pd.DataFrame, *, group_by: str,
                  title: str) -> Figure:
    """Heatmap of one pathway panel's genes across samples (z-scored VST expression, arms annotated).

    Parameters
    ----------
    expression
        The panel genes' expression (:attr:`PathwayScores.expression`), index ``gene_id``.
    genes
        The panel's table (:func:`degflow.compound.pathways.panel_table`), index ``gene_id``; genes without
        expression or constant across samples are left out.
    sheet
        The sample sheet.
    group_by
        The column annotating the samples (kept in sheet order).
    title
        The panel's name.
    """
    from degflow.pl import bulk as plots

    keep = [g for g in genes.index if g in expression.index and expression.loc[g].std() > 0]
    return plots.deg_heatmap(expression, keep, sheet, annotate_by=[group_by], cluster_samples=False,
                             gene_names=genes["gene_name"].fillna(""), title=title)


def qpcr_tables(ct: pd.DataFrame, sheet: pd.DataFrame, results: Mapping[str, pd.DataFrame], *,
                contrasts: Mapping[str, Any], reference_genes: Sequence[str], label: str
                ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """qRT-PCR: 2^-ddCt fold changes per gene and contrast, and their concordance with the RNA-seq log2FC.

    Parameters
    ----------
    ct
        :func:`degflow.compound.qpcr.read_ct_table`.
    sheet
        The sample sheet.
    results
        Contrast name -> its RNA-seq results table.
    contrasts, reference_genes
        The contrasts compared and the qPCR reference genes (:func:`degflow.compound.qpcr.ddct`).
    label
        The Ct table's path, in messages.

    Returns
    -------
    (fold changes, gene x contrast pairs, concordance statistics).
    """
    fc = qpcr.ddct(ct, sheet, contrasts, reference_genes=reference_genes, label=label)
    pairs, stats = qpcr.concordance(fc, results)
    return fc, pairs, stats


def workbook_sheets(*, rescue_summary: pd.DataFrame | None = None, rescue_genes: Mapping[str, pd.DataFrame] | None = None,
                    scores: pd.DataFrame | None = None, set_sizes: pd.DataFrame | None = None,
                    panels: Mapping[str, pd.DataFrame] | None = None, ora: Mapping[str, pd.DataFrame] | None = None,
                    gsea: Mapping[str, pd.DataFrame] | None = None,
                    qpcr: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None = None) -> dict[str, pd.DataFrame]:
    """The sheets of ``bulk/compound_tables.xlsx`` (:func:`degflow.report.write_workbook`), in order.

    Each group is left out when not run (``None``): the rescue summary and, per treatment, its genes that are
    disease or treatment DEGs (the full tables are the TSVs); pathway scores, set sizes and panel tables (``panel
    <name>`` without ``HALLMARK_``); ORA and GSEA per contrast; the qPCR fold changes, pairs and concordance.

    Parameters
    ----------
    rescue_summary, rescue_genes
        The rescue overview and treatment -> its genes table.
    scores, set_sizes, panels
        The pathway scores, set sizes and panel name -> panel table.
    ora, gsea
        Contrast -> its enrichment table.
    qpcr
        (fold changes, pairs, concordance statistics).
    """
    sheets = {}
    if rescue_summary is not None:
        sheets["rescue summary"] = rescue_summary
        for t, g in (rescue_genes or {}).items():
            sheets[f"rescue {t}"] = g[g["disease_deg"] | g["treatment_deg"]]
    if scores is not None:
        sheets["pathway scores"] = scores
        sheets["pathway gene sets"] = set_sizes
        for name, table in (panels or {}).items():
            sheets[f"panel {name.removeprefix('HALLMARK_')}"] = table
    for kind, tables in (("ora", ora), ("gsea", gsea)):
        for c, table in (tables or {}).items():
            sheets[f"{kind.upper()} {c}"] = table
    if qpcr is not None:
        sheets["qPCR fold changes"], sheets["qPCR vs RNA-seq"], sheets["qPCR concordance"] = qpcr
    return sheets
