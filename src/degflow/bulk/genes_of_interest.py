"""Genes of interest (bulk): the short list a biologist came to see, found and reported in every test.

``bulk.genes_of_interest`` is a list, or a file with one gene per line; each entry is a gene ID or a gene name.
:func:`read_gene_list` reads it (before the DAG is built), :func:`match_genes` finds each entry among the
analysed genes, :func:`results_table` gathers their results from any number of per-test tables (Wald
contrasts, LRT) into one wide table. Names not found are listed, never fatal. Figures: :mod:`degflow.pl.bulk`
(``gene_counts``, ``deg_heatmap``, the ``highlight`` of ``volcano`` and ``ma``).

Public functions
----------------
read_gene_list
    The configured list (a YAML list, or a path to a one-per-line file), checked.
match_genes
    Which analysed gene(s) each entry names, and how it was matched; ``not found`` otherwise.
results_table
    One row per matched gene, every test's columns side by side.
default_group_by
    The sample-sheet factor(s) the per-gene count plots group samples by.
report_lines
    One line per test for a gene: ``contrast: log2FC 2.31, padj 1.2e-35``.
gather
    The workflow step: found, gathered into one table and page, the missing ones warned about.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError
from degflow.io.text import check_text_file

if TYPE_CHECKING:
    import anndata as ad

__all__ = ["default_group_by", "gather", "match_genes", "read_gene_list", "report_lines", "results_table", "safe_name"]

log = logging.getLogger("degflow")

#: Per-test columns copied into :func:`results_table`, when the test's table has them.
TEST_COLUMNS = ("log2FoldChange", "lfcSE", "stat", "pvalue", "padj", "regulation")
#: ``matched_by`` value of entries that name no analysed gene.
NOT_FOUND = "not found"
_VERSION = re.compile(r"^(ENS[A-Z]*[GT]\d+)\.\d+$")


def read_gene_list(value: str | Sequence[str] | None, *, key: str = "bulk.genes_of_interest") -> list[str]:
    """The configured genes of interest, in the given order, each once.

    Parameters
    ----------
    value
        A list of gene IDs or names; or a path to a text file with one per line (blank lines and ``#`` comments
        skipped; a tab or comma ends the name, so a table's first column works); ``None`` or ``[]`` for none.
    key
        The config key named in messages.

    Returns
    -------
    list[str]
        Stripped entries; an entry given twice is kept once (logged).

    Raises
    ------
    DegflowInputError
        A file that does not exist, is not text (a spreadsheet, a binary file; not UTF-8) or names no gene; an
        empty entry in the list.
    """
    if value is None:
        return []
    if isinstance(value, str):
        path = Path(value)
        if not path.is_file():
            raise DegflowInputError(
                f"config key '{key}': file '{value}' does not exist; give a list of genes or a file with one per line")
        check_text_file(path, what="gene list", key=key)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            line = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise DegflowInputError(
                f"config key '{key}': file '{value}' is not UTF-8 text (line {line}); "
                "save it as plain UTF-8 text with one gene ID or name per line") from None
        raw = []
        for line in text.splitlines():
            name = re.split(r"[\t,]", line.split("#", 1)[0], maxsplit=1)[0].strip()
            if name:
                raw.append(name)
        if not raw:
            raise DegflowInputError(f"config key '{key}': file '{value}' names no gene; write one gene ID or name per line")
        where = f"file '{value}'"
    else:
        raw = [str(v).strip() for v in value]
        empty = [i for i, v in enumerate(raw) if not v]
        if empty:
            raise DegflowInputError(f"config key '{key}': entry {empty[0] + 1} is empty; give gene IDs or names")
        where = f"config key '{key}'"
    genes = list(dict.fromkeys(raw))
    if len(genes) < len(raw):
        log.info("%s: %d repeated entries kept once", where, len(raw) - len(genes))
    return genes


def match_genes(queries: Sequence[str], gene_ids: Sequence[str], gene_names: Sequence[str] | None = None
                ) -> pd.DataFrame:
    """Find each gene of interest among the analysed genes.

    Rules, first that applies: the gene ID exactly; the Ensembl ID without its version (``ENSG...`` given,
    ``ENSG....14`` analysed, or the reverse) when that names one gene; the gene name exactly (every ID that
    carries it: duplicated symbols give several rows); the gene name ignoring case (``HMOX1`` on mouse data
    finds ``Hmox1``; ``matched_by`` says so).

    Parameters
    ----------
    queries
        The genes of interest (:func:`read_gene_list`).
    gene_ids, gene_names
        The analysed genes' IDs and names (same length; names may be empty).

    Returns
    -------
    pandas.DataFrame
        One row per (query, gene) in query order: ``query``, ``gene_id``, ``gene_name`` (empty when not found),
        ``matched_by`` (``gene_id``, ``gene_id without version``, ``gene_name``, ``gene_name ignoring case`` or
        ``not found``).
    """
    ids = pd.Index([str(g) for g in gene_ids])
    names = pd.Series([("" if n is None or (isinstance(n, float) and np.isnan(n)) else str(n))
                       for n in (gene_names if gene_names is not None else [""] * len(ids))], index=ids)
    if len(names) != len(ids):
        raise DegflowInputError("gene_ids and gene_names differ in length")
    unversioned: dict[str, list[str]] = {}
    for g in ids:
        m = _VERSION.match(g)
        unversioned.setdefault(m.group(1) if m else g, []).append(g)
    by_name: dict[str, list[str]] = {}
    by_lower: dict[str, list[str]] = {}
    for g, n in names.items():
        if n:
            by_name.setdefault(n, []).append(g)
            by_lower.setdefault(n.lower(), []).append(g)
    rows = []
    for q in queries:
        q = str(q)
        m = _VERSION.match(q)
        if q in ids:
            hits, how = [q], "gene_id"
        elif len(unversioned.get(m.group(1) if m else q, [])) == 1:
            hits, how = unversioned[m.group(1) if m else q], "gene_id without version"
        elif q in by_name:
            hits, how = by_name[q], "gene_name"
        elif q.lower() in by_lower:
            hits, how = by_lower[q.lower()], "gene_name ignoring case"
        else:
            rows.append({"query": q, "gene_id": "", "gene_name": "", "matched_by": NOT_FOUND})
            continue
        rows.extend({"query": q, "gene_id": g, "gene_name": names[g], "matched_by": how} for g in hits)
    return pd.DataFrame(rows, columns=["query", "gene_id", "gene_name", "matched_by"])


def results_table(lookup: pd.DataFrame, results: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The genes of interest's results in every test, one row per gene, tests side by side.

    Parameters
    ----------
    lookup
        :func:`match_genes` (rows ``not found`` are left out).
    results
        ``{test name: results table}`` in the order wanted: each a degflow ``results.tsv`` (columns ``gene_id``
        and any of :data:`TEST_COLUMNS`; ``baseMean`` taken from the first table that has the gene). Wald
        contrasts and an LRT alike: a table without ``log2FoldChange`` simply contributes no such column.

    Returns
    -------
    pandas.DataFrame
        ``query``, ``gene_id``, ``gene_name``, ``matched_by``, ``baseMean``, then for each test
        ``<test>_<column>`` for the :data:`TEST_COLUMNS` that test's table has. A gene absent from a test's
        table (not tested: zero counts in every sample) has NA there.
    """
    if not results:
        raise DegflowInputError("results is empty: pass {test name: results table}")
    found = lookup.loc[lookup["matched_by"] != NOT_FOUND].reset_index(drop=True)
    out = found.copy()
    base = pd.Series(np.nan, index=found["gene_id"].to_numpy(), dtype=float)
    for name, res in results.items():
        if "gene_id" not in res.columns:
            raise DegflowInputError(f"results table of {name!r} has no gene_id column")
        table = res.assign(gene_id=res["gene_id"].astype(str)).drop_duplicates("gene_id").set_index("gene_id")
        if "baseMean" in table.columns:
            base = base.fillna(table["baseMean"].reindex(base.index))
        for col in TEST_COLUMNS:
            if col in table.columns:
                out[f"{name}_{col}"] = table[col].reindex(found["gene_id"]).to_numpy()
    out.insert(4, "baseMean", base.to_numpy())
    return out


def default_group_by(contrasts: Mapping[str, object], factors: Sequence[str], batch: Sequence[str] = (), *,
                     covariates: Sequence[str] = ()) -> list[str]:
    """The sample-sheet column the per-gene count plots put on the x axis.

    The factor of the first contrast given as ``[factor, test, reference]`` that is not a batch; else the last
    design factor that is not a batch (the tested factor goes last by convention); else the last numeric covariate
    (a design of covariates only, e.g. ``~ dose``: the plot is then a scatter over its values, as
    :func:`degflow.plan.bulk.plan_lrt` does for the LRT pattern figure); else the last factor. Empty only without any
    design variable.
    """
    batch = set(batch)
    for spec in contrasts.values():
        if isinstance(spec, (list, tuple)) and len(spec) == 3 and spec[0] in factors and spec[0] not in batch:
            return [str(spec[0])]
    kept = [f for f in factors if f not in batch]
    if kept:
        return [kept[-1]]
    if covariates:
        return [str(covariates[-1])]
    return [factors[-1]] if factors else []


def _fmt_p(p: float) -> str:
    return "NA" if not np.isfinite(p) else (f"{p:.2g}" if p >= 1e-3 else f"{p:.1e}")


def report_lines(row: pd.Series, tests: Sequence[str]) -> list[str]:
    """One line per test for a row of :func:`results_table`: ``test: log2FC 2.31, padj 1.2e-35`` (or "not tested").

    Tests named ``lrt_<name>`` (likelihood-ratio tests) print their padj alone: their log2FoldChange is only the
    full model's last coefficient, not a fold change between the groups plotted.
    """
    lines = []
    for t in tests:
        lfc = row.get(f"{t}_log2FoldChange", np.nan)
        padj = row.get(f"{t}_padj", np.nan)
        pval = row.get(f"{t}_pvalue", np.nan)
        lfc = float(lfc) if pd.notna(lfc) else np.nan
        padj = float(padj) if pd.notna(padj) else np.nan
        if not np.isfinite(lfc) and not np.isfinite(padj) and not (pd.notna(pval)):
            lines.append(f"{t}: not tested")
            continue
        parts = []
        if f"{t}_log2FoldChange" in row.index and not t.startswith("lrt_"):
            parts.append(f"log2FC {lfc:+.2f}" if np.isfinite(lfc) else "log2FC NA")
        parts.append(f"padj {_fmt_p(padj)}")
        lines.append(f"{t}: " + ", ".join(parts))
    return lines


def safe_name(text: str) -> str:
    """A file-system-safe file stem (letters, digits, ``_ . -``)."""
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_.")
    return s or "gene"


def gather(genes: Sequence[str], data: ad.AnnData, results: Mapping[str, pd.DataFrame], *,
           lookup_file: str = "lookup.tsv", not_found_file: str = "not_found.tsv"
           ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    """The genes of interest in every test (the ``bulk_genes_of_interest`` step): found, gathered, reported.

    Genes not found are warned about (:func:`degflow.runtime.warn`: the job's log and one terminal line), all
    of them or the first 20 by name.

    Parameters
    ----------
    genes
        ``bulk.genes_of_interest`` (:func:`read_gene_list`).
    data
        The analysis dataset (``var["gene_name"]`` for matching by name).
    results
        Test name -> its results table (Wald contrasts, then likelihood-ratio tests).
    lookup_file, not_found_file
        Where the lookup and the not-found list are written, named in the warnings.

    Returns
    -------
    (lookup, not_found, table, html): :func:`match_genes`, its ``query`` not found, :func:`results_table` and
    its HTML page.
    """
    from degflow.report import html_table
    from degflow.runtime import warn

    lookup = match_genes(genes, data.var_names, data.var["gene_name"].astype(str))
    missing = lookup.loc[lookup["matched_by"] == NOT_FOUND, ["query"]]
    table = results_table(lookup, results)
    n_found = lookup.loc[lookup["matched_by"] != NOT_FOUND, "query"].nunique()
    if n_found == 0:
        warn(f"genes_of_interest: NONE of the {len(genes)} genes was found among the {data.n_vars:,} analysed genes "
             f"(IDs {', '.join(data.var_names[:2])}, ...): check they are gene IDs or names of these counts (names "
             f"need bulk.annotation); see {lookup_file}")
    elif len(missing):
        warn(f"genes_of_interest: {len(missing)} of {len(genes)} not found among the analysed genes: "
             f"{', '.join(missing['query'][:20])}{' ...' if len(missing) > 20 else ''} (listed in "
             f"{not_found_file})")
    caption = (f"{n_found} of {len(genes)} genes of interest found; every test's log2 fold change, p-value and "
               "adjusted p-value side by side." + (f" Not found: {', '.join(missing['query'])}." if len(missing)
                                                   else ""))
    return lookup, missing, table, html_table(table, title="Genes of interest", caption=caption)
