"""Single-cell QC: per-cell metrics, thresholds (fixed, MAD, per sample) and doublets.

=====================  ==============================================================================
:func:`qc_metrics`     mitochondrial / ribosomal / haemoglobin shares (human and mouse symbols)
:func:`qc_filter`      fixed and/or MAD thresholds, per-sample overrides → kept cells + removal table
:func:`doublets`       scrublet per sample (scanpy's implementation), scores in ``obs``, optional removal
=====================  ==============================================================================

The sample sheet and the count files are read by :mod:`degflow.io.singlecell` (:func:`~degflow.io.singlecell.read_samples`,
per-sample overrides :func:`~degflow.io.singlecell.qc_overrides`). Every step records its parameters in
``adata.uns["degflow"][<step>]``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from degflow.errors import DegflowInputError
from degflow.singlecell.common import raw_counts, record, thread_cap, timed

__all__ = ["DEFAULT_MAD_METRICS", "QC_PATTERNS", "doublets", "qc_filter", "qc_metrics"]

log = logging.getLogger("degflow")

#: Gene-symbol patterns (case-insensitive) of the QC gene sets, human and mouse.
#: ``mt``: mitochondrially encoded genes (``MT-ND1``, ``mt-Nd1``); ``ribo``: cytosolic ribosomal
#: proteins (``RPS*``/``RPL*`` with their paralogs, ``RPLP0-2``, ``RPSA``; not ``RPS6KA1`` kinases,
#: not mitochondrial ``MRPL*``); ``hb``: haemoglobin chains (``HBA1``, ``HBB``…; mouse ``Hba-a1``,
#: ``Hbb-bs``…; not ``HBP1``/``HBEGF``).
QC_PATTERNS: dict[str, str] = {
    "mt": r"^MT-",
    "ribo": r"^(?:RP[SL]\d+[AXYL]?L?\d?|RPLP[0-2]|RPSA)$",
    "hb": r"^(?:HB(?:A1|A2|B|D|E1|G1|G2|M|Q1|Z)|Hb[ab]-[a-z0-9]+|Hbq1[ab]?)$",
}
#: Metrics a bare number for ``nmads`` applies to, and which side is cut ("both" or "upper").
DEFAULT_MAD_METRICS: dict[str, str] = {
    "log1p_total_counts": "both",
    "log1p_n_genes_by_counts": "both",
    "pct_counts_mt": "upper",
}
_QC_KEYS = ("min_genes", "max_genes", "max_pct_mt", "nmads")


def _symbols(adata: ad.AnnData, gene_symbols: str | None) -> pd.Index:
    if gene_symbols is None:
        return pd.Index(adata.var_names.astype(str))
    if gene_symbols not in adata.var.columns:
        raise DegflowInputError(f"var[{gene_symbols!r}] not found (var columns: {', '.join(adata.var.columns)}); "
                                "name the column holding gene symbols")
    return pd.Index(adata.var[gene_symbols].astype(str))


def qc_metrics(adata: ad.AnnData, *, gene_symbols: str | None = None, copy: bool = False) -> ad.AnnData | None:
    """Per-cell QC metrics on the raw counts, with mitochondrial, ribosomal and haemoglobin shares.

    Gene sets are found by symbol with :data:`QC_PATTERNS` (human and mouse). Counts are taken
    from ``layers["counts"]`` if present, else ``X``.

    Parameters
    ----------
    gene_symbols
        ``var`` column holding symbols, if ``var_names`` are IDs (default: ``var_names``).

    Returns
    -------
    None (or a copy with ``copy=True``); writes

    ``var["mt"]``, ``var["ribo"]``, ``var["hb"]`` : bool
        membership of the QC gene sets;
    ``var["n_cells_by_counts"]``, ``var["mean_counts"]``, ``var["pct_dropout_by_counts"]``, ``var["total_counts"]``
        per-gene metrics of :func:`scanpy.pp.calculate_qc_metrics`;
    ``obs["n_genes_by_counts"]`` : int, ``obs["total_counts"]`` : float, and their ``log1p_*``;
    ``obs["total_counts_<set>"]``, ``obs["pct_counts_<set>"]`` (and ``log1p_total_counts_<set>``)
        for ``mt``, ``ribo`` and ``hb``, percentages in 0–100;
    ``uns["degflow"]["qc_metrics"]``
        the patterns and the number of genes in each set.
    """
    import scanpy as sc

    if copy:
        adata = adata.copy()
    sym = _symbols(adata, gene_symbols)
    sizes = {}
    for key, pattern in QC_PATTERNS.items():
        adata.var[key] = np.asarray(sym.str.contains(pattern, flags=re.IGNORECASE, regex=True), dtype=bool)
        sizes[key] = int(adata.var[key].sum())
    if sizes["mt"] == 0:
        log.warning("no mitochondrial genes (symbols starting with MT-/mt-) among the %d genes: pct_counts_mt is 0 "
                    "for every cell and max_pct_mt removes nothing", adata.n_vars)
    layer = "counts" if "counts" in adata.layers else None
    sc.pp.calculate_qc_metrics(adata, qc_vars=list(QC_PATTERNS), percent_top=None, log1p=True, inplace=True,
                               layer=layer)
    record(adata, "qc_metrics", {"patterns": QC_PATTERNS, "n_genes": sizes, "layer": layer or "X"})
    return adata if copy else None


def _mad_cut(x: np.ndarray, nmads: float, side: str) -> tuple[float, float]:
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    low = med - nmads * mad if side == "both" else -np.inf
    return low, med + nmads * mad


def _nmads_spec(nmads: float | Mapping[str, float] | None, adata: ad.AnnData, where: str) -> dict[str, float]:
    if nmads is None:
        return {}
    if isinstance(nmads, Mapping):
        spec = {str(k): float(v) for k, v in nmads.items() if v is not None}
    else:
        spec = {m: float(nmads) for m in DEFAULT_MAD_METRICS}
    for metric, n in spec.items():
        if metric not in adata.obs.columns:
            raise DegflowInputError(f"{where}: nmads names metric {metric!r}, which is not a QC metric (use e.g. "
                                    f"{', '.join(DEFAULT_MAD_METRICS)})")
        if not n > 0:
            raise DegflowInputError(f"{where}: nmads for {metric} must be > 0, got {n}")
    return spec


def qc_filter(
    adata: ad.AnnData,
    *,
    min_genes: int | None = 200,
    max_genes: int | None = 2500,
    max_pct_mt: float | None = 5.0,
    min_cells: int | None = 3,
    nmads: float | Mapping[str, float] | None = None,
    overrides: Mapping[str, Mapping[str, float]] | None = None,
    sample_key: str = "sample",
    gene_symbols: str | None = None,
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Remove low-quality cells and rarely detected genes, per sample, and say how many each rule removed.

    Order (that of the scanpy and Seurat PBMC 3k tutorials): genes detected in fewer than
    ``min_cells`` cells are dropped first (over all cells), then :func:`qc_metrics` is computed,
    then each cell is checked against every threshold of its sample. A cell is kept when
    ``min_genes <= n_genes_by_counts <= max_genes`` and ``pct_counts_mt <= max_pct_mt``, and, for
    each metric of ``nmads``, it lies within ``nmads`` median absolute deviations (unscaled MAD)
    of its sample's median (``pct_counts_*`` metrics are cut above only). ``None`` switches a rule off.

    Parameters
    ----------
    nmads
        A number (applies to :data:`DEFAULT_MAD_METRICS`) or ``{metric: n}``.
    overrides
        ``{sample: {"min_genes": …, "max_genes": …, "max_pct_mt": …, "nmads": …}}`` replacing the
        thresholds above for one sample (:func:`degflow.io.singlecell.qc_overrides` reads them from the
        sheet).
    sample_key
        ``obs`` column naming the sample (one group if absent).

    Returns
    -------
    ``(filtered, removed)``: a new AnnData (the input is not modified) with the :func:`qc_metrics`
    fields, ``uns["degflow"]["qc_filter"]`` (thresholds, overrides, ``n_genes_removed``, and the
    removal table as ``removed``); and the removal table, one row per sample and rule:

    ``sample``, ``rule`` (``min_genes``, ``max_genes``, ``max_pct_mt``, ``mad_low:<metric>``,
    ``mad_high:<metric>``, and ``any`` for the union), ``metric``, ``threshold`` (for MAD rules
    the computed cut-off), ``n_removed`` (a cell can fail several rules), ``n_before``, ``n_after``.

    Raises
    ------
    DegflowInputError
        A sample would lose every cell (names the sample, each rule's threshold and count, and
        where to relax it); an unknown override key or metric.
    """
    start = time.perf_counter()
    for name, v in (("min_genes", min_genes), ("max_genes", max_genes), ("max_pct_mt", max_pct_mt),
                    ("min_cells", min_cells)):
        if v is not None and (not np.isfinite(v) or v < 0):
            raise DegflowInputError(f"singlecell.qc.{name} must be a number >= 0 or null, got {v!r}")
    overrides = {str(k): dict(v) for k, v in (overrides or {}).items()}
    for sample, ov in overrides.items():
        unknown = set(ov) - set(_QC_KEYS)
        if unknown:
            raise DegflowInputError(f"QC override for sample {sample!r}: unknown key(s) {sorted(unknown)}; "
                                    f"allowed: {', '.join(_QC_KEYS)}")
    adata = adata.copy()
    if sample_key in adata.obs.columns:
        samples = adata.obs[sample_key].astype(str).to_numpy()
        order = list(dict.fromkeys(adata.obs[sample_key].cat.categories if hasattr(adata.obs[sample_key], "cat")
                                   else samples))
        order = [s for s in map(str, order) if s in set(samples)]
    else:
        samples = np.full(adata.n_obs, "all")
        order = ["all"]
    unknown_samples = set(overrides) - set(order)
    if unknown_samples:
        raise DegflowInputError(f"QC overrides name sample(s) {sorted(unknown_samples)} that are not in the data "
                                f"(samples: {', '.join(order)})")

    n_genes_removed = 0
    if min_cells:
        X = raw_counts(adata)
        n_cells = np.diff(sp.csc_matrix(X).indptr) if sp.issparse(X) else (np.asarray(X) > 0).sum(0)
        keep_genes = n_cells >= min_cells
        n_genes_removed = int((~keep_genes).sum())
        if not keep_genes.any():
            raise DegflowInputError(f"singlecell.qc.min_cells={min_cells} removes every gene (no gene is detected "
                                    f"in {min_cells} cells); lower it")
        adata = adata[:, keep_genes].copy()
        log.info("qc: %d genes detected in fewer than %d cells removed, %d kept", n_genes_removed, min_cells,
                 adata.n_vars)
    qc_metrics(adata, gene_symbols=gene_symbols)
    obs = adata.obs

    keep = np.ones(adata.n_obs, dtype=bool)
    rows = []
    for sample in order:
        in_s = samples == sample
        ov = overrides.get(sample, {})
        th = {"min_genes": ov.get("min_genes", min_genes), "max_genes": ov.get("max_genes", max_genes),
              "max_pct_mt": ov.get("max_pct_mt", max_pct_mt)}
        where = f"QC of sample {sample!r}"
        spec = _nmads_spec(ov.get("nmads", nmads), adata, where)
        rules: list[tuple[str, str, float, np.ndarray]] = []
        ng = obs["n_genes_by_counts"].to_numpy()
        if th["min_genes"] is not None:
            rules.append(("min_genes", "n_genes_by_counts", float(th["min_genes"]), ng < th["min_genes"]))
        if th["max_genes"] is not None:
            rules.append(("max_genes", "n_genes_by_counts", float(th["max_genes"]), ng > th["max_genes"]))
        if th["max_pct_mt"] is not None:
            pct = obs["pct_counts_mt"].to_numpy()
            rules.append(("max_pct_mt", "pct_counts_mt", float(th["max_pct_mt"]), pct > th["max_pct_mt"]))
        for metric, n in spec.items():
            side = "upper" if metric.startswith("pct_counts") else DEFAULT_MAD_METRICS.get(metric, "both")
            x = obs[metric].to_numpy(dtype=float)
            low, high = _mad_cut(x[in_s], n, side)
            if side == "both":
                rules.append((f"mad_low:{metric}", metric, low, x < low))
            rules.append((f"mad_high:{metric}", metric, high, x > high))
        fail = np.zeros(adata.n_obs, dtype=bool)
        counts = []
        for rule, metric, threshold, bad in rules:
            bad_s = bad & in_s
            fail |= bad_s
            counts.append((rule, metric, threshold, int(bad_s.sum())))
        n_before = int(in_s.sum())
        n_after = n_before - int(fail.sum())
        if n_after == 0:
            detail = "; ".join(f"{r}={t:g} removes {c}" for r, _, t, c in sorted(counts, key=lambda z: -z[3]) if c)
            worst = max(counts, key=lambda z: z[3])
            med = float(np.median(obs.loc[in_s, worst[1]]))
            raise DegflowInputError(
                f"sample {sample!r} loses all {n_before} cells to QC ({detail}; median {worst[1]} of this sample "
                f"is {med:.4g}); relax {worst[0].split(':')[0]} for this sample in the sample sheet or in "
                "singlecell.qc of the config, or check that the file is this sample's filtered matrix"
            )
        keep &= ~fail
        for rule, metric, threshold, c in counts:
            rows.append({"sample": sample, "rule": rule, "metric": metric, "threshold": threshold, "n_removed": c,
                         "n_before": n_before, "n_after": n_after})
        rows.append({"sample": sample, "rule": "any", "metric": "", "threshold": np.nan,
                     "n_removed": n_before - n_after, "n_before": n_before, "n_after": n_after})
        log.info("qc: sample %s keeps %d of %d cells", sample, n_after, n_before)
    removed = pd.DataFrame(rows, columns=["sample", "rule", "metric", "threshold", "n_removed", "n_before",
                                          "n_after"])
    out = adata[keep].copy()
    record(out, "qc_filter", {
        "min_genes": min_genes, "max_genes": max_genes, "max_pct_mt": max_pct_mt, "min_cells": min_cells,
        "nmads": dict(nmads) if isinstance(nmads, Mapping) else nmads, "overrides": overrides,
        "n_genes_removed": n_genes_removed, "n_cells_before": int(adata.n_obs), "n_cells_after": int(out.n_obs),
        "removed": removed.astype({"metric": str}),
    })
    log.info("qc: %d of %d cells kept, %d genes (%.2fs)", out.n_obs, adata.n_obs, out.n_vars,
             time.perf_counter() - start)
    return out, removed


