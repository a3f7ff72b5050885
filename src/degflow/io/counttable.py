"""What every bulk count reader returns: :class:`CountTable`, and :func:`collapse_replicates` on it.

A :class:`CountTable` holds genes x samples ``int64`` counts, gene names, per-sample quantifier QC,
provenance and (salmon/kallisto/RSEM) average transcript lengths. :func:`degflow.io.counts.read_counts`
makes one from any supported format; :func:`collapse_replicates` sums technical replicates (several count
columns per sample) as DESeq2's ``collapseReplicates``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError

__all__ = ["CountTable", "collapse_replicates"]

logger = logging.getLogger("degflow")


@dataclass
class CountTable:
    """Gene-level counts read from one quantifier's output.

    Attributes
    ----------
    counts
        Genes x samples, ``int64``; index named ``"gene_id"``, columns are sample names
        (mapping keys when a mapping was given, else derived from file or BAM names).
    gene_names
        ``gene_id -> gene_name`` (index aligned with ``counts``) when the source carries names
        (matrix name column, HTSeq ``--additional-attr``, tx2gene/GTF ``gene_name``), else ``None``.
        Names are not unique; always key on ``gene_id``.
    qc
        Samples x QC fields, or ``None`` (plain matrix). Every format writes ``assigned`` (reads
        counted on genes) and, where the tool reports the total, ``assignment_rate``; the other
        columns keep the tool's own names (``Unassigned_NoFeatures``, ``__no_feature``,
        ``N_noFeature``, ``num_mapped`` ...).
    format
        The format actually read (after auto-detection), one of :data:`degflow.io.counts.FORMATS`.
    source
        Provenance: ``files`` (sample -> path), and per format e.g. ``bam_names``
        (featureCounts sample -> BAM header), ``strandedness`` (STAR: per-sample choice and
        evidence), ``tx2gene``/``ids_version_stripped``/``unmapped_transcripts`` (salmon, kallisto,
        rsem), ``rounding``.
    lengths
        salmon/kallisto/rsem only: genes x samples abundance-weighted average transcript length
        (tximport's ``txi$length``), which DESeq2's ``DESeqDataSetFromTximport`` uses as an offset;
        ``None`` for count-based formats.
    """

    counts: pd.DataFrame
    gene_names: pd.Series | None
    qc: pd.DataFrame | None
    format: str
    source: dict[str, Any] = field(default_factory=dict)
    lengths: pd.DataFrame | None = None


def collapse_replicates(table: CountTable, units: pd.DataFrame) -> CountTable:
    """Sum technical replicates (several count columns per sample), as DESeq2's ``collapseReplicates``.

    Parameters
    ----------
    table
        Counts whose columns are replicate units.
    units
        Index: the column names of ``table.counts``; columns ``sample`` (the sample each unit
        belongs to) and ``unit`` (its name in the sheet).

    Returns
    -------
    CountTable
        Counts summed per sample (samples in order of first appearance); ``qc`` count columns
        summed and rates recomputed from the sums; ``lengths`` (salmon/kallisto/rsem) averaged
        per gene weighted by each unit's counts (plain mean where the gene has no reads);
        ``source["units"]`` maps each unit column to its sample and unit.

    Raises
    ------
    DegflowInputError
        A count column with no unit row, or a unit row with no count column.
    """
    cols = [str(c) for c in table.counts.columns]
    missing = [k for k in units.index if k not in cols]
    if missing:
        row = units.loc[missing[0]]
        raise DegflowInputError(f"sample {row['sample']!r}, unit {row['unit']!r}: no such column in the counts "
                                f"(columns: {', '.join(cols[:6])}{'...' if len(cols) > 6 else ''}); the unit must "
                                "name a column of the counts file")
    extra = [c for c in cols if c not in units.index]
    if extra:
        raise DegflowInputError(f"count column {extra[0]!r} belongs to no unit of the sample sheet"
                                f"{f' ({len(extra)} such columns)' if len(extra) > 1 else ''}; add a row for it")
    sample_of = units["sample"].astype(str)
    order = list(dict.fromkeys(sample_of[cols]))
    by = sample_of.reindex(cols).to_numpy()
    counts = table.counts.T.groupby(by, sort=False).sum().T[order].astype(np.int64)
    counts.index.name = "gene_id"
    lengths = None
    if table.lengths is not None:
        w = table.counts.to_numpy(dtype=float)
        lens = table.lengths[cols].to_numpy(dtype=float)
        lengths = pd.DataFrame(index=table.counts.index, columns=order, dtype=float)
        for s in order:
            j = np.flatnonzero(by == s)
            wsum = w[:, j].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                weighted = (w[:, j] * lens[:, j]).sum(axis=1) / wsum
            lengths[s] = np.where(wsum > 0, weighted, lens[:, j].mean(axis=1))
    qc = None
    if table.qc is not None:
        raw = table.qc.loc[cols]
        numeric = raw.apply(pd.to_numeric, errors="coerce")
        rates = [c for c in numeric.columns if c in ("assignment_rate", "percent_mapped", "tx2gene_unmapped_fraction")]
        summable = [c for c in numeric.columns if c not in rates and numeric[c].notna().all()]
        qc = numeric[summable].groupby(by, sort=False).sum().loc[order]
        counted = [c for c in summable if not c.startswith(("num_", "tx2gene_"))]
        if "num_processed" in qc.columns and "num_mapped" in qc.columns:
            qc["assignment_rate"] = qc["num_mapped"] / qc["num_processed"]
            if "percent_mapped" in raw.columns:
                qc["percent_mapped"] = 100 * qc["assignment_rate"]
        elif "assignment_rate" in raw.columns and "assigned" in qc.columns:
            qc["assignment_rate"] = qc["assigned"] / qc[counted].sum(axis=1)
        if "tx2gene_unmapped_reads" in qc.columns:
            qc["tx2gene_unmapped_fraction"] = qc["tx2gene_unmapped_reads"] / (
                qc["tx2gene_unmapped_reads"] + qc["assigned"])
        qc["n_units"] = pd.Series(by).value_counts().reindex(order).to_numpy()
        qc.index.name = "sample"
    source = dict(table.source)
    source["units"] = {k: {"sample": str(units.at[k, "sample"]), "unit": str(units.at[k, "unit"])} for k in cols}
    logger.info("summed %d technical replicate units into %d samples", len(cols), len(order))
    return CountTable(counts=counts, gene_names=table.gene_names, qc=qc, format=table.format, source=source,
                      lengths=lengths)
