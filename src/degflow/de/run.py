"""The DESeq2 run as the workflow's ``de`` config block asks for it, shared by bulk and pseudobulk.

``bulk.de`` and ``singlecell.pseudobulk.de`` are the same block (the schemas fill every default): the
fit (:func:`fit_from_config`) and each contrast's results and DEG tables (:func:`contrast_tables`) read
its keys here, once, for both stages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from degflow.de.fit import fit_deseq
from degflow.de.results import contrast_results
from degflow.de.tables import annotate_results, deg_table

__all__ = ["contrast_tables", "fit_from_config"]


def fit_from_config(
    counts: pd.DataFrame,
    samples: pd.DataFrame,
    *,
    design: str,
    reference_levels: Mapping[str, str] | None,
    de: Mapping[str, Any],
    size_factors: np.ndarray | pd.Series | None = None,
    normalization_factors: np.ndarray | pd.DataFrame | None = None,
    n_threads: int = 1,
) -> Any:
    """Fit the DESeq2 model of ``design`` with the options of a ``de`` config block.

    Parameters
    ----------
    counts
        Genes x samples raw counts.
    samples
        Sample metadata (rows = the columns of ``counts``).
    design
        The design formula, e.g. ``~ cell + dex``.
    reference_levels
        Reference level per factor of the design.
    de
        The validated ``de`` block (defaults filled in by the schema): ``flavor``, ``engine``, ``refit_cooks``,
        ``seed`` are used here.
    size_factors, normalization_factors
        As :func:`degflow.de.fit.fit_deseq` takes them (each stage computes its own; ``None``: the fit's
        median-of-ratios).
    n_threads
        Threads for the per-gene work (the rule's threads).

    Returns
    -------
    The fitted ``DeseqDataSet`` (:func:`degflow.de.fit.fit_deseq`).
    """
    return fit_deseq(counts, samples, design, reference_levels, flavor=de["flavor"], engine=de["engine"],
                     size_factors=size_factors, normalization_factors=normalization_factors,
                     refit_cooks=de["refit_cooks"], n_cpus=n_threads, seed=de["seed"])


def contrast_tables(
    dds: Any,
    contrast: Sequence[str] | Mapping[str, Any],
    *,
    de: Mapping[str, Any],
    thresholds: Mapping[str, float],
    gene_names: pd.Series | None,
    gene_biotypes: pd.Series | None = None,
    n_threads: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One contrast's Wald test: the results table of every tested gene and its DEGs.

    Parameters
    ----------
    dds
        The model of :func:`fit_from_config`.
    contrast
        ``[factor, level, reference]``, or a mapping (``name`` / ``vector`` / ``list``) over resultsNames.
    de
        The validated ``de`` block: ``alpha``, ``cooks_filter``, ``independent_filter``, ``lfc_null``,
        ``alt_hypothesis``, ``shrink`` are used here.
    thresholds
        ``lfc`` and ``padj`` of a DEG (the ``regulation`` column).
    gene_names, gene_biotypes
        Gene ID -> name (and biotype), as :func:`degflow.de.tables.annotate_results` takes them.
    n_threads
        Threads for the per-gene work (the rule's threads).

    Returns
    -------
    (results, degs): :func:`degflow.de.tables.annotate_results` and :func:`degflow.de.tables.deg_table`.
    """
    spec = dict(contrast) if isinstance(contrast, Mapping) else list(contrast)
    res = contrast_results(dds, spec, alpha=de["alpha"], cooks_filter=de["cooks_filter"],
                           independent_filter=de["independent_filter"], lfc_null=de["lfc_null"],
                           alt_hypothesis=de["alt_hypothesis"], shrink=de["shrink"], n_cpus=n_threads)
    table = annotate_results(res, gene_names, lfc=thresholds["lfc"], padj=thresholds["padj"],
                             gene_biotypes=gene_biotypes)
    return table, deg_table(table)
