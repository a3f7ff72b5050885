"""Checks of the counts and results given to degflow, shared by the readers, the analyses and the figures.

Each raises :class:`~degflow.errors.DegflowInputError` with one line naming the file or argument, the first
offending gene, sample or cell, and what to do; the messages are part of the interface (tests compare them).
File-level checks (does it exist, is it a text table) are in :mod:`degflow.io.text`.

Counts arrive in three shapes, each with its own check, because each names what is wrong in its own terms:

:func:`as_int_counts`, :func:`check_gene_ids`
    a genes x samples table read from a text file (strings or numbers), returned as ``int64``; names the file,
    gene and sample (the bulk count readers, :mod:`degflow.io.genecounts` and :mod:`degflow.io.quantifiers`);
:func:`check_sparse_counts`
    a cells x genes sparse matrix read from a single-cell file: raw integer UMI counts; names the file, cell
    and gene (:mod:`degflow.io.singlecell`);
:func:`check_count_frame`
    a genes x samples DataFrame handed to a bulk QC function: numeric, complete, non-negative, unique sample
    names; names the sample (:mod:`degflow.bulk.qc`).

Results and thresholds, shared by :mod:`degflow.bulk.qc` and :mod:`degflow.pl.bulk`: :func:`check_matrix`
(VST / log matrices), :func:`check_results`, :func:`check_thresholds`.
"""

# Look-alikes kept apart, because they check other things:
# - degflow.kernels.sizefactors._as_count_array converts a dense samples x genes array to a dtype and layout the numba
#   kernels compile for (raising TypeError/ValueError for programming errors); the kernels count negative/NaN
#   values in the same pass as the work (_raise_bad_counts), so no second pass over the data is made here.
# - degflow.compound.rescue._check_results also needs a unique gene_id column (results.tsv), with its own words.
# - degflow.de.fit._check_inputs checks counts against the sample table and returns int64 counts.
# - degflow.io.sheets.MISSING_VALUES are a sample sheet's spellings of "missing" (lower-case na, n/a); the
#   count tables' NA_STRINGS below also hold "" and "None" (pandas' and Python's writers).

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError

if TYPE_CHECKING:  # scipy is not needed to check bulk tables (the Snakefile imports the readers at parse time)
    import scipy.sparse as sp

__all__ = [
    "NA_STRINGS",
    "as_int_counts",
    "check_count_frame",
    "check_gene_ids",
    "check_matrix",
    "check_results",
    "check_sparse_counts",
    "check_thresholds",
]

#: Cell values of a count table that mean "missing" (named as such in the message, not as "not a number").
NA_STRINGS = frozenset({"", "NA", "NaN", "nan", "N/A", "NULL", "null", "None", "#N/A"})
_INTEGER_HINT = "counts must be integers: for salmon/kallisto estimates use format: salmon/kallisto with tx2gene"


# ----------------------------------------------------------------------------------------------
# bulk count tables read from text files
# ----------------------------------------------------------------------------------------------


def _first_cell(mask: np.ndarray, frame: pd.DataFrame) -> tuple[str, str, Any]:
    """Gene, sample and value of the first True cell of ``mask`` (row-major order)."""
    rows, cols = np.nonzero(mask)
    i, j = int(rows[0]), int(cols[0])
    return str(frame.index[i]), str(frame.columns[j]), frame.iat[i, j]


def check_gene_ids(index: pd.Index, path: Path | str) -> None:
    """Stop unless the gene IDs of a count table read from ``path`` are present, non-empty and unique.

    Raises
    ------
    DegflowInputError
        No gene rows, an empty ID (the row is named), or duplicate IDs (the first three are named).
    """
    if len(index) == 0:
        raise DegflowInputError(f"{path}: no gene rows found; the file has a header but no counts")
    missing = pd.isna(index) | pd.Index(index).astype(str).isin(["", "nan"])
    if missing.any():
        pos = int(np.argmax(missing))
        raise DegflowInputError(f"{path}: gene row {pos + 1} has an empty gene ID; every row needs an ID in the "
                                "first column")
    dup = pd.Index(index)[pd.Index(index).duplicated()].unique()
    if len(dup):
        shown = ", ".join(repr(d) for d in dup[:3])
        raise DegflowInputError(f"{path}: duplicate gene IDs ({shown}; {len(dup)} IDs occur more than once); "
                                "gene IDs must be unique: sum or drop the duplicated rows, or key on a unique ID "
                                "column instead of gene names")


