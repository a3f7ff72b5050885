"""Single-cell RNA-seq: QC, doublets, clustering, UMAP, markers and cell types (the scanpy recipe, reproducibly).

The steps, in workflow order, each one function a thin Snakemake script calls:

=====================  ==============================================================================
:func:`read_samples`   sample sheet → one AnnData of raw counts (:mod:`degflow.io.singlecell`)
:func:`qc_metrics`     mitochondrial / ribosomal / haemoglobin shares (human and mouse symbols)
:func:`qc_filter`      fixed and/or MAD thresholds, per-sample overrides → kept cells + removal table
:func:`doublets`       scrublet per sample (scanpy's implementation), scores in ``obs``, optional removal
:func:`process`        counts → ``layers["counts"]``; normalise + log1p; HVG; PCA; neighbours;
                       Leiden at several resolutions; UMAP (each also callable alone:
                       :func:`normalize`, :func:`highly_variable`, :func:`pca`, :func:`neighbors`,
                       :func:`leiden`, :func:`umap`; :func:`harmony` between PCA and neighbours)
:func:`markers`        Wilcoxon ``rank_genes_groups`` per cluster → a long DataFrame
:func:`annotate`       cluster → cell type from a marker-gene YAML (:func:`load_markers`), by score
:func:`cluster_sizes`  cells per cluster (and per sample) for every clustering
=====================  ==============================================================================

Plot functions (``*_figure``) return a :class:`matplotlib.figure.Figure`; the caller saves and
closes it.

Every step records its parameters in ``adata.uns["degflow"][<step>]``. Fixed seeds make a run
repeatable on one machine: the same input gives the same ``obs`` and cluster labels with 1 or 2
threads (tested on PBMC 3k). UMAP coordinates and Leiden labels may still differ between CPU
models or library builds (floating-point differences in the kNN graph; a known scanpy/umap
limitation), so compare clusterings across machines with the adjusted Rand index, not equality.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from degflow.errors import DegflowInputError
from degflow.io.singlecell import (
    FORMATS,
    QC_OVERRIDE_COLUMNS,
    qc_overrides,
    read_sample,
    read_sample_sheet,
    read_samples,
    sniff_sc_format,
    validate_sample_sheet,
)
from degflow.runtime import threads as _thread_limit

__all__ = [
    "FORMATS",
    "QC_OVERRIDE_COLUMNS",
    "QC_PATTERNS",
    "add_reference_labels",
    "annotate",
    "cluster_sizes",
    "doublets",
    "genes_of_interest_figures",
    "harmony",
    "highly_variable",
    "leiden",
    "leiden_key",
    "load_markers",
    "marker_dotplot_figure",
    "markers",
    "match_genes",
    "neighbors",
    "normalize",
    "pca",
    "process",
    "qc_filter",
    "qc_metrics",
    "qc_overrides",
    "qc_scatter_figure",
    "qc_violin_figure",
    "read_genes_of_interest",
    "read_sample",
    "read_sample_sheet",
    "read_samples",
    "sniff_sc_format",
    "transfer_labels",
    "umap",
    "umap_figure",
    "validate_sample_sheet",
]

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
HVG_FLAVORS = ("seurat_v3", "seurat", "cell_ranger", "pearson_residuals")


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """A value h5py can store: drop None, tuples → lists, numpy scalars → Python."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        items = [_clean(v) for v in value if v is not None]
        return np.asarray(items) if items and all(isinstance(v, (int, float, str, bool)) for v in items) else items
    if isinstance(value, np.generic):
        return value.item()
    return value


def _record(adata: ad.AnnData, step: str, params: Mapping[str, Any]) -> None:
    """Store a step's parameters in ``adata.uns["degflow"][step]`` (None values left out)."""
    uns = adata.uns.setdefault("degflow", {})
    uns[step] = _clean(dict(params))


@contextmanager
def _timed(what: str) -> Iterator[None]:
    start = time.perf_counter()
    log.info("%s ...", what)
    yield
    log.info("%s finished in %.2fs", what, time.perf_counter() - start)


@contextmanager
def _runtime(n_threads: int | None) -> Iterator[None]:
    """Cap numba/BLAS threads (and scanpy's ``n_jobs``) for the duration of a step."""
    import scanpy as sc

    before = sc.settings.n_jobs
    with _thread_limit(n_threads) as n:
        sc.settings.n_jobs = n
        try:
            yield
        finally:
            sc.settings.n_jobs = before


def _counts(adata: ad.AnnData) -> sp.csr_matrix:
    """Raw counts: ``layers["counts"]`` if present, else ``X``."""
    return adata.layers["counts"] if "counts" in adata.layers else adata.X


def leiden_key(resolution: float) -> str:
    """The ``obs`` column of a Leiden clustering: ``leiden_<resolution>`` (``leiden_1.0``, ``leiden_0.5``)."""
    return f"leiden_{float(resolution)}"


def _symbols(adata: ad.AnnData, gene_symbols: str | None) -> pd.Index:
    if gene_symbols is None:
        return pd.Index(adata.var_names.astype(str))
    if gene_symbols not in adata.var.columns:
        raise DegflowInputError(f"var[{gene_symbols!r}] not found (var columns: {', '.join(adata.var.columns)}); "
                                "name the column holding gene symbols")
    return pd.Index(adata.var[gene_symbols].astype(str))


