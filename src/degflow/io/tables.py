"""Reading and writing tables and datasets; the only module that touches paths for outputs.

Count readers live in :mod:`degflow.io.counts` (one ``read_counts`` dispatching on format).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

#: Fixed float formatting: 10 significant digits, so tables are byte-identical across runs and thread counts.
FLOAT_FORMAT = "%.10g"


def write_tsv(df: pd.DataFrame, path: str | Path, *, index: bool = False) -> None:
    """Write a TSV deterministically (fixed float format, ``NA`` for missing, ``\\n`` line ends).

    The file is written to a temporary name and renamed, so a failure never leaves half a table.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; tables should be readable like any other output
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            df.to_csv(fh, sep="\t", index=index, float_format=FLOAT_FORMAT, na_rep="NA", lineterminator="\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Columns of degflow's tables that hold names, read as text whatever they look like (samples called 1..8,
#: Entrez gene IDs): a name is never turned into a number.
ID_COLUMNS = ("sample", "gene_id", "gene_name", "cell", "cell_type", "group", "contrast", "unit")


def read_tsv(path: str | Path, **kwargs: Any) -> pd.DataFrame:
    """Read a TSV written by :func:`write_tsv`; the name columns of :data:`ID_COLUMNS` are read as text."""
    dtype = kwargs.pop("dtype", None)
    if dtype is None or isinstance(dtype, dict):
        dtype = {**{c: str for c in ID_COLUMNS}, **(dtype or {})}
    return pd.read_csv(path, sep="\t", na_values=["NA"], keep_default_na=False, dtype=dtype, **kwargs)


def save_pickle(obj: Any, path: str | Path) -> None:
    """Pickle an intermediate object (e.g. a fitted DeseqDataSet) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, path)


def load_pickle(path: str | Path) -> Any:
    """Load an object saved by :func:`save_pickle`."""
    with open(path, "rb") as fh:
        return pickle.load(fh)


def read_bulk_dataset(path: str | Path, size_factors: str | Path | None = None):
    """The bulk dataset written by the workflow: ``(adata, counts genes x samples[, size factors])``.

    Parameters
    ----------
    path
        ``results/bulk/counts/dataset.h5ad``.
    size_factors
        Optional ``size_factors.tsv``; when given, a third element (Series indexed by sample) is returned.
    """
    import anndata as ad

    adata = ad.read_h5ad(path)
    counts = pd.DataFrame(adata.X.T, index=adata.var_names, columns=adata.obs_names)
    if size_factors is None:
        return adata, counts
    sf = read_tsv(size_factors).set_index("sample")["size_factor"].reindex(adata.obs_names)
    return adata, counts, sf