def as_int_counts(raw: pd.DataFrame, path: Path | str, *, hint: str = _INTEGER_HINT) -> pd.DataFrame:
    """Validate a genes x samples table of count strings/numbers and return it as ``int64``.

    Integral floats (``12.0``) are accepted and cast; NA, non-numeric, non-integer, infinite and
    negative values, duplicate or empty gene IDs and tables without samples raise
    :class:`DegflowInputError` naming the first offending gene and sample.
    """
    if raw.shape[1] == 0:
        raise DegflowInputError(f"{path}: no sample columns found; a count table needs a gene ID column "
                                "followed by one count column per sample")
    check_gene_ids(raw.index, path)
    if all(pd.api.types.is_integer_dtype(t) for t in raw.dtypes):
        values = raw.to_numpy(dtype=np.int64, copy=False)
    else:
        num = raw.apply(pd.to_numeric, errors="coerce")
        failed = num.isna().to_numpy()
        if failed.any():
            # NA-like cells ("", NA, nan ...) and text both fail to convert; report the first of either
            gene, sample, value = _first_cell(failed, raw)
            if pd.isna(value) or str(value).strip() in NA_STRINGS:
                raise DegflowInputError(f"{path}: missing value (NA/empty) for gene {gene!r}, sample {sample!r}; "
                                        "counts must be complete: use 0 for genes with no reads, or fix the file")
            raise DegflowInputError(f"{path}: value {value!r} for gene {gene!r}, sample {sample!r} is not a number; "
                                    "count columns must hold only integers (move annotation columns out, or name "
                                    "the gene-name column with gene_name_column)")
        values = num.to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values != np.floor(values))
        if bad.any():
            gene, sample, value = _first_cell(bad, raw)
            raise DegflowInputError(f"{path}: non-integer count {value} for gene {gene!r}, sample {sample!r}; "
                                    f"{hint}")
    neg = values < 0
    if neg.any():
        gene, sample, value = _first_cell(neg, raw)
        raise DegflowInputError(f"{path}: negative count {value} for gene {gene!r}, sample {sample!r}; counts "
                                "must be >= 0 (is this a normalised or log-transformed table? give raw counts)")
    out = pd.DataFrame(values.astype(np.int64, copy=False), index=pd.Index(raw.index.astype(str), name="gene_id"),
                       columns=[str(c) for c in raw.columns], copy=False)
    return out


# ----------------------------------------------------------------------------------------------
# single-cell matrices read from files
# ----------------------------------------------------------------------------------------------


def check_sparse_counts(X: sp.csr_matrix, path: Path | str, obs_names: pd.Index, var_names: pd.Index, *,
                        what: str = "the matrix", hint: str = "degflow needs raw UMI counts") -> None:
    """Raise unless every stored value is a finite non-negative integer.

    Parameters
    ----------
    X
        Cells x genes CSR matrix as read from ``path``.
    path
        The file, for the message.
    obs_names, var_names
        Cell barcodes and gene names, to name the first bad entry.
    what
        What ``X`` is, for the message (``"layers['counts'] (normalised data?)"``).
    hint
        What to do, the message's end.

    Raises
    ------
    DegflowInputError
        ``<path>: <what> holds non-integer values (e.g. 0.5 for cell 'AAAC', gene 'CD3E'; 12 such entries), so
        it is not raw counts; <hint>``.
    """
    data = X.data
    bad = ~np.isfinite(data) | (data < 0) | (data != np.round(data))
    if not bad.any():
        return
    k = int(np.argmax(bad))
    row = int(np.searchsorted(X.indptr, k, side="right") - 1)
    col = int(X.indices[k])
    value = float(data[k])
    kind = "negative" if value < 0 else "non-integer"
    raise DegflowInputError(
        f"{path}: {what} holds {kind} values (e.g. {value:.6g} for cell {obs_names[row]!r}, gene "
        f"{var_names[col]!r}; {int(bad.sum())} such entries), so it is not raw counts; {hint}"
    )