# ----------------------------------------------------------------------------------------------
# QC
# ----------------------------------------------------------------------------------------------


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
    _record(adata, "qc_metrics", {"patterns": QC_PATTERNS, "n_genes": sizes, "layer": layer or "X"})
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
        X = _counts(adata)
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
    _record(out, "qc_filter", {
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
    counts = _counts(adata)
    with _timed("doublets (scrublet)"), _runtime(n_threads):
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
    _record(out, "doublets", {"method": "scrublet", "batch_key": batch_key, "remove": remove, "seed": seed,
                              "expected_doublet_rate": expected_doublet_rate, "threshold": threshold,
                              "n_prin_comps": n_prin_comps, "table": table})
    return out, table


# ----------------------------------------------------------------------------------------------
# processing steps
# ----------------------------------------------------------------------------------------------


def normalize(adata: ad.AnnData, *, target_sum: float | None = 1e4, n_threads: int | None = None) -> None:
    """Keep raw counts in ``layers["counts"]``; make ``X`` = log1p(counts scaled to ``target_sum`` per cell).

    ``target_sum=None`` scales to the median total count (scanpy's default). Computed by the numba
    kernel :func:`degflow.kernels.sparse.normalize_log1p` (equal to scanpy's ``normalize_total`` +
    ``log1p`` to float rounding, one parallel pass, independent of ``n_threads``).

    Writes ``layers["counts"]`` (the raw counts, if not already there), ``X`` (float32 CSR,
    natural log), ``uns["log1p"]`` (``{"base": None}``, as scanpy), ``uns["degflow"]["normalize"]``.
    """
    from degflow.kernels.sparse import normalize_log1p

    if "counts" not in adata.layers:
        adata.layers["counts"] = adata.X.copy()
    counts = adata.layers["counts"]
    if not sp.issparse(counts):
        counts = sp.csr_matrix(counts)
    with _timed("normalise + log1p"):
        counts = counts if counts.dtype == np.float32 else counts.astype(np.float32)
        adata.X = normalize_log1p(counts, target_sum=target_sum, n_threads=n_threads)
    adata.uns["log1p"] = {"base": None}
    _record(adata, "normalize", {"target_sum": target_sum, "log": "natural log1p",
                                 "implementation": "degflow.kernels.sparse.normalize_log1p"})


def highly_variable(
    adata: ad.AnnData,
    *,
    flavor: Literal["seurat_v3", "seurat", "cell_ranger", "pearson_residuals"] = "seurat_v3",
    n_top_genes: int | None = 2000,
    min_mean: float = 0.0125,
    max_mean: float = 3.0,
    min_disp: float = 0.5,
    batch_key: str | None = "sample",
    span: float | None = None,
) -> None:
    """Flag highly variable genes.

    ``seurat_v3`` (default, Seurat v3's VST) and ``pearson_residuals`` run on the raw counts
    (``layers["counts"]``); ``seurat`` and ``cell_ranger`` on log-normalised ``X`` (run
    :func:`normalize` first). With ``flavor="seurat"`` and ``n_top_genes=None`` the cut-offs
    ``min_mean``/``max_mean``/``min_disp`` decide (the PBMC 3k tutorial: 0.0125, 3, 0.5 → 1,838
    genes). ``batch_key`` makes the selection batch-aware (ignored when there is one batch).

    ``span`` is the loess span of ``seurat_v3`` (Seurat's and scanpy's 0.3). ``None`` means 0.3,
    or, when the loess fit of some batch is singular at 0.3 (small batches: a few hundred cells,
    many genes seen once), the smallest of 0.5, 0.8, 1.0 that fits every batch; a warning says
    so and ``uns["degflow"]["highly_variable"]["span"]`` records the span used. A given number
    is used as is (a failing fit then raises, naming the batch).

    Writes ``var["highly_variable"]`` (bool) and the flavour's statistics (``means``,
    ``dispersions``/``variances``, ``highly_variable_rank``…), ``uns["hvg"]``,
    ``uns["degflow"]["highly_variable"]``.
    """
    import scanpy as sc

    if flavor not in HVG_FLAVORS:
        raise DegflowInputError(f"hvg flavor {flavor!r} is not one of {', '.join(HVG_FLAVORS)}")
    if flavor in ("seurat_v3", "pearson_residuals") and n_top_genes is None:
        raise DegflowInputError(f"hvg flavor {flavor} needs n_top_genes (e.g. 2000)")
    if batch_key is not None and (batch_key not in adata.obs.columns or adata.obs[batch_key].nunique() < 2):
        batch_key = None
    with _timed(f"highly variable genes ({flavor})"):
        if flavor == "pearson_residuals":
            sc.experimental.pp.highly_variable_genes(adata, flavor="pearson_residuals", n_top_genes=n_top_genes,
                                                     layer="counts", batch_key=batch_key)
        elif flavor == "seurat_v3":
            span = _seurat_v3(adata, n_top_genes=n_top_genes, batch_key=batch_key, span=span)
        else:
            if "log1p" not in adata.uns:
                raise DegflowInputError(f"hvg flavor {flavor} needs log-normalised X: run normalize first")
            sc.pp.highly_variable_genes(adata, flavor=flavor, n_top_genes=n_top_genes, min_mean=min_mean,
                                        max_mean=max_mean, min_disp=min_disp, batch_key=batch_key)
    n = int(adata.var["highly_variable"].sum())
    log.info("%d highly variable genes", n)
    _record(adata, "highly_variable", {"flavor": flavor, "n_top_genes": n_top_genes, "min_mean": min_mean,
                                       "max_mean": max_mean, "min_disp": min_disp, "batch_key": batch_key,
                                       "span": span if flavor == "seurat_v3" else None, "n_highly_variable": n})


_LOESS_SPANS = (0.3, 0.5, 0.8, 1.0)


def _seurat_v3(adata: ad.AnnData, *, n_top_genes: int, batch_key: str | None, span: float | None) -> float:
    """scanpy's seurat_v3 HVG on ``layers["counts"]``; returns the loess span used (see :func:`highly_variable`)."""
    import scanpy as sc

    spans = _LOESS_SPANS if span is None else (float(span),)
    for i, s in enumerate(spans):
        try:
            sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=n_top_genes, layer="counts",
                                        batch_key=batch_key, span=s)
        except ValueError as e:
            # skmisc loess reports a singular fit as "reciprocal condition number ..." or, measured on the
            # 16 Kang samples (475-3,134 cells), "There are other near singularities as well"
            if "reciprocal condition number" not in str(e) and "near singularities" not in str(e):
                raise
            if i + 1 < len(spans):
                log.warning("highly variable genes: the seurat_v3 loess fit is singular with span %s (a small "
                            "batch?); retrying with span %s", s, spans[i + 1])
                continue
            raise DegflowInputError(
                f"highly variable genes: the seurat_v3 loess fit is singular with span {s}"
                f"{_failing_batches(adata, n_top_genes, batch_key, s)}; set the hvg span higher (0.5-1.0), "
                "leave it unset (automatic), or select HVGs without batch_key") from None
        return s
    raise AssertionError("unreachable")


def _failing_batches(adata: ad.AnnData, n_top_genes: int, batch_key: str | None, span: float) -> str:
    import scanpy as sc

    if batch_key is None:
        return ""
    bad = []
    for b in adata.obs[batch_key].astype("category").cat.categories:
        sub = adata[(adata.obs[batch_key] == b).to_numpy()]
        sub = ad.AnnData(sub.layers["counts"].copy())
        try:
            sc.pp.highly_variable_genes(sub, flavor="seurat_v3", n_top_genes=n_top_genes, span=span)
        except ValueError:
            bad.append(f"{b} ({sub.n_obs} cells)")
    return f" for batch {', '.join(bad)}" if bad else ""


def pca(
    adata: ad.AnnData,
    *,
    n_comps: int = 50,
    regress_out: Sequence[str] = (),
    scale_max: float | None = 10.0,
    seed: int = 0,
    n_threads: int | None = None,
) -> None:
    """PCA of the highly variable genes (scaled, optionally after regressing out ``obs`` covariates).

    Works on a copy of the HVG columns of ``X`` (``X`` itself stays log-normalised, all genes):
    regress out ``regress_out`` (e.g. ``["total_counts", "pct_counts_mt"]`` as the tutorial),
    scale each gene to unit variance clipping at ``scale_max``, then ARPACK PCA seeded with
    ``seed`` on one BLAS thread (ARPACK's result otherwise depends on the thread count).
    ``n_comps`` is lowered (with a warning) for data with fewer cells or genes.

    Writes ``obsm["X_pca"]`` (float32, cells × n_comps), ``varm["PCs"]`` (loadings; 0 for non-HVGs),
    ``uns["pca"]`` (``variance``, ``variance_ratio``), ``uns["degflow"]["pca"]``.
    """
    import scanpy as sc
    from threadpoolctl import threadpool_limits

    if "highly_variable" not in adata.var.columns:
        raise DegflowInputError("pca needs var['highly_variable']: run highly_variable first")
    hvg = adata.var["highly_variable"].to_numpy(dtype=bool)
    missing = [k for k in regress_out if k not in adata.obs.columns]
    if missing:
        raise DegflowInputError(f"regress_out names obs column(s) {missing} that do not exist; run qc_metrics first "
                                "or fix the names")
    n = min(n_comps, adata.n_obs - 1, int(hvg.sum()) - 1)
    if n < n_comps:
        log.warning("pca: n_comps lowered from %d to %d (%d cells, %d HVGs)", n_comps, n, adata.n_obs, hvg.sum())
    with _timed("pca"), _runtime(n_threads):
        X = adata.X[:, hvg]
        sub = ad.AnnData(X.toarray() if sp.issparse(X) else np.array(X), obs=adata.obs[list(regress_out)].copy())
        if regress_out:
            sc.pp.regress_out(sub, list(regress_out))
        if scale_max is not None or regress_out:
            sc.pp.scale(sub, max_value=scale_max)
        # ARPACK's result depends on the BLAS thread count (summation order; up to 3e-2 on PBMC 3k's
        # last components), which would change the kNN graph and the clusters: one BLAS thread here.
        with threadpool_limits(limits=1):
            sc.pp.pca(sub, n_comps=n, svd_solver="arpack", random_state=seed)
    adata.obsm["X_pca"] = sub.obsm["X_pca"]
    pcs = np.zeros((adata.n_vars, n), dtype=sub.varm["PCs"].dtype)
    pcs[hvg] = sub.varm["PCs"]
    adata.varm["PCs"] = pcs
    adata.uns["pca"] = {k: v for k, v in sub.uns["pca"].items() if k in ("variance", "variance_ratio")}
    adata.uns["pca"]["params"] = {"zero_center": True, "use_highly_variable": True, "mask_var": "highly_variable"}
    _record(adata, "pca", {"n_comps": n, "regress_out": list(regress_out), "scale_max": scale_max, "seed": seed,
                           "svd_solver": "arpack"})


def harmony(adata: ad.AnnData, *, batch_key: str = "sample", seed: int = 0, max_iter: int = 10,
            n_threads: int | None = None) -> None:
    """Harmony integration of ``obsm["X_pca"]`` by ``batch_key`` (harmonypy 2.1, C++ backend).

    harmonypy documents its result as independent of the thread count.

    Writes ``obsm["X_pca_harmony"]`` (float32, cells × n_comps) and ``uns["degflow"]["harmony"]``;
    :func:`process` then builds the neighbour graph on it.
    """
    try:
        import harmonypy
    except ImportError:
        raise DegflowInputError("integration: harmony needs the harmonypy package (pip install harmonypy==2.1.0) "
                                "or set singlecell.integration to none") from None
    if batch_key not in adata.obs.columns:
        raise DegflowInputError(f"harmony: batch_key {batch_key!r} is not an obs column")
    if adata.obs[batch_key].nunique() < 2:
        raise DegflowInputError(f"harmony: obs[{batch_key!r}] has a single batch; there is nothing to integrate "
                                "(set singlecell.integration to none)")
    if "X_pca" not in adata.obsm:
        raise DegflowInputError("harmony needs obsm['X_pca']: run pca first")
    with _timed(f"harmony by {batch_key}"):
        ho = harmonypy.run_harmony(np.asarray(adata.obsm["X_pca"], dtype=np.float64),
                                   adata.obs[[batch_key]].astype(str), [batch_key], max_iter_harmony=max_iter,
                                   random_state=seed, verbose=False, ncores=n_threads or 0)
        z = np.asarray(ho.Z_corr)
    if z.shape != adata.obsm["X_pca"].shape:
        raise AssertionError(f"harmonypy returned shape {z.shape}, expected {adata.obsm['X_pca'].shape}")
    adata.obsm["X_pca_harmony"] = z.astype(np.float32)
    _record(adata, "harmony", {"batch_key": batch_key, "seed": seed, "max_iter": max_iter,
                               "version": _version("harmonypy")})


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


#: Largest data set whose kNN graph is computed exactly (brute force, one BLAS thread): ~8 s for
#: 29k cells x 40 PCs here; the time grows with the square of the number of cells.
EXACT_KNN_MAX_CELLS = 50_000


def _pynndescent_transformer(n_obs: int, n_neighbors: int, seed: int):
    """pynndescent on one thread, with its result converted to ``csr_matrix``.

    Two problems with scanpy's own choice above 8,192 cells (``PyNNDescentTransformer`` with
    ``n_jobs`` threads), both measured on the 29k Kang cells:

    * scanpy 1.11.5 + pynndescent 0.7.0 + scipy 1.17: ``transform`` returns a ``csr_array``, and
      scanpy calls ``.getnnz(axis=1)`` on it, which scipy removed from sparse *arrays*
      (``AttributeError: 'csr_array' object has no attribute 'getnnz'``);
    * pynndescent builds its random-projection forest on ``n_jobs`` threads, so the graph (and
      the Leiden clusters: ARI 0.95 between 1 and 2 threads) depends on the thread count.

    Same parameters as scanpy's default (UMAP's ``n_trees``/``n_iters``) otherwise.
    """
    from pynndescent import PyNNDescentTransformer

    class _CSRPyNNDescentTransformer(PyNNDescentTransformer):
        def transform(self, X, y=None):
            return sp.csr_matrix(super().transform(X, y))

    return _CSRPyNNDescentTransformer(
        n_neighbors=n_neighbors, metric="euclidean", random_state=seed, n_jobs=1,
        n_trees=min(64, 5 + round(n_obs**0.5 / 20.0)), n_iters=max(5, round(np.log2(n_obs))),
    )


def neighbors(
    adata: ad.AnnData,
    *,
    n_neighbors: int = 10,
    n_pcs: int | None = 40,
    use_rep: str = "X_pca",
    knn: Literal["auto", "exact", "pynndescent"] = "auto",
    seed: int = 0,
) -> None:
    """kNN graph on the first ``n_pcs`` columns of ``obsm[use_rep]`` (UMAP connectivities).

    ``knn="auto"`` searches exactly (brute force, what scanpy does below 8,192 cells) up to
    :data:`EXACT_KNN_MAX_CELLS` cells and with pynndescent above. Both run on one thread so the
    graph does not depend on the thread count (see :func:`_pynndescent_transformer` for why, and
    for the scipy ``getnnz`` workaround).

    Writes ``obsp["distances"]``, ``obsp["connectivities"]`` (CSR), ``uns["neighbors"]``,
    ``uns["degflow"]["neighbors"]``.
    """
    import scanpy as sc
    from threadpoolctl import threadpool_limits

    if use_rep not in adata.obsm:
        raise DegflowInputError(f"neighbors: obsm[{use_rep!r}] not found; run pca (or harmony) first")
    if knn not in ("auto", "exact", "pynndescent"):
        raise DegflowInputError(f"neighbors: knn must be auto, exact or pynndescent, not {knn!r}")
    if knn == "auto":
        knn = "exact" if adata.n_obs <= EXACT_KNN_MAX_CELLS else "pynndescent"
    n_pcs = None if n_pcs is None else min(n_pcs, adata.obsm[use_rep].shape[1])
    transformer = "sklearn" if knn == "exact" else _pynndescent_transformer(adata.n_obs, n_neighbors, seed)
    with _timed(f"neighbours ({knn})"), _runtime(1), threadpool_limits(limits=1):
        sc.pp.neighbors(adata, n_neighbors=n_neighbors, n_pcs=n_pcs, use_rep=use_rep, random_state=seed,
                        transformer=transformer)
    _record(adata, "neighbors", {"n_neighbors": n_neighbors, "n_pcs": n_pcs, "use_rep": use_rep, "seed": seed,
                                 "knn": knn})


def leiden(adata: ad.AnnData, *, resolutions: Sequence[float] = (0.5, 1.0), seed: int = 0,
           n_iterations: int = 2) -> None:
    """Leiden clustering (igraph flavour, undirected, modularity) at each resolution.

    Writes ``obs["leiden_<resolution>"]`` (categorical, e.g. ``leiden_1.0``; see :func:`leiden_key`),
    ``uns["leiden_<resolution>"]`` (scanpy's parameters), ``uns["degflow"]["leiden"]``
    (resolutions, seed, clusters found).
    """
    import scanpy as sc

    if "connectivities" not in adata.obsp:
        raise DegflowInputError("leiden needs the neighbour graph: run neighbors first")
    if not resolutions:
        raise DegflowInputError("singlecell.leiden_resolutions is empty; give at least one resolution (e.g. [1.0])")
    found = {}
    with _timed(f"leiden at {list(resolutions)}"):
        for r in resolutions:
            if not r > 0:
                raise DegflowInputError(f"Leiden resolution must be > 0, got {r}")
            key = leiden_key(r)
            sc.tl.leiden(adata, resolution=float(r), flavor="igraph", n_iterations=n_iterations, directed=False,
                         random_state=seed, key_added=key)
            found[key] = int(adata.obs[key].nunique())
            log.info("leiden resolution %s: %d clusters", r, found[key])
    _record(adata, "leiden", {"resolutions": [float(r) for r in resolutions], "seed": seed,
                              "n_iterations": n_iterations, "flavor": "igraph", "n_clusters": found})


def umap(adata: ad.AnnData, *, seed: int = 0, min_dist: float = 0.5, n_threads: int | None = None) -> None:
    """UMAP embedding of the neighbour graph, seeded (umap-learn then runs single-threaded).

    Writes ``obsm["X_umap"]`` (cells × 2), ``uns["umap"]``, ``uns["degflow"]["umap"]``.
    """
    import scanpy as sc

    if "neighbors" not in adata.uns:
        raise DegflowInputError("umap needs the neighbour graph: run neighbors first")
    with _timed("umap"), _runtime(n_threads):
        sc.tl.umap(adata, random_state=seed, min_dist=min_dist)
    _record(adata, "umap", {"seed": seed, "min_dist": min_dist})


def process(
    adata: ad.AnnData,
    *,
    target_sum: float | None = 1e4,
    hvg_flavor: Literal["seurat_v3", "seurat", "cell_ranger", "pearson_residuals"] = "seurat_v3",
    n_top_genes: int | None = 2000,
    min_mean: float = 0.0125,
    max_mean: float = 3.0,
    min_disp: float = 0.5,
    batch_key: str | None = "sample",
    hvg_span: float | None = None,
    regress_out: Sequence[str] = (),
    scale_max: float | None = 10.0,
    n_comps: int = 50,
    integration: Literal["none", "harmony"] = "none",
    n_neighbors: int = 10,
    n_pcs: int | None = 40,
    knn: Literal["auto", "exact", "pynndescent"] = "auto",
    resolutions: Sequence[float] = (0.5, 1.0),
    run_umap: bool = True,
    seed: int = 0,
    n_threads: int | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Counts → clusters and UMAP: :func:`normalize`, :func:`highly_variable`, :func:`pca`,
    (:func:`harmony`), :func:`neighbors`, :func:`leiden`, :func:`umap`, in that order.

    Defaults follow the scanpy PBMC 3k tutorial (log-normalise to 10,000, 2,000 ``seurat_v3``
    HVGs on counts, scale clipped at 10, 50 PCs, 10 neighbours on 40 PCs, igraph Leiden, UMAP);
    its legacy version is ``hvg_flavor="seurat", n_top_genes=None,
    regress_out=["total_counts", "pct_counts_mt"]``.

    Parameters
    ----------
    integration
        ``"harmony"``: correct the PCA by ``batch_key`` before the neighbour graph.
    n_threads
        numba/BLAS threads (``None``: as configured). Results do not depend on it.

    Returns
    -------
    None (or a copy with ``copy=True``). Writes everything the steps write: ``layers["counts"]``,
    log-normalised ``X``, ``var["highly_variable"]``, ``obsm["X_pca"]`` (``X_pca_harmony``),
    ``obsp["distances"]``/``["connectivities"]``, ``obs["leiden_<res>"]``, ``obsm["X_umap"]``, and
    the parameters in ``uns["degflow"][<step>]``.
    """
    if integration not in ("none", "harmony"):
        raise DegflowInputError(f"singlecell.integration must be none or harmony, not {integration!r}")
    if copy:
        adata = adata.copy()
    start = time.perf_counter()
    normalize(adata, target_sum=target_sum, n_threads=n_threads)
    highly_variable(adata, flavor=hvg_flavor, n_top_genes=n_top_genes, min_mean=min_mean, max_mean=max_mean,
                    min_disp=min_disp, batch_key=batch_key, span=hvg_span)
    pca(adata, n_comps=n_comps, regress_out=regress_out, scale_max=scale_max, seed=seed, n_threads=n_threads)
    rep = "X_pca"
    if integration == "harmony":
        harmony(adata, batch_key=batch_key or "sample", seed=seed, n_threads=n_threads)
        rep = "X_pca_harmony"
    neighbors(adata, n_neighbors=n_neighbors, n_pcs=n_pcs, use_rep=rep, knn=knn, seed=seed)
    leiden(adata, resolutions=resolutions, seed=seed)
    if run_umap:
        umap(adata, seed=seed, n_threads=n_threads)
    log.info("process: %d cells, %d genes in %.1fs", adata.n_obs, adata.n_vars, time.perf_counter() - start)
    return adata if copy else None


# ----------------------------------------------------------------------------------------------
# markers and annotation
# ----------------------------------------------------------------------------------------------


def markers(
    adata: ad.AnnData,
    groupby: str,
    *,
    method: Literal["wilcoxon", "t-test", "t-test_overestim_var", "logreg"] = "wilcoxon",
    n_genes: int | None = 100,
    key_added: str | None = None,
) -> pd.DataFrame:
    """Marker genes of every group (cluster) against the rest: :func:`scanpy.tl.rank_genes_groups`.

    Runs on log-normalised ``X`` (all genes), with Benjamini–Hochberg adjustment.

    Returns
    -------
    A long DataFrame, groups in category order, genes by rank: ``group``, ``rank`` (1 = best),
    ``gene``, ``score``, ``logfoldchange``, ``pval``, ``pval_adj``, ``pct_in_group``,
    ``pct_out_group`` (fractions of cells with a non-zero count), at most ``n_genes`` per group
    (``None``: all). Also writes ``uns[key_added or "rank_genes_groups_<groupby>"]`` and
    ``uns["degflow"]["markers_<groupby>"]``.

    Groups with fewer than 2 cells (e.g. a reference label given to one query cell) cannot be tested: they
    are left out (logged, and listed in ``uns["degflow"]["markers_<groupby>"]["left_out"]``); their cells
    stay in the "rest" of the other groups.

    Raises
    ------
    DegflowInputError
        ``groupby`` missing; X not log-normalised; a single group; no group with 2 or more cells.
    """
    import scanpy as sc

    if groupby not in adata.obs.columns:
        raise DegflowInputError(f"markers: obs column {groupby!r} not found (columns: {', '.join(adata.obs.columns)})")
    if "log1p" not in adata.uns:
        raise DegflowInputError("markers need log-normalised X: run normalize (or process) first")
    key = key_added or f"rank_genes_groups_{groupby}"
    groups = adata.obs[groupby].astype("category")
    if groups.nunique() < 2:
        raise DegflowInputError(f"markers: {groupby!r} has a single group; markers need at least two clusters")
    if not isinstance(adata.obs[groupby].dtype, pd.CategoricalDtype):
        adata.obs[groupby] = groups
    sizes = groups.value_counts()
    kept = [c for c in groups.cat.categories if sizes[c] >= 2]
    small = [c for c in groups.cat.categories if sizes[c] < 2]
    if not kept:
        raise DegflowInputError(f"markers: no group of {groupby!r} has 2 or more cells; markers cannot be tested")
    if small:  # scanpy's rank_genes_groups raises on a group of one cell
        log.warning("markers: %d group(s) of %s left out, fewer than 2 cells (cannot be tested): %s", len(small),
                    groupby, ", ".join(f"{c} ({sizes[c]} cell{'' if sizes[c] == 1 else 's'})" for c in small))
    with _timed(f"markers ({method}) by {groupby}"):
        sc.tl.rank_genes_groups(adata, groupby, groups=kept if small else "all", method=method, use_raw=False,
                                pts=True, key_added=key, n_genes=n_genes, corr_method="benjamini-hochberg")
    df = sc.get.rank_genes_groups_df(adata, group=None, key=key)
    if "group" not in df.columns:  # one group only: scanpy drops the column
        df.insert(0, "group", kept[0])
    df = df.rename(columns={"names": "gene", "scores": "score", "logfoldchanges": "logfoldchange",
                            "pvals": "pval", "pvals_adj": "pval_adj", "pct_nz_group": "pct_in_group",
                            "pct_nz_reference": "pct_out_group"})
    df["group"] = df["group"].astype(str)
    df.insert(1, "rank", df.groupby("group", sort=False).cumcount() + 1)
    cols = ["group", "rank", "gene", "score", "logfoldchange", "pval", "pval_adj", "pct_in_group", "pct_out_group"]
    df = df[[c for c in cols if c in df.columns]].reset_index(drop=True)
    _record(adata, f"markers_{groupby}", {"method": method, "n_genes": n_genes, "key": key,
                                          "left_out": [str(c) for c in small]})
    return df


def load_markers(path: str | Path) -> dict[str, list[str]]:
    """Read a marker-gene YAML: ``{cell type: [gene, …]}`` (optionally under a top-level ``cell_types:``).

    Raises
    ------
    DegflowInputError
        Missing file, not a mapping, a cell type without a list of gene names.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise DegflowInputError(f"{path}: marker file not found; check singlecell.markers in the config")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise DegflowInputError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if isinstance(data, Mapping) and "cell_types" in data:
        data = data["cell_types"]
    if not isinstance(data, Mapping) or not data:
        raise DegflowInputError(f"{path}: expected a mapping 'cell type: [gene, gene, ...]'")
    out: dict[str, list[str]] = {}
    for name, genes in data.items():
        if isinstance(genes, str):
            genes = [genes]
        if not isinstance(genes, list) or not genes or not all(isinstance(g, str) and g for g in genes):
            raise DegflowInputError(f"{path}: cell type {name!r} must list gene names, e.g. '{name}: [CD3E, CD4]'")
        out[str(name)] = list(genes)
    return out


def _type_scores(means: np.ndarray, groups: Sequence[str], genes: Sequence[str],
                 present: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Mean z-score (across the given groups) of each type's marker genes: groups x types."""
    sd = means.std(axis=0, ddof=0)
    z = np.divide(means - means.mean(axis=0), sd, out=np.zeros_like(means), where=sd > 0)
    z = pd.DataFrame(z, index=pd.Index(list(groups)), columns=list(genes))
    return pd.DataFrame({t: z[list(gs)].mean(axis=1) if gs else np.nan for t, gs in present.items()})


def annotate(
    adata: ad.AnnData,
    marker_genes: Mapping[str, Sequence[str]],
    groupby: str,
    *,
    key_added: str = "cell_type",
    min_score: float = 0.0,
    min_margin: float = 0.5,
    unassigned: str = "Unassigned",
) -> pd.DataFrame:
    """Name each cluster after the cell type whose marker genes it expresses most, by score.

    For every cluster the mean log-normalised expression of each marker gene is standardised
    across clusters (z-score per gene); a cell type's score in a cluster is the mean z-score of its
    marker genes found in the data. A cluster gets the best-scoring type, or ``unassigned`` when
    no score exceeds ``min_score``. Several clusters may get the same type.

    **Mixed clusters.** A cluster whose best and second-best scores differ by less than
    ``min_margin`` is flagged ``mixed``: its markers do not tell the two types apart (it may hold
    both, or be one the marker file cannot separate). When the second type of a mixed cluster was
    given to no cluster, the clusters named after its best type are compared *among themselves*
    on the two types' markers (z-scores over those clusters only) and each takes the better of the
    two; this is the comparison a person makes on a dot plot. Scored against every cluster, a
    marker shared with another lineage (S100A4 is highest in monocytes; IL7R is in both naive and
    memory CD4 T cells) hides the difference between two subtypes of one lineage (CCR7 vs S100A4);
    among the candidate clusters it shows. Clusters renamed so are flagged ``refined``.

    Returns
    -------
    The score table (clusters × cell types), then ``cell_type`` (the name given), ``best_type``,
    ``second_type``, ``margin`` (best minus second score), ``mixed`` and ``refined`` (bool). With a single cell
    type in ``marker_genes`` there is no runner-up: ``second_type`` is ``""``, ``margin`` ``inf``, nothing mixed.
    Writes ``obs[key_added]`` (categorical, cell types in ``marker_genes`` order),
    ``uns["degflow"]["annotate"]`` (``groupby``, ``scores``, ``assignment``, ``mixed``,
    ``missing_genes``). Mixed clusters are logged as a warning.

    Raises
    ------
    DegflowInputError
        ``groupby`` missing; none of the marker genes in the data.
    """
    if groupby not in adata.obs.columns:
        raise DegflowInputError(f"annotate: obs column {groupby!r} not found; run leiden first")
    present = {t: [g for g in genes if g in adata.var_names] for t, genes in marker_genes.items()}
    missing = sorted({g for genes in marker_genes.values() for g in genes if g not in adata.var_names})
    if missing:
        log.warning("annotate: %d marker genes not in the data: %s", len(missing), ", ".join(missing[:20]))
    if not any(present.values()):
        raise DegflowInputError("annotate: none of the marker genes is in the data (are var_names gene symbols "
                                "of the same species?)")
    genes = sorted({g for gs in present.values() for g in gs})
    groups = adata.obs[groupby].astype("category")
    cats = [str(c) for c in groups.cat.categories]
    X = adata[:, genes].X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    codes = groups.cat.codes.to_numpy()
    means = np.vstack([X[codes == i].mean(axis=0) for i in range(len(cats))])  # clusters × genes
    scores = _type_scores(means, cats, genes, present).rename_axis(groupby)
    values = scores.to_numpy(dtype=float)
    order_idx = np.argsort(-np.nan_to_num(values, nan=-np.inf), axis=1, kind="stable")
    types = np.asarray(scores.columns)
    best = pd.Series(types[order_idx[:, 0]], index=scores.index)
    has_second = scores.shape[1] > 1
    second = pd.Series(types[order_idx[:, 1]] if has_second else [""] * len(cats), index=scores.index)
    rows = np.arange(len(cats))
    # one cell type only: no runner-up, so nothing to confuse it with (margin +inf, never mixed)
    margin = pd.Series(values[rows, order_idx[:, 0]] - values[rows, order_idx[:, 1]] if has_second
                       else np.full(len(cats), np.inf), index=scores.index)
    mixed = margin < min_margin
    name = best.copy()
    refined = pd.Series(False, index=scores.index)
    for c in scores.index[mixed.to_numpy()]:
        pair = [best[c], second[c]]
        if pair[1] == "" or pair[1] in set(best):  # the runner-up has clusters of its own: nothing to tell apart
            continue
        among = [k for k in scores.index if best[k] == pair[0]]
        if len(among) < 2:
            continue
        idx = [cats.index(k) for k in among]
        sub = _type_scores(means[idx], among, genes, {t: present[t] for t in pair})
        for k in among:
            new = str(sub.loc[k].idxmax())
            if new != name[k]:
                name[k], refined[k] = new, True
    name[scores.max(axis=1) <= min_score] = unassigned
    labels = groups.astype(str).map(name).to_numpy()
    order = [t for t in marker_genes if t in set(name)] + ([unassigned] if unassigned in set(name) else [])
    adata.obs[key_added] = pd.Categorical(labels, categories=order)
    table = scores.assign(cell_type=name, best_type=best, second_type=second, margin=margin, mixed=mixed,
                          refined=refined)
    _record(adata, "annotate", {"groupby": groupby, "key_added": key_added, "min_score": min_score,
                                "min_margin": min_margin, "scores": scores.reset_index(), "missing_genes": missing,
                                "assignment": {str(k): str(v) for k, v in name.items()},
                                "mixed": [str(k) for k in scores.index[mixed.to_numpy()]]})
    log.info("annotate: %s", ", ".join(f"{k}->{v}" for k, v in name.items()))
    for c in scores.index[mixed.to_numpy()]:
        log.warning("annotate: cluster %s of %s is mixed: %s and %s score within %.2f (min_margin %.2f)%s", c,
                    groupby, best[c], second[c], margin[c], min_margin,
                    f"; named {name[c]} by comparing the {best[c]} clusters among themselves" if refined[c] else "")
    return table


def transfer_labels(
    adata: ad.AnnData,
    reference: ad.AnnData,
    *,
    label_key: str,
    key_added: str = "cell_type_reference",
    min_confidence: float = 0.5,
    n_top_genes: int = 2000,
    n_comps: int = 50,
    n_neighbors: int = 15,
    target_sum: float | None = 1e4,
    seed: int = 0,
    unassigned: str = "Unassigned",
) -> pd.DataFrame:
    """Label the cells of ``adata`` from a labelled reference with raw counts (scanpy's ``tl.ingest`` mapping).

    Offline and model-free: the reference is processed as degflow processes data (counts →
    log1p of counts per ``target_sum``; ``n_top_genes`` seurat_v3 HVGs on its counts, kept if
    the query has them too; PCA, ``n_comps`` components, ARPACK seeded, on one BLAS thread).
    The query's log-normalised cells are projected on the reference PCs, centred on the
    reference means (the mapping of :func:`scanpy.tl.ingest`), and each takes the majority
    label of its ``n_neighbors`` nearest reference cells (ingest's kNN vote, with an exact
    search; ties go to the label met first in the reference). Its **confidence** is the share
    of those neighbours that carry the label given; below ``min_confidence`` the cell is
    ``unassigned``. No other random step: the same input gives the same labels.

    Parameters
    ----------
    adata
        The query, log-normalised ``X`` (run :func:`normalize` first); not changed except for
        the ``obs`` columns written.
    reference
        Raw counts in ``layers["counts"]`` or ``X``, the labels in ``obs[label_key]``; gene
        symbols as ``var_names``, as the query.
    target_sum
        Counts per cell of the reference's normalisation: the query's (``singlecell.normalize.target_sum``),
        so that both are on one scale; ``None``: the reference's median total count.

    Returns
    -------
    Per label: ``label``, ``n_reference`` (reference cells), ``n_cells`` (query cells given it),
    ``n_unassigned`` (query cells whose best label it was, below ``min_confidence``),
    ``median_confidence``. Writes ``obs[key_added]`` (categorical, reference label order, then
    ``unassigned``), ``obs[key_added + "_confidence"]`` (0-1), ``obsm["X_pca_" + key_added]`` (the
    query in the reference PCA space), ``uns["degflow"]["transfer_labels"]``.

    Raises
    ------
    DegflowInputError
        ``label_key`` not in the reference; a normalised reference; fewer than 50 shared genes.
    """
    import scanpy as sc
    from sklearn.neighbors import NearestNeighbors
    from threadpoolctl import threadpool_limits

    if label_key not in reference.obs.columns:
        raise DegflowInputError(f"reference: obs column {label_key!r} not found (columns: "
                                f"{', '.join(map(str, reference.obs.columns))}); set singlecell.reference.label_key")
    if "log1p" not in adata.uns:
        raise DegflowInputError("transfer_labels needs the query log-normalised: run normalize (or process) first")
    counts = _counts(reference)
    data = counts.data if sp.issparse(counts) else np.asarray(counts).ravel()
    if data.size and (data.min() < 0 or not np.array_equal(data, np.round(data))):
        raise DegflowInputError("reference: X / layers['counts'] must hold raw integer counts (found non-integer "
                                "or negative values); give the reference's raw counts")
    labels = reference.obs[label_key]
    keep = labels.notna().to_numpy()
    obs = pd.DataFrame({"label": labels[keep].astype(str).to_numpy()}, index=reference.obs_names[keep])
    ref = ad.AnnData(sp.csr_matrix(counts[keep]), obs=obs,
                     var=pd.DataFrame(index=reference.var_names.astype(str)))
    ref = ref[:, ~ref.var_names.duplicated()].copy()
    start = time.perf_counter()
    normalize(ref, target_sum=target_sum)
    sc.pp.highly_variable_genes(ref, flavor="seurat_v3", n_top_genes=min(n_top_genes, ref.n_vars), layer="counts")
    query_genes = pd.Index(adata.var_names.astype(str))
    genes = [g for g in ref.var_names[ref.var["highly_variable"].to_numpy()] if g in query_genes]
    if len(genes) < 50:
        raise DegflowInputError(f"reference: only {len(genes)} of its {n_top_genes} highly variable genes are in the "
                                "query; are both gene symbols of the same species?")
    ref = ref[:, genes].copy()
    query = adata[:, genes]
    n = min(n_comps, ref.n_obs - 1, len(genes) - 1)
    with threadpool_limits(limits=1):
        sc.pp.pca(ref, n_comps=n, svd_solver="arpack", random_state=seed)
        # ingest's PCA mapping (query centred on the reference means, times the reference loadings) and its kNN
        # label vote, with exact neighbours: scanpy 1.11.5's tl.ingest fails with pynndescent 0.7.0 (its index
        # rebuild passes n_search_trees=None to make_forest), and exact search does not depend on the threads
        ref_x = ref.X.toarray() if sp.issparse(ref.X) else np.asarray(ref.X)
        query_x = query.X.toarray() if sp.issparse(query.X) else np.asarray(query.X)
        projected = (query_x - ref_x.mean(axis=0)) @ ref.varm["PCs"]
        nn = NearestNeighbors(n_neighbors=min(n_neighbors, ref.n_obs)).fit(ref.obsm["X_pca"])
        _, idx = nn.kneighbors(projected)
    ref_labels = ref.obs["label"].to_numpy()
    codes, uniques = pd.factorize(ref_labels)  # codes in order of first appearance: argmax ties go to the first
    votes = np.zeros((idx.shape[0], len(uniques)), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), codes[idx].ravel()), 1)
    best = np.asarray(uniques, dtype=object)[votes.argmax(axis=1)].astype(str)
    confidence = votes.max(axis=1) / idx.shape[1]
    adata.obsm[f"X_pca_{key_added}"] = projected.astype(np.float32)
    called = np.where(confidence >= min_confidence, best, unassigned)
    # label order: the reference's categories if it has them (kept ones), else sorted
    present = set(ref_labels)
    cats = [str(c) for c in (labels.cat.categories if isinstance(labels.dtype, pd.CategoricalDtype)
                             else sorted(present)) if str(c) in present]
    used = set(called)
    adata.obs[key_added] = pd.Categorical(called, categories=[c for c in dict.fromkeys([*cats, unassigned])
                                                              if c in used])
    adata.obs[f"{key_added}_confidence"] = confidence
    table = pd.DataFrame({
        "label": [*cats, unassigned],
        "n_reference": [int((ref_labels == c).sum()) for c in cats] + [0],
        "n_cells": [int((called == c).sum()) for c in [*cats, unassigned]],
        "n_unassigned": [int(((best == c) & (called == unassigned)).sum()) for c in cats] + [0],
        "median_confidence": [float(np.median(confidence[called == c])) if (called == c).any() else np.nan
                              for c in [*cats, unassigned]],
    })
    _record(adata, "transfer_labels", {"label_key": label_key, "key_added": key_added,
                                       "method": "ingest (PCA projection, exact kNN vote)",
                                       "min_confidence": min_confidence, "n_top_genes": n_top_genes,
                                       "n_genes_used": len(genes), "n_comps": n, "n_neighbors": n_neighbors,
                                       "seed": seed, "n_reference_cells": int(ref.n_obs),
                                       "target_sum": target_sum})
    log.info("transfer_labels: %d reference cells (normalised to target_sum %s), %d shared HVGs, %d of %d query "
             "cells assigned (min_confidence %.2f) in %.1fs", ref.n_obs, target_sum, len(genes),
             int((called != unassigned).sum()), adata.n_obs, min_confidence, time.perf_counter() - start)
    return table


def add_reference_labels(adata: ad.AnnData, labels: pd.DataFrame, *, categories: Sequence[str] | None = None,
                         key_added: str = "cell_type_reference") -> None:
    """Put the labels of :func:`transfer_labels` (a table ``cell``, ``cell_type_reference``, ``confidence``, as the
    workflow writes it) into ``obs[key_added]`` (categorical, ``categories`` order) and ``obs[key_added +
    "_confidence"]``.

    Raises
    ------
    DegflowInputError
        The table does not hold exactly the cells of ``adata``.
    """
    table = labels.set_index("cell")
    if not table.index.is_unique or set(table.index) != set(adata.obs_names):
        raise DegflowInputError("reference labels: the table's cells are not the cells of the data; re-run the "
                                "reference step")
    table = table.reindex(adata.obs_names)
    values = table["cell_type_reference"].astype(str)
    cats = [c for c in (categories if categories is not None else sorted(set(values))) if c in set(values)]
    adata.obs[key_added] = pd.Categorical(values.to_numpy(), categories=cats)
    adata.obs[f"{key_added}_confidence"] = table["confidence"].to_numpy(dtype=float)


def cluster_sizes(adata: ad.AnnData, *, keys: Sequence[str] | None = None, sample_key: str = "sample"
                  ) -> pd.DataFrame:
    """Cells per cluster for each clustering (default: every ``leiden_*`` column and ``cell_type``).

    Returns a DataFrame: ``clustering``, ``cluster``, ``n_cells``, ``fraction`` (of all cells),
    then one ``n_<sample>`` column per sample when ``obs[sample_key]`` exists.
    """
    if keys is None:
        keys = [c for c in adata.obs.columns if c.startswith("leiden_")] + (
            ["cell_type"] if "cell_type" in adata.obs.columns else [])
    rows = []
    for key in keys:
        if key not in adata.obs.columns:
            raise DegflowInputError(f"cluster_sizes: obs column {key!r} not found")
        col = adata.obs[key].astype("category")
        tab = pd.DataFrame({"clustering": key, "cluster": col.cat.categories.astype(str),
                            "n_cells": col.value_counts(sort=False).reindex(col.cat.categories).to_numpy()})
        tab["fraction"] = tab["n_cells"] / adata.n_obs
        if sample_key in adata.obs.columns:
            ct = pd.crosstab(col, adata.obs[sample_key]).reindex(col.cat.categories, fill_value=0)
            for s in ct.columns:
                tab[f"n_{s}"] = ct[s].to_numpy()
        rows.append(tab)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["clustering", "cluster", "n_cells",
                                                                                  "fraction"])


