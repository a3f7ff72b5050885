"""What every single-cell step shares: its parameters in ``adata.uns["degflow"]``, timed logging, the thread cap and
the raw counts.

Used by :mod:`degflow.singlecell.qc`, :mod:`degflow.singlecell.process` and :mod:`degflow.singlecell.annotate`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import anndata as ad
import numpy as np
import scipy.sparse as sp

from degflow.runtime import threads as _thread_limit

__all__ = ["raw_counts", "record", "thread_cap", "timed"]

log = logging.getLogger("degflow")


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


def record(adata: ad.AnnData, step: str, params: Mapping[str, Any]) -> None:
    """Store a step's parameters in ``adata.uns["degflow"][step]`` (None values left out).

    Parameters
    ----------
    adata
        The data the step wrote to.
    step
        The step's name (the key under ``uns["degflow"]``).
    params
        Its parameters; values h5py cannot store are converted (tuples to lists or arrays, numpy scalars to
        Python numbers).
    """
    uns = adata.uns.setdefault("degflow", {})
    uns[step] = _clean(dict(params))


@contextmanager
def timed(what: str) -> Iterator[None]:
    """Log ``<what> ...`` on entry and ``<what> finished in <s>s`` on exit (logger ``degflow``, INFO).

    Parameters
    ----------
    what
        The step, as the log names it.
    """
    start = time.perf_counter()
    log.info("%s ...", what)
    yield
    log.info("%s finished in %.2fs", what, time.perf_counter() - start)


@contextmanager
def thread_cap(n_threads: int | None) -> Iterator[None]:
    """Cap numba/BLAS threads (and scanpy's ``n_jobs``) for the duration of a step.

    Parameters
    ----------
    n_threads
        numba/BLAS threads (``None``: numba's current setting; see :func:`degflow.runtime.threads`).
    """
    import scanpy as sc

    before = sc.settings.n_jobs
    with _thread_limit(n_threads) as n:
        sc.settings.n_jobs = n
        try:
            yield
        finally:
            sc.settings.n_jobs = before


def raw_counts(adata: ad.AnnData) -> sp.csr_matrix:
    """Raw counts: ``layers["counts"]`` if present, else ``X``.

    Parameters
    ----------
    adata
        Cells x genes.

    Returns
    -------
    The matrix itself (not a copy).
    """
    return adata.layers["counts"] if "counts" in adata.layers else adata.X
