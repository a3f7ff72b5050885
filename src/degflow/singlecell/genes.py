"""Single-cell genes of interest: the configured list (or file) and its match to the data's gene symbols.

Their figures are drawn by :func:`degflow.pl.singlecell.genes_of_interest_figures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from degflow.errors import DegflowInputError

__all__ = ["match_genes", "read_genes_of_interest"]


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
