"""Bulk RNA-seq batch effects removed from expression for figures: limma's ``removeBatchEffect`` (port) and the
DESeq2 vignette's recipe from a design formula. DE tests keep the batch in the design instead.

Public functions
----------------
remove_batch_effect
    limma's ``removeBatchEffect``: batch factors and covariates subtracted, the design kept.
batch_corrected
    The same from the DE design formula and the sample sheet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from degflow.checks import check_matrix
from degflow.errors import DegflowInputError

__all__ = ["batch_corrected", "remove_batch_effect"]

logger = logging.getLogger(__name__)


def _sample_rows(table: pd.DataFrame, samples: list[str], missing: str) -> pd.DataFrame:
    """The rows of ``samples`` of ``table`` (its index compared as text), in that order.

    Raises ``DegflowInputError("<missing> [first 3 samples absent]")`` when some are absent.
    """
    frame = table.copy()
    frame.index = frame.index.astype(str)
    absent = [s for s in samples if s not in frame.index]
    if absent:
        raise DegflowInputError(f"{missing} {absent[:3]}")
    return frame.loc[samples]


def remove_batch_effect(
    matrix: pd.DataFrame,
    *,
    batch: pd.DataFrame | pd.Series | None = None,
    covariates: pd.DataFrame | pd.Series | None = None,
    design: np.ndarray | pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Remove batch effects from log-scale expression: a port of limma's ``removeBatchEffect`` (limma 3.54).

    Every gene is fitted by least squares on ``[design, batch, covariates]``; the batch and covariate part of
    the fit is subtracted, the design part (the biology to keep) is not. Each batch factor is coded with
    sum-to-zero contrasts (R's ``contr.sum``), so the corrected values keep each gene's mean over the batches;
    covariates are used as given (not centred), as limma does. For plots (PCA, distances, heatmaps) only: DE
    tests keep the batch in the design instead.

    Parameters
    ----------
    matrix
        Log-scale expression (e.g. :func:`variance_stabilised`), genes x samples.
    batch
        Batch factors, indexed by sample (a Series for one; limma's ``batch`` and ``batch2``, any number here).
        Only the levels present among ``matrix``'s samples are used.
    covariates
        Numeric covariates to remove, indexed by sample (limma's ``covariates``).
    design
        samples x p design matrix of the effects to keep, rows in ``matrix``'s column order (limma's
        ``design``; default an intercept only). See :func:`batch_corrected` to build it from a formula.

    Returns
    -------
    pandas.DataFrame
        float64, the same shape, index and columns as ``matrix``; ``attrs["degflow"]`` records the batch
        and covariate columns removed and the number of design columns kept.

    Raises
    ------
    DegflowInputError
        A sample with no batch/covariate value, a non-numeric covariate, or a batch that cannot be told apart
        from the design (``[design, batch]`` not of full column rank; limma would silently leave part of it).
    """
    matrix = check_matrix(matrix, "matrix")
    samples = [str(s) for s in matrix.columns]
    n = len(samples)
    parts: list[np.ndarray] = []
    removed: list[str] = []
    for what, table in (("batch", batch), ("covariates", covariates)):
        if table is None:
            continue
        frame = table.to_frame() if isinstance(table, pd.Series) else table
        if not isinstance(frame, pd.DataFrame):
            raise DegflowInputError(f"{what} must be a DataFrame or Series indexed by sample, got {type(table).__name__}")
        frame = _sample_rows(frame, samples, f"{what} has no value for sample(s)")
        for col in frame.columns:
            values = frame[col]
            if values.isna().any():
                raise DegflowInputError(f"{what} column {col!r} is missing for sample {values.index[values.isna()][0]!r}")
            if what == "covariates":
                if not pd.api.types.is_numeric_dtype(values):
                    raise DegflowInputError(f"covariate {col!r} must be numeric; give factors as batch")
                parts.append(values.to_numpy(dtype=float)[:, None])
            else:
                labels = values.astype(str).to_numpy()
                levels = sorted(set(labels))
                if len(levels) < 2:  # limma: contr.sum of one level is an error; nothing to remove
                    raise DegflowInputError(f"batch {col!r} has one level ({levels[0]!r}): nothing to remove")
                # contr.sum: level j < k-1 -> column j is 1 for level j, -1 for the last level
                codes = np.searchsorted(levels, labels)
                x = np.zeros((n, len(levels) - 1))
                for j in range(len(levels) - 1):
                    x[codes == j, j] = 1.0
                x[codes == len(levels) - 1, :] = -1.0
                parts.append(x)
            removed.append(str(col))
    if not parts:
        out = matrix.astype(float).copy()
        out.attrs["degflow"] = {"removed": [], "design_columns": 0}
        return out
    x_batch = np.hstack(parts)
    if design is None:
        x_design = np.ones((n, 1))
    else:
        x_design = np.asarray(design, dtype=float)
        if x_design.ndim != 2 or x_design.shape[0] != n:
            raise DegflowInputError(f"design must be a samples x columns matrix with {n} rows, got shape {x_design.shape}")
    x = np.hstack([x_design, x_batch])
    if np.linalg.matrix_rank(x) < x.shape[1]:
        raise DegflowInputError(
            f"the batch ({', '.join(removed)}) cannot be told apart from the design kept: [design, batch] has "
            f"rank {np.linalg.matrix_rank(x)} < {x.shape[1]} columns (a batch confounded with a condition)"
        )
    y = matrix.to_numpy(dtype=float)  # genes x samples
    # lmFit without weights or NA is ordinary least squares per gene: one QR for all genes
    q, r = np.linalg.qr(x)
    beta = np.linalg.solve(r, q.T @ y.T)  # coefficients x genes
    corrected = y - (x_batch @ beta[x_design.shape[1]:]).T
    out = pd.DataFrame(corrected, index=matrix.index, columns=matrix.columns)
    out.attrs["degflow"] = {"removed": removed, "design_columns": int(x_design.shape[1])}
    return out


