"""Bulk RNA-seq: from the plan (:mod:`degflow.plan.bulk`) to the count dataset, DEG tables and the summary.

The DE fit itself lives in :mod:`degflow.de.fit`; count readers in :mod:`degflow.io.counts`.
Nothing here reads the Snakemake config: every function takes keyword arguments.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError
from degflow.io.annotation import match_annotation, read_annotation
from degflow.io.counttable import CountTable
from degflow.io.sheets import UNIT_COLUMN
from degflow.plan.bulk import BulkPlan, check_annotation_path
from degflow.plan.design import check_design

if TYPE_CHECKING:  # anndata is slow to import; the Snakefile imports this module at parse time
    import anndata as ad

log = logging.getLogger("degflow")


def build_dataset(
    table: CountTable,
    plan: BulkPlan,
    *,
    design: str,
    reference_levels: Mapping[str, str],
    annotation: pd.DataFrame | None = None,
    min_count: int = 0,
    min_samples: int = 0,
) -> ad.AnnData:
    """The analysis-ready dataset: samples x genes counts, design metadata, gene names.

    Parameters
    ----------
    table
        Counts as read by :func:`degflow.io.counts.read_counts`.
    plan
        From :func:`degflow.plan.bulk.plan_bulk`.
    design, reference_levels
        As in the config; factor levels are ordered reference-first in ``obs``.
    annotation
        Optional gene annotation (index gene_id, column ``gene_name`` [, ``gene_biotype``]), from
        :func:`read_gene_annotation`; fills names the counts lack. IDs are matched by
        :func:`degflow.io.annotation.match_annotation` (Ensembl versions ignored when that is safe).
    min_count, min_samples
        Keep genes with ``>= min_count`` reads in ``>= min_samples`` samples (0 keeps all).

    Returns
    -------
    AnnData
        ``X``: int64 counts (samples x genes); ``obs``: the design variables (factors categorical,
        reference level first) and every other sheet column; ``var["gene_name"]`` and, when the
        annotation has biotypes, ``var["gene_biotype"]``; ``layers["avg_tx_length"]`` (float64):
        tximport's average transcript lengths, only for salmon/kallisto/RSEM read with
        ``counts_from_abundance: no`` (see :func:`length_normalization_factors`);
        ``uns["degflow"]["filter"]``: the pre-filter settings and gene numbers;
        ``uns["degflow"]["format"]`` and ``uns["degflow"]["counts"]`` (format,
        counts_from_abundance, whether a length offset applies).
    """
    import anndata as ad

    counts = table.counts[plan.samples]
    _, _, meta = check_design(plan.sheet, design, reference_levels, plan.contrasts)
    obs = plan.sheet.copy()
    for col in meta.columns:
        obs[col] = meta[col]
    obs = obs.drop(columns=[c for c in ("counts_path", UNIT_COLUMN) if c in obs.columns])
    for col in obs.columns:
        if obs[col].dtype == object:
            obs[col] = obs[col].astype(str)
    names = pd.Series(np.nan, index=counts.index, dtype=object)
    biotypes: pd.Series | None = None
    if table.gene_names is not None:
        names = table.gene_names.reindex(counts.index).astype(object)
    if annotation is not None:
        ann = match_annotation(counts.index, annotation, label=str(annotation.attrs.get("path", "the annotation")))
        if "gene_name" in ann.columns:
            from_file = ann["gene_name"].reindex(counts.index).replace("", np.nan)
            if table.gene_names is not None:
                differ = int((from_file.notna() & names.notna() & (from_file != names)).sum())
                log.warning("gene names: the annotation file's names are used (%d differ from the counts' own "
                            "name column, which fills only the genes the annotation lacks)", differ)
            names = from_file.where(from_file.notna(), names)
        if "gene_biotype" in ann.columns and ann["gene_biotype"].notna().any():
            biotypes = ann["gene_biotype"].astype(object)
    lengths = table.lengths[plan.samples] if table.lengths is not None else None
    n_before = counts.shape[0]
    if min_count > 0 and min_samples > 0:
        keep = (counts >= min_count).sum(axis=1) >= min_samples
        counts = counts.loc[keep]
        names = names.loc[keep]
        biotypes = biotypes.loc[keep] if biotypes is not None else None
        lengths = lengths.loc[keep] if lengths is not None else None
    log.info("pre-filter (>= %d reads in >= %d samples): %d of %d genes kept", min_count, min_samples,
             counts.shape[0], n_before)
    if counts.shape[0] == 0:
        raise DegflowInputError(
            f"config key 'bulk.filter': no gene has >= {min_count} reads in >= {min_samples} samples; lower it"
        )
    var = pd.DataFrame({"gene_name": names.astype(str).where(names.notna(), "")}, index=counts.index.astype(str))
    if biotypes is not None:
        var["gene_biotype"] = biotypes.astype(str).where(biotypes.notna(), "").to_numpy()
    adata = ad.AnnData(X=counts.T.to_numpy(dtype=np.int64), obs=obs, var=var)
    adata.var.index.name = "gene_id"
    if lengths is not None:
        adata.layers["avg_tx_length"] = lengths.T.to_numpy(dtype=np.float64)
    adata.uns["degflow"] = {
        "filter": {"min_count": int(min_count), "min_samples": int(min_samples), "genes_in": int(n_before),
                   "genes_kept": int(counts.shape[0])},
        "format": table.format,
        "counts": {"format": table.format,
                   "counts_from_abundance": str(table.source.get("counts_from_abundance", "")),
                   "length_offset": lengths is not None},
    }
    return adata


def length_normalization_factors(counts: np.ndarray | pd.DataFrame, avg_tx_length: np.ndarray | pd.DataFrame
                                 ) -> np.ndarray:
    """DESeq2's normalisation factors from tximport's average transcript lengths.

    Port of ``estimateSizeFactors`` on a ``DESeqDataSetFromTximport`` object (DESeq2 1.38,
    ``countsFromAbundance = "no"``): ``nm = length / exp(rowMeans(log(length)))``, then
    ``estimateNormFactors``: median-of-ratios size factors of ``counts / nm``,
    ``nf = nm * sf`` per sample, and ``nf / exp(rowMeans(log(nf)))``.

    Parameters
    ----------
    counts, avg_tx_length
        Genes x samples (the same shape); lengths must be > 0, as DESeq2 requires.

    Returns
    -------
    numpy.ndarray
        Genes x samples normalisation factors (each gene's geometric mean is 1), for
        :func:`degflow.de.fit.fit_deseq` ``normalization_factors=``.
    """
    from degflow.de.driver import _r_size_factors  # noqa: PLC0415 - the same median-of-ratios as the fit

    Y = np.asarray(counts, dtype=float)
    L = np.asarray(avg_tx_length, dtype=float)
    if L.shape != Y.shape:
        raise DegflowInputError(f"average transcript lengths ({L.shape}) and counts ({Y.shape}) differ in shape")
    if not (np.isfinite(L).all() and (L > 0).all()):
        bad = np.argwhere(~(np.isfinite(L) & (L > 0)))[0]
        raise DegflowInputError(f"average transcript length {L[bad[0], bad[1]]} for gene row {bad[0] + 1}, sample "
                                f"column {bad[1] + 1} is not > 0; DESeq2 needs positive lengths (tximport's "
                                "txi$length); use counts_from_abundance: lengthScaledTPM for such data")
    nm = L / np.exp(np.log(L).mean(axis=1, keepdims=True))
    sf = _r_size_factors(Y / nm)
    nf = nm * sf[None, :]
    return nf / np.exp(np.log(nf).mean(axis=1, keepdims=True))


def normalized_counts(adata: ad.AnnData, size_factors: np.ndarray) -> pd.DataFrame:
    """Counts divided by size factors, genes x samples (DESeq2 ``counts(dds, normalized=TRUE)``)."""
    X = np.asarray(adata.X, dtype=float) / np.asarray(size_factors, dtype=float)[:, None]
    df = pd.DataFrame(X.T, index=adata.var_names, columns=adata.obs_names)
    df.index.name = "gene_id"
    return df


def read_gene_annotation(path: str | Path | None) -> pd.DataFrame | None:
    """Optional gene annotation (gene_id -> gene_name [, gene_biotype]), or None; ``attrs["path"]`` names it."""
    if not path:
        return None
    check_annotation_path(path)
    ann = read_annotation(path)
    ann.attrs["path"] = str(path)
    return ann
