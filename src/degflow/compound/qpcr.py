"""qRT-PCR: 2^-ddCt fold changes from a Ct table, and their concordance with RNA-seq.

Compute only (the scatter is :func:`degflow.pl.compound.qpcr_concordance`). The method is
Livak & Schmittgen (2001, Methods 25:402-408):

1. Technical replicates (several rows for one sample and gene) are averaged: ``Ct(s, g)``.
2. ``dCt(s, g) = Ct(s, g) - mean over reference genes r of Ct(s, r)``.
3. For a contrast ``[factor, test, reference]``: ``ddCt(s, g) = dCt(s, g) - mean dCt(reference
   group, g)`` for every sample ``s`` of the test group.
4. Fold change per test sample ``2^-ddCt``; the table reports their mean and SD (ddof=1) over
   the test group's biological replicates, and ``log2FC = -mean(ddCt)`` (the log2 of the
   geometric mean fold change), the value compared with RNA-seq log2 fold changes.

Bad input stops with one line naming the file and row: missing columns, a Ct that is not a
number (``Undetermined``, ``NA``, empty, ``N/A``...), a sample not in the sample sheet, a
reference gene not measured in a sample.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from degflow.errors import DegflowInputError

__all__ = ["concordance", "ddct", "read_ct_table"]

logger = logging.getLogger(__name__)

CT_COLUMNS = ("sample", "gene", "ct")


def read_ct_table(path: str | Path, sample_sheet: pd.DataFrame, *, label: str = "Ct table") -> pd.DataFrame:
    """Read and check a Ct table (TSV or CSV with columns ``sample``, ``gene``, ``ct``).

    Parameters
    ----------
    path
        The table; ``.csv`` is comma-separated, anything else tab-separated. Other columns
        are ignored.
    sample_sheet
        Indexed by sample; every sample of the table must be in it.
    label
        How the file is named in messages (e.g. the config key).

    Returns
    -------
    pandas.DataFrame
        ``sample`` (str), ``gene`` (str), ``ct`` (float), one row per measurement, plus
        ``row`` (the 1-based line number in the file, header = line 1).

    Raises
    ------
    DegflowInputError
        Naming the file and line: missing file or columns, empty sample/gene, a Ct that is not
        a finite number (e.g. ``Undetermined``), or a sample missing from the sample sheet.
    """
    path = Path(path)
    if not path.is_file():
        raise DegflowInputError(f"{label} '{path}' does not exist: check the path")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    miss = [c for c in CT_COLUMNS if c not in df.columns]
    if miss:
        raise DegflowInputError(
            f"{label} '{path}' lacks column(s) {miss} (has {list(df.columns)}); it needs sample, gene, ct"
        )
    if df.empty:
        raise DegflowInputError(f"{label} '{path}' has no rows")
    df = df[list(CT_COLUMNS)].apply(lambda s: s.str.strip())
    df["row"] = np.arange(2, len(df) + 2)
    for col in ("sample", "gene"):
        bad = df[col] == ""
        if bad.any():
            raise DegflowInputError(f"{label} '{path}', line {df.loc[bad, 'row'].iloc[0]}: empty '{col}'")
    ct = pd.to_numeric(df["ct"], errors="coerce")
    bad = ~np.isfinite(ct.to_numpy(dtype=float))
    if bad.any():
        r = df.loc[bad].iloc[0]
        raise DegflowInputError(
            f"{label} '{path}', line {r['row']} (sample '{r['sample']}', gene '{r['gene']}'): Ct '{r['ct']}' is not a "
            "number; undetermined wells must be removed or re-measured (degflow does not impute a Ct)"
        )
    df["ct"] = ct.astype(float)
    known = set(map(str, sample_sheet.index))
    unknown = ~df["sample"].isin(known)
    if unknown.any():
        r = df.loc[unknown].iloc[0]
        raise DegflowInputError(
            f"{label} '{path}', line {r['row']}: sample '{r['sample']}' is not in the sample sheet; "
            "use the sheet's sample names"
        )
    return df.reset_index(drop=True)


def ddct(
    ct: pd.DataFrame,
    sample_sheet: pd.DataFrame,
    contrasts: Mapping[str, Sequence[str]],
    *,
    reference_genes: Sequence[str],
    label: str = "Ct table",
) -> pd.DataFrame:
    """2^-ddCt fold changes per gene and contrast (see the module docstring for the steps).

    Parameters
    ----------
    ct
        From :func:`read_ct_table`.
    sample_sheet
        Indexed by sample, with the contrasts' factor columns.
    contrasts
        Name -> ``[factor, test level, reference level]``.
    reference_genes
        Housekeeping gene(s) measured in every sample.
    label
        File name for messages.

    Returns
    -------
    pandas.DataFrame
        One row per contrast and target gene: ``contrast``, ``gene``, ``n_test``,
        ``n_reference`` (samples with a Ct), ``mean_ddct``, ``fold_change_mean``,
        ``fold_change_sd`` (over the test samples' ``2^-ddCt``), ``log2FC`` (``-mean_ddct``).
    """
    refs = [str(g) for g in reference_genes]
    if not refs:
        raise DegflowInputError("no reference gene given: name the housekeeping gene(s) in qpcr.reference_genes")
    present = set(ct["gene"])
    for g in refs:
        if g not in present:
            raise DegflowInputError(f"{label}: reference gene '{g}' is not measured in any sample; check qpcr.reference_genes")
    mean_ct = ct.groupby(["sample", "gene"], sort=True)["ct"].mean().unstack("gene")
    for g in refs:
        missing = mean_ct.index[mean_ct[g].isna()]
        if len(missing):
            raise DegflowInputError(
                f"{label}: sample '{missing[0]}' has no Ct for reference gene '{g}'; measure it or drop the sample's rows"
            )
    dct = mean_ct.drop(columns=refs).sub(mean_ct[refs].mean(axis=1), axis=0)
    rows = []
    for name, (factor, test, ref) in contrasts.items():
        if factor not in sample_sheet.columns:
            raise DegflowInputError(f"qPCR contrast '{name}': the sample sheet has no column '{factor}'")
        lv = sample_sheet[factor].astype(str).reindex(dct.index)
        t_idx, r_idx = lv.index[lv == str(test)], lv.index[lv == str(ref)]
        if len(t_idx) == 0 or len(r_idx) == 0:
            logger.warning("qPCR contrast %s: no sample of level '%s' or '%s' in the Ct table; skipped", name, test, ref)
            continue
        for gene in dct.columns:
            tv = dct.loc[t_idx, gene].dropna().to_numpy(dtype=float)
            rv = dct.loc[r_idx, gene].dropna().to_numpy(dtype=float)
            if len(tv) == 0 or len(rv) == 0:
                continue
            dd = tv - rv.mean()
            fc = 2.0 ** (-dd)
            rows.append({"contrast": name, "gene": gene, "n_test": len(tv), "n_reference": len(rv),
                         "mean_ddct": float(dd.mean()), "fold_change_mean": float(fc.mean()),
                         "fold_change_sd": float(fc.std(ddof=1)) if len(fc) > 1 else np.nan,
                         "log2FC": float(-dd.mean())})
    return pd.DataFrame(rows, columns=["contrast", "gene", "n_test", "n_reference", "mean_ddct", "fold_change_mean",
                                       "fold_change_sd", "log2FC"])


def concordance(
    qpcr: pd.DataFrame, results: Mapping[str, pd.DataFrame]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """qPCR log2FC against RNA-seq log2FC of the same genes (matched on ``gene_name``).

    Parameters
    ----------
    qpcr
        From :func:`ddct`.
    results
        Contrast name -> RNA-seq results table (``gene_name``, ``log2FoldChange``, ``padj``).

    Returns
    -------
    pairs, stats
        ``pairs``: ``contrast``, ``gene``, ``log2FC_qpcr``, ``log2FC_rnaseq``, ``padj_rnaseq``
        (genes absent from the RNA-seq table are left out, with a warning). ``stats``: per
        contrast and ``all`` pooled, ``n``, ``pearson_r``, ``pearson_p``, ``spearman_r``,
        ``spearman_p`` (NaN with fewer than 3 genes).
    """
    pairs = []
    for name, sub in qpcr.groupby("contrast", sort=False):
        if name not in results:
            raise DegflowInputError(f"qPCR contrast '{name}' has no RNA-seq results; it must be one of bulk.contrasts")
        res = results[name]
        by_name = res.assign(_n=res["gene_name"].astype("string").fillna(""))
        by_name = by_name[by_name["_n"] != ""].drop_duplicates("_n").set_index("_n")
        for _, r in sub.iterrows():
            if r["gene"] not in by_name.index:
                logger.warning("qPCR gene %s is not in the RNA-seq results of %s; left out", r["gene"], name)
                continue
            pairs.append({"contrast": name, "gene": r["gene"], "log2FC_qpcr": r["log2FC"],
                          "log2FC_rnaseq": float(by_name.loc[r["gene"], "log2FoldChange"]),
                          "padj_rnaseq": float(by_name.loc[r["gene"], "padj"])})
    pairs_df = pd.DataFrame(pairs, columns=["contrast", "gene", "log2FC_qpcr", "log2FC_rnaseq", "padj_rnaseq"])
    out = []
    groups = [(c, pairs_df[pairs_df["contrast"] == c]) for c in pd.unique(pairs_df["contrast"])] + [("all", pairs_df)]
    for name, sub in groups:
        ok = sub.dropna(subset=["log2FC_qpcr", "log2FC_rnaseq"])
        row = {"contrast": name, "n": len(ok), "pearson_r": np.nan, "pearson_p": np.nan, "spearman_r": np.nan,
               "spearman_p": np.nan}
        if len(ok) >= 3 and ok["log2FC_qpcr"].nunique() > 1 and ok["log2FC_rnaseq"].nunique() > 1:
            pr = stats.pearsonr(ok["log2FC_qpcr"], ok["log2FC_rnaseq"])
            sr = stats.spearmanr(ok["log2FC_qpcr"], ok["log2FC_rnaseq"])
            row.update(pearson_r=float(pr.statistic), pearson_p=float(pr.pvalue), spearman_r=float(sr.statistic),
                       spearman_p=float(sr.pvalue))
        out.append(row)
    return pairs_df, pd.DataFrame(out)