def read_genes_of_interest(spec: str | Path | Sequence[str] | None) -> list[str]:
    """``singlecell.genes_of_interest``: a list of gene symbols, or a UTF-8 text file with one per line (``#``
    comments; read by :func:`degflow.bulk.genes_of_interest.read_gene_list`, as the bulk genes of interest).

    Raises
    ------
    DegflowInputError
        A file that does not exist, is not UTF-8 text (a spreadsheet ...) or names no gene; an empty list entry.
    """
    from degflow.bulk.genes_of_interest import read_gene_list
    from degflow.io.text import check_text_file

    key = "singlecell.genes_of_interest"
    if spec is None or (not isinstance(spec, Path) and len(spec) == 0):
        return []
    if isinstance(spec, (str, Path)):
        check_text_file(spec, what=f"config key '{key}': file", key=key)
        try:
            return read_gene_list(str(spec), key=key)
        except UnicodeDecodeError as exc:
            raise DegflowInputError(f"config key '{key}': file '{spec}' is not UTF-8 text (byte {exc.start}); save "
                                    "it as UTF-8 text, one gene symbol per line") from None
    return read_gene_list([str(g) for g in spec], key=key)


def match_genes(names: Sequence[str], genes: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Match requested gene symbols to ``names`` (var_names): exactly, else ignoring case when that is unique.

    Returns ``({requested: name in the data}, [requested names not found])``, both in request order.
    """
    index = pd.Index(names).astype(str)
    exact = set(index)
    upper: dict[str, list[str]] = {}
    for n in index:
        upper.setdefault(n.upper(), []).append(n)
    found, missing = {}, []
    for g in genes:
        if g in exact:
            found[g] = g
        elif len(upper.get(g.upper(), [])) == 1:
            found[g] = upper[g.upper()][0]
        else:
            missing.append(g)
    return found, missing


def genes_of_interest_figures(adata: ad.AnnData, genes: Sequence[str], *, groupby: str,
                              condition_key: str | None = None) -> dict:
    """Figures of a few genes: UMAP feature plots, a dot plot and stacked violins by ``groupby`` (x condition).

    ``genes`` must be ``var_names`` (see :func:`match_genes`). With ``condition_key`` (an ``obs``
    column, e.g. ``condition``) the dot plot and violins have one row per cell type and condition.

    Returns ``{"umap": Figure, "dotplot": Figure, "violin": Figure}``. With no gene (none of the genes of
    interest is in the data; not fatal) each is a figure saying so.

    Raises
    ------
    DegflowInputError
        ``groupby`` or ``condition_key`` not an obs column.
    """
    import scanpy as sc

    for key in (groupby, condition_key):
        if key is not None and key not in adata.obs.columns:
            raise DegflowInputError(f"genes of interest: obs column {key!r} not found")
    if not genes:
        from degflow.pl.bulk import message_figure

        text = "None of the genes of interest was found in the data:\nsee genes_of_interest/genes.tsv"
        return {name: message_figure(text, title=f"Genes of interest ({title})")
                for name, title in (("umap", "UMAP"), ("dotplot", "dot plot"), ("violin", "violins"))}
    by = [groupby] if condition_key is None else [groupby, condition_key]
    figs = {"umap": umap_figure(adata, list(genes), ncols=min(3, len(genes)))}
    dp = sc.pl.dotplot(adata, list(genes), groupby=by, show=False, return_fig=True)
    dp.make_figure()
    figs["dotplot"] = dp.fig
    sv = sc.pl.stacked_violin(adata, list(genes), groupby=by, show=False, return_fig=True)
    sv.make_figure()
    figs["violin"] = sv.fig
    return figs


# ----------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------


def umap_figure(adata: ad.AnnData, color: str | Sequence[str], *, ncols: int = 2, legend_on_data: bool = False,
                point_size: float | None = None):
    """UMAP coloured by each ``obs`` column or gene in ``color``; returns the Figure."""
    import scanpy as sc

    if "X_umap" not in adata.obsm:
        raise DegflowInputError("umap_figure needs obsm['X_umap']: run umap first")
    color = [color] if isinstance(color, str) else list(color)
    bad = [c for c in color if c not in adata.obs.columns and c not in adata.var_names]
    if bad:
        raise DegflowInputError(f"umap_figure: {bad} are neither obs columns nor genes")
    fig = sc.pl.umap(adata, color=color, ncols=ncols, show=False, return_fig=True, frameon=False,
                     legend_loc="on data" if legend_on_data else "right margin", size=point_size,
                     legend_fontsize=8)
    return fig


def qc_violin_figure(adata: ad.AnnData, *, keys: Sequence[str] = ("n_genes_by_counts", "total_counts",
                                                                  "pct_counts_mt"),
                     groupby: str = "sample", thresholds: Mapping[str, Sequence[float]] | None = None,
                     title: str | None = None):
    """Violins of QC metrics per sample, with threshold lines (``{metric: [values]}``); returns the Figure."""
    import matplotlib.pyplot as plt

    groups = adata.obs[groupby].astype("category") if groupby in adata.obs.columns else pd.Series(
        pd.Categorical(["all"] * adata.n_obs), index=adata.obs_names)
    cats = [c for c in groups.cat.categories if (groups == c).any()]
    fig, axes = plt.subplots(1, len(keys), figsize=(max(3.0, 0.6 * len(cats) + 1.5) * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        data = [adata.obs.loc[(groups == c).to_numpy(), key].to_numpy(dtype=float) for c in cats]
        parts = ax.violinplot(data, showmedians=True, widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.6)
        ax.set_xticks(range(1, len(cats) + 1), [str(c) for c in cats], rotation=90 if len(cats) > 4 else 0)
        ax.set_title(key)
        for value in (thresholds or {}).get(key, []):
            if value is not None:
                ax.axhline(value, color="crimson", lw=1, ls="--")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def qc_scatter_figure(adata: ad.AnnData, *, x: str = "total_counts", y: str = "n_genes_by_counts",
                      color: str = "pct_counts_mt", title: str | None = None):
    """Scatter of two QC metrics coloured by a third (the tutorial's QC scatter); returns the Figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4))
    sca = ax.scatter(adata.obs[x], adata.obs[y], c=adata.obs[color], s=3, cmap="viridis", rasterized=True)
    fig.colorbar(sca, ax=ax, label=color)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def marker_dotplot_figure(adata: ad.AnnData, groupby: str, *, marker_genes: Mapping[str, Sequence[str]] | None = None,
                          n_genes: int = 4):
    """Dot plot of marker genes per cluster; returns the Figure.

    ``marker_genes`` (a marker YAML) shows those genes grouped by cell type; otherwise the top
    ``n_genes`` of :func:`markers` (run it first) for every cluster.
    """
    import scanpy as sc

    if marker_genes is not None:
        var_names = {t: [g for g in gs if g in adata.var_names] for t, gs in marker_genes.items()}
        var_names = {t: gs for t, gs in var_names.items() if gs}
        dp = sc.pl.dotplot(adata, var_names, groupby=groupby, show=False, return_fig=True)
    else:
        key = f"rank_genes_groups_{groupby}"
        if key not in adata.uns:
            raise DegflowInputError(f"marker_dotplot_figure: run markers(adata, {groupby!r}) first")
        dp = sc.pl.rank_genes_groups_dotplot(adata, groupby=groupby, key=key, n_genes=n_genes, show=False,
                                             return_fig=True)
    dp.make_figure()
    return dp.fig