# ----------------------------------------------------------------------------------------------
# doublets
# ----------------------------------------------------------------------------------------------


def doublets(
    adata: ad.AnnData,
    *,
    batch_key: str | None = "sample",
    remove: bool = True,
    seed: int = 0,
    expected_doublet_rate: float = 0.05,
    threshold: float | None = None,
    n_prin_comps: int = 30,
    n_threads: int | None = None,
) -> tuple[ad.AnnData, pd.DataFrame]:
    """Score doublets with scrublet (scanpy's own implementation), one run per sample.

    Scrublet simulates doublets from pairs of observed cells of the same sample and scores each
    cell by the share of simulated doublets among its neighbours. It runs on the raw counts
    (``layers["counts"]`` or ``X``) of each ``batch_key`` group separately, with seed ``seed``.

    Parameters
    ----------
    threshold
        Doublet-score cut-off; ``None`` lets scrublet place it at the minimum between the two
        modes of the simulated scores (fails loudly when it cannot: set a threshold then).
    remove
        Drop the predicted doublets (otherwise only annotate).

    Returns
    -------
    ``(adata_out, table)``: ``adata_out`` is a new AnnData (the doublets removed when
    ``remove``) with

    ``obs["doublet_score"]`` : float
        scrublet score of each cell;
    ``obs["predicted_doublet"]`` : bool
        score above the sample's threshold;
    ``uns["degflow"]["doublets"]``
        parameters and the per-sample table;

    and the table: ``sample``, ``n_cells``, ``n_doublets``, ``threshold``, ``removed`` (cells
    removed: ``n_doublets`` or 0), ``n_after``.

    Raises
    ------
    DegflowInputError
        A sample too small for scrublet (fewer than ``n_prin_comps + 1`` cells); scrublet finding
        no threshold while ``remove`` is set and ``threshold`` is None.
    """
    import scanpy as sc

    if batch_key is not None and batch_key not in adata.obs.columns:
        raise DegflowInputError(f"doublets: batch_key {batch_key!r} is not an obs column "
                                f"({', '.join(adata.obs.columns)})")
    groups = (adata.obs[batch_key].astype(str).to_numpy() if batch_key is not None
              else np.full(adata.n_obs, "all"))
    order = list(dict.fromkeys(groups))
    score = np.full(adata.n_obs, np.nan)
    pred = np.zeros(adata.n_obs, dtype=bool)
    rows = []
    counts = raw_counts(adata)
    with timed("doublets (scrublet)"), thread_cap(n_threads):
        for g in order:
            idx = np.flatnonzero(groups == g)
            if len(idx) <= n_prin_comps:
                raise DegflowInputError(f"doublets: sample {g!r} has {len(idx)} cells, too few for scrublet (needs "
                                        f"more than {n_prin_comps}); set singlecell.doublets.method to none")
            sub = ad.AnnData(counts[idx].copy(), obs=pd.DataFrame(index=adata.obs_names[idx]),
                             var=pd.DataFrame(index=adata.var_names))
            # exact kNN (sklearn): scanpy switches to pynndescent above 8,192 observed + simulated cells (samples
            # of > ~2,700 cells), which fails with scipy 1.17 ('csr_array' has no 'getnnz', measured on Kang
            # s1015_ctrl) and would make the scores depend on the thread count
            sc.pp.scrublet(sub, random_state=seed, expected_doublet_rate=expected_doublet_rate,
                           threshold=threshold, n_prin_comps=n_prin_comps, use_approx_neighbors=False,
                           verbose=False)
            sub_obs = sub.obs.reindex(adata.obs_names[idx])
            score[idx] = sub_obs["doublet_score"].to_numpy(dtype=float)
            called = sub_obs["predicted_doublet"]
            th = sub.uns["scrublet"].get("threshold")
            if th is None or called.isna().any():
                if remove:
                    raise DegflowInputError(
                        f"doublets: scrublet could not place a doublet-score threshold for sample {g!r} (its scores "
                        "are not bimodal); set singlecell.doublets.threshold (e.g. 0.25) or remove: false")
                log.warning("doublets: no automatic threshold for sample %s; no cell is called a doublet", g)
                called = pd.Series(False, index=called.index)
                th = np.nan
            pred[idx] = called.to_numpy(dtype=bool)
            n_d = int(called.sum())
            rows.append({"sample": g, "n_cells": len(idx), "n_doublets": n_d, "threshold": float(th),
                         "removed": n_d if remove else 0, "n_after": len(idx) - (n_d if remove else 0)})
            if remove and n_d == len(idx):
                raise DegflowInputError(f"doublets: scrublet calls every cell of sample {g!r} a doublet; set "
                                        "singlecell.doublets.remove: false and inspect the doublet scores")
            log.info("doublets: sample %s: %d of %d cells predicted doublets (threshold %.3f)", g, n_d, len(idx),
                     float(th))
    table = pd.DataFrame(rows, columns=["sample", "n_cells", "n_doublets", "threshold", "removed", "n_after"])
    out = adata.copy()
    out.obs["doublet_score"] = score
    out.obs["predicted_doublet"] = pred
    if remove:
        out = out[~pred].copy()
    record(out, "doublets", {"method": "scrublet", "batch_key": batch_key, "remove": remove, "seed": seed,
                             "expected_doublet_rate": expected_doublet_rate, "threshold": threshold,
                             "n_prin_comps": n_prin_comps, "table": table})
    return out, table