# ----------------------------------------------------------------------------------------------
# tables handed to the bulk QC functions and the figures
# ----------------------------------------------------------------------------------------------


def check_count_frame(counts: object, *, name: str = "counts") -> pd.DataFrame:
    """Check a genes x samples count table: a numeric DataFrame, no NaN, no negatives.

    Returns
    -------
    pd.DataFrame
        ``counts`` itself.

    Raises
    ------
    DegflowInputError
        Not a DataFrame, empty, a non-numeric column, duplicated sample names, a missing or a negative value
        (the first such sample is named).
    """
    if not isinstance(counts, pd.DataFrame):
        raise DegflowInputError(
            f"{name} must be a pandas DataFrame (genes x samples), got {type(counts).__name__}"
        )
    if counts.shape[0] == 0 or counts.shape[1] == 0:
        raise DegflowInputError(f"{name} is empty ({counts.shape[0]} genes x {counts.shape[1]} samples)")
    non_numeric = [c for c in counts.columns if not pd.api.types.is_numeric_dtype(counts[c])]
    if non_numeric:
        raise DegflowInputError(
            f"{name} has non-numeric sample column(s) {non_numeric[:3]}; pass genes x samples counts only"
        )
    if counts.columns.has_duplicates:
        dup = counts.columns[counts.columns.duplicated()].unique().tolist()
        raise DegflowInputError(f"{name} has duplicated sample name(s) {dup[:3]}; sample names must be unique")
    values = counts.to_numpy(dtype=float)
    if np.isnan(values).any():
        col = counts.columns[np.isnan(values).any(axis=0)][0]
        raise DegflowInputError(f"{name} has missing values (first in sample {col!r}); counts must be complete")
    if (values < 0).any():
        col = counts.columns[(values < 0).any(axis=0)][0]
        raise DegflowInputError(f"{name} has negative values (first in sample {col!r}); counts must be >= 0")
    return counts


def check_matrix(matrix: object, name: str) -> pd.DataFrame:
    """Check a genes x samples float matrix (VST, log counts): numeric DataFrame, finite.

    Returns
    -------
    pd.DataFrame
        ``matrix`` itself.

    Raises
    ------
    DegflowInputError
        Not a DataFrame, empty, not numeric, or NaN/infinite values.
    """
    if not isinstance(matrix, pd.DataFrame):
        raise DegflowInputError(
            f"{name} must be a pandas DataFrame (genes x samples), got {type(matrix).__name__}"
        )
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise DegflowInputError(f"{name} is empty ({matrix.shape[0]} genes x {matrix.shape[1]} samples)")
    try:
        values = matrix.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise DegflowInputError(f"{name} must hold numbers only (genes x samples)") from None
    if not np.isfinite(values).all():
        raise DegflowInputError(f"{name} has NaN or infinite values; pass a complete transformed matrix")
    return matrix


def check_results(res: object, *, name: str = "res",
                  columns: Sequence[str] = ("log2FoldChange", "padj")) -> pd.DataFrame:
    """Check a DE results table: a DataFrame holding ``columns``.

    Returns
    -------
    pd.DataFrame
        ``res`` itself.

    Raises
    ------
    DegflowInputError
        Not a DataFrame, or a column of ``columns`` missing (all missing ones are named).
    """
    if not isinstance(res, pd.DataFrame):
        raise DegflowInputError(f"{name} must be a DE results DataFrame, got {type(res).__name__}")
    missing = [c for c in columns if c not in res.columns]
    if missing:
        raise DegflowInputError(
            f"{name} lacks column(s) {missing}; expected a DE results table with {list(columns)}"
        )
    return res


def check_thresholds(lfc: float, padj: float) -> None:
    """Check the thresholds that call a gene up or down: ``lfc`` finite and >= 0, ``padj`` in (0, 1].

    Raises
    ------
    DegflowInputError
        Either threshold out of range (its value is named).
    """
    if not (np.isfinite(lfc) and lfc >= 0):
        raise DegflowInputError(f"lfc threshold must be a finite number >= 0, got {lfc!r}")
    if not (0 < padj <= 1):
        raise DegflowInputError(f"padj threshold must be in (0, 1], got {padj!r}")
