"""Make a labelled reference for ``singlecell.reference``: raw counts + a labels table → one .h5ad.

Usage (from the repository root)::

    python -m degflow.singlecell.make_reference COUNTS LABELS OUT.h5ad [--label-column C]

``COUNTS`` is anything :func:`degflow.io.singlecell.read_sample` reads (10x mtx directory or .h5, .h5ad with raw counts,
BD Rhapsody); ``LABELS`` a CSV/TSV whose first column is the cell barcode (as the counts write it, no prefix added;
one row per barcode) and ``--label-column`` the label (default: the second column). Only labelled cells are kept:
cells of ``COUNTS`` that are not in the table, or whose label is empty, are left out of the reference.
Example, the PBMC 3k reference with the Seurat tutorial's labels::

    python -m degflow.singlecell.make_reference resources/pbmc3k/filtered_min3cells_v3 \\
        resources/pbmc3k/seurat_pbmc3k_final_annotations.csv pbmc3k_reference.h5ad
"""

from __future__ import annotations

import argparse
from pathlib import Path

import anndata as ad
import pandas as pd

from degflow.errors import DegflowInputError
from degflow.io.singlecell import read_sample

__all__ = ["make_reference"]


def make_reference(counts: str | Path, labels: str | Path, out: str | Path, *, label_column: str | None = None
                   ) -> ad.AnnData:
    """Read raw counts and a labels table, write ``out`` (.h5ad: counts in ``X``, the label in ``obs[label_column]``).

    Barcodes are matched as the labels table writes them (the reader's ``<sample>_`` prefix is not added).

    Raises
    ------
    DegflowInputError
        The labels file is missing or has no label column; the label column is missing; a barcode is listed twice;
        no barcode of the table is in the counts.
    """
    if not Path(labels).is_file():
        raise DegflowInputError(f"{labels}: labels file not found; give a CSV/TSV of barcode, label")
    sep = "\t" if str(labels).endswith((".tsv", ".txt", ".tsv.gz")) else ","
    table = pd.read_csv(labels, sep=sep, index_col=0)
    if table.shape[1] == 0:
        raise DegflowInputError(f"{labels}: no label column; the table needs the barcode, then the label(s)")
    column = label_column or str(table.columns[0])
    if column not in table.columns:
        raise DegflowInputError(f"{labels}: no column {column!r} (columns: {', '.join(map(str, table.columns))})")
    barcodes = table.index.astype(str)
    if barcodes.duplicated().any():
        dup = barcodes[barcodes.duplicated()]
        lines = [i + 2 for i in range(len(barcodes)) if barcodes[i] == dup[0]]  # after the header, 1-based
        raise DegflowInputError(f"{labels}: barcode {dup[0]!r} is listed {len(lines)} times (lines "
                                f"{', '.join(map(str, lines))}; {dup.nunique()} duplicated barcode(s)); give one "
                                "label per cell")
    table.index = barcodes
    adata = read_sample(counts)
    adata.obs_names = adata.obs_names.astype(str)
    found = table.index.isin(adata.obs_names)
    if not found.any():
        raise DegflowInputError(f"{labels}: none of its {len(table)} barcodes is a cell of {counts} (first: "
                                f"{table.index[0]} vs {adata.obs_names[0]})")
    adata.obs[column] = pd.Categorical(table[column].reindex(adata.obs_names).astype("string").to_numpy())
    adata = adata[adata.obs[column].notna().to_numpy()].copy()
    adata.write_h5ad(out)
    return adata


def main(argv: list[str] | None = None) -> None:
    """Command line of :func:`make_reference` (see the module docstring).

    Parameters
    ----------
    argv
        The arguments after the program name; ``None`` reads ``sys.argv``.

    Bad input stops with one ``degflow:`` line (``SystemExit``), without a traceback.
    """
    parser = argparse.ArgumentParser(prog="python -m degflow.singlecell.make_reference", description=__doc__.splitlines()[0])
    parser.add_argument("counts")
    parser.add_argument("labels")
    parser.add_argument("out")
    parser.add_argument("--label-column", default=None)
    args = parser.parse_args(argv)
    try:
        a = make_reference(args.counts, args.labels, args.out, label_column=args.label_column)
    except DegflowInputError as e:
        raise SystemExit(f"degflow: {e}") from None
    print(f"{args.out}: {a.n_obs} labelled cells x {a.n_vars} genes")


if __name__ == "__main__":
    main()