def batch_corrected(
    matrix: pd.DataFrame,
    sample_sheet: pd.DataFrame,
    *,
    design: str,
    batch: Sequence[str],
) -> pd.DataFrame:
    """The design's batch terms removed from expression, its other terms kept (the DESeq2 vignette's recipe).

    As ``limma::removeBatchEffect(assay(vsd), batch = vsd$batch, design = model.matrix(~ condition))``: the
    design formula without the ``batch`` columns gives ``design``; batch columns that are factors (categorical or
    text in ``sample_sheet``) are removed as ``batch``, numeric ones as ``covariates``
    (:func:`remove_batch_effect`).

    Parameters
    ----------
    matrix
        Log-scale expression (e.g. :func:`variance_stabilised`), genes x samples.
    sample_sheet
        Indexed by sample, holding every design variable (e.g. ``obs`` of the bulk dataset).
    design
        The DE design formula, e.g. ``"~ cell + dex"``.
    batch
        Design variables to remove, e.g. ``["cell"]``; none may be part of an interaction with another variable.

    Returns
    -------
    pandas.DataFrame
        As :func:`remove_batch_effect`; ``attrs["degflow"]`` also has ``design_kept`` (the formula used).
    """
    from formulaic import model_matrix

    from degflow.plan.design import batch_design_terms

    batch = [batch] if isinstance(batch, str) else [str(b) for b in batch]
    kept = batch_design_terms(design, batch)
    matrix = check_matrix(matrix, "matrix")
    samples = [str(s) for s in matrix.columns]
    if not isinstance(sample_sheet, pd.DataFrame):
        raise DegflowInputError(f"sample_sheet must be a DataFrame indexed by sample, got {type(sample_sheet).__name__}")
    sheet = _sample_rows(sample_sheet, samples, "sample_sheet has no row for sample(s)")
    formula = " + ".join(["1", *kept])
    x_design = np.asarray(model_matrix(formula, sheet), dtype=float)
    is_factor = {b: not pd.api.types.is_numeric_dtype(sheet[b]) or isinstance(sheet[b].dtype, pd.CategoricalDtype)
                 for b in batch}
    factors = [b for b in batch if is_factor[b]]
    numeric = [b for b in batch if not is_factor[b]]
    out = remove_batch_effect(matrix, batch=sheet[factors] if factors else None,
                              covariates=sheet[numeric] if numeric else None, design=x_design)
    out.attrs["degflow"]["design_kept"] = "~ " + (" + ".join(kept) or "1")
    logger.info("batch removed (limma removeBatchEffect): %s; design kept: %s", ", ".join(batch),
                out.attrs["degflow"]["design_kept"])
    return out

