"""Gene annotation: gene names and biotypes from a GTF or a gene table, matched to the count IDs.

:func:`read_annotation`
    gene names (and biotypes) from a GTF (optionally gzipped) or a TSV/CSV gene table;
:func:`match_annotation`
    the annotation row of each count gene ID, matching Ensembl/GENCODE IDs without their version
    suffixes when that is safe (:func:`strip_versions`);
:func:`parse_gtf`, :func:`looks_like_gtf`
    the GTF reading shared with the transcript -> gene maps of :mod:`degflow.io.quantifiers`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from degflow.checks import NA_STRINGS
from degflow.errors import DegflowInputError
from degflow.io.text import check_exists, first_line, guess_sep, is_gzip, open_text, read_table, strip_compression

__all__ = [
    "GENE_NAME_COLUMNS",
    "looks_like_gtf",
    "match_annotation",
    "parse_gtf",
    "read_annotation",
    "strip_versions",
]

logger = logging.getLogger("degflow")

#: Column names (lower-cased) taken as gene names in count matrices, tx2gene maps and gene tables.
GENE_NAME_COLUMNS = ("gene_name", "symbol", "gene_symbol", "name", "external_gene_name", "genesymbol")
_BIOTYPE_COLUMNS = ("gene_biotype", "gene_type", "biotype")
#: A trailing Ensembl/GENCODE version (``.14``), kept in front of a GENCODE ``_PAR_Y`` tag.
_VERSION_RE = re.compile(r"\.\d+(?=(?:_PAR_Y)?$)")


def strip_versions(ids: pd.Index) -> pd.Index:
    """Ensembl/GENCODE IDs without their version suffix (``ENSG00000000003.14`` -> ``ENSG00000000003``),
    keeping a GENCODE ``_PAR_Y`` tag (``ENSG00000002586.20_PAR_Y`` -> ``ENSG00000002586_PAR_Y``)."""
    return pd.Index(ids.astype(str).str.replace(_VERSION_RE, "", regex=True))


def parse_gtf(path: Path, keys: Sequence[str], *, features: Sequence[str] | None = None) -> pd.DataFrame:
    """GTF rows (column ``feature``: the feature type, plus one column per attribute in ``keys``, NaN where a
    line lacks it), comment lines skipped; only the ``features`` types when given."""
    try:
        gtf = pd.read_csv(path, sep="\t", header=None, names=range(9), usecols=[2, 8], dtype=str,
                          keep_default_na=False, quoting=3, compression="gzip" if is_gzip(path) else None)
    except pd.errors.ParserError as exc:
        raise DegflowInputError(f"{path}: cannot be parsed as a GTF ({str(exc).strip().splitlines()[-1]})") from None
    gtf = gtf[gtf[8] != ""]
    if features is not None:
        gtf = gtf[gtf[2].isin(features)]
    out = pd.DataFrame({"feature": gtf[2].to_numpy()})
    for key in keys:
        out[key] = gtf[8].str.extract(rf'(?:^|;)\s*{re.escape(key)} "([^"]*)"', expand=False).to_numpy()
    return out


def looks_like_gtf(path: Path) -> bool:
    """True for a ``.gtf`` name, or when the first data line has 9 tab-separated fields and a ``gene_id "``."""
    if strip_compression(path.name).lower().endswith(".gtf"):
        return True
    with open_text(path) as fh:
        for line in fh:
            if line.startswith("#") or not line.strip():
                continue
            fields = line.rstrip("\r\n").split("\t")
            return len(fields) == 9 and 'gene_id "' in fields[8]
    return False


def read_annotation(path: str | Path) -> pd.DataFrame:
    """Read gene names (and biotypes) from a GTF or a gene table.

    Parameters
    ----------
    path
        A GTF (optionally gzipped): ``gene`` lines when present, otherwise the attributes of the
        other lines (exon/transcript) aggregated per ``gene_id`` (first value seen). Or a TSV/CSV
        whose ``gene_id`` column (else the first column) holds IDs and a ``gene_name``/``symbol``/
        ``gene_symbol``/``Name`` column holds names; other columns are kept.

    Returns
    -------
    pd.DataFrame
        Index ``gene_id`` (unique; later duplicates such as Ensembl's chrY PAR copies are
        dropped with a log message); column ``gene_name`` (NaN where absent) and, when present,
        ``gene_biotype`` (from ``gene_biotype`` or GENCODE's ``gene_type``).

    Raises
    ------
    DegflowInputError
        Missing/empty file, or a GTF without ``gene_id`` attributes.
    """
    path = Path(path)
    check_exists(path, what="annotation file")
    line = first_line(path)
    if line is None:
        raise DegflowInputError(f"{path}: the annotation file is empty")
    if looks_like_gtf(path):
        gtf = parse_gtf(path, ["gene_id", "gene_name", "gene", "gene_biotype", "gene_type"])
        gtf = gtf[gtf["gene_id"].notna()]
        if gtf.empty:
            raise DegflowInputError(f"{path}: no GTF lines with a gene_id attribute; give an Ensembl/GENCODE-style "
                                    "GTF or a TSV with gene_id and gene_name columns")
        genes = gtf[gtf["feature"] == "gene"]
        if genes.empty:
            genes = gtf
        def first_of(a: str, b: str) -> np.ndarray:
            return np.where(genes[a].notna().to_numpy(), genes[a].to_numpy(), genes[b].to_numpy())

        out = pd.DataFrame({"gene_id": genes["gene_id"].to_numpy(), "gene_name": first_of("gene_name", "gene"),
                            "gene_biotype": first_of("gene_biotype", "gene_type")})
        out = out.groupby("gene_id", sort=False).first()
        if out["gene_biotype"].isna().all():
            out = out.drop(columns="gene_biotype")
        out.index.name = "gene_id"
        return out
    table = read_table(path, sep=guess_sep(path, line))
    lower = {str(c).lower(): c for c in table.columns}
    id_col = lower.get("gene_id", table.columns[0])
    rename = {id_col: "gene_id"}
    name_col = next((lower[k] for k in GENE_NAME_COLUMNS if k in lower and lower[k] != id_col), None)
    if name_col is not None:
        rename[name_col] = "gene_name"
    bio_col = next((lower[k] for k in _BIOTYPE_COLUMNS if k in lower), None)
    if bio_col is not None:
        rename[bio_col] = "gene_biotype"
    table = table.rename(columns=rename).replace(sorted(NA_STRINGS), np.nan)
    if "gene_name" not in table.columns:
        table["gene_name"] = np.nan
    dup = table["gene_id"].duplicated()
    if dup.any():
        logger.info("%s: %d duplicated gene IDs (e.g. %s); kept the first row of each", path, int(dup.sum()),
                    table.loc[dup, "gene_id"].iloc[0])
        table = table[~dup]
    table = table.set_index("gene_id")
    cols = ["gene_name", *(["gene_biotype"] if "gene_biotype" in table.columns else [])]
    return table[cols + [c for c in table.columns if c not in cols]]


def match_annotation(gene_ids: Sequence[str] | pd.Index, annotation: pd.DataFrame, *,
                     label: str = "annotation") -> pd.DataFrame:
    """The rows of ``annotation`` for each count gene ID, matching Ensembl versions when needed.

    Parameters
    ----------
    gene_ids
        Gene IDs of the counts (kept as they are in every output).
    annotation
        From :func:`read_annotation` (index ``gene_id``).
    label
        Names the annotation in messages (its path).

    Returns
    -------
    pd.DataFrame
        Index ``gene_ids``; the annotation's columns (``gene_name``, ``gene_biotype`` ...), NaN
        for genes the annotation lacks. IDs are matched as they are; when the two sides differ
        only in version suffixes (``ENSG00000000003.14`` vs ``ENSG00000000003``) and removing
        them matches more genes, they are matched without versions (GENCODE ``_PAR_Y`` tags
        kept) and an info line says so.

    Raises
    ------
    DegflowInputError
        If removing the versions would merge distinct IDs on either side (e.g. ``ENSG1.1`` and
        ``ENSG1.2`` in the counts): the message names the colliding IDs. If no count gene is in
        the annotation at all.
    """
    ids = pd.Index(pd.Index(gene_ids).astype(str), name="gene_id")
    ann_ids = pd.Index(annotation.index.astype(str))
    direct = int(ids.isin(ann_ids).sum())
    key_ids, key_ann = ids, ann_ids
    if direct < len(ids):
        s_ids, s_ann = strip_versions(ids), strip_versions(ann_ids)
        stripped = int(s_ids.isin(s_ann).sum())
        if stripped > direct:
            for side, orig, short in (("the counts", ids, s_ids), (label, ann_ids, s_ann)):
                dup = short.duplicated(keep=False) & short.isin(s_ann if side == "the counts" else s_ids)
                if dup.any():
                    groups = pd.Series(orig[dup]).groupby(short[dup].to_numpy()).agg(lambda v: " / ".join(v))
                    shown = "; ".join(groups.iloc[:3])
                    raise DegflowInputError(
                        f"gene IDs of the counts and of {label} differ in version suffixes, but removing them would "
                        f"merge distinct IDs in {side} ({shown}; {len(groups)} such groups); give an annotation "
                        "with the same versions as the counts")
            logger.info("gene IDs of the counts and %s differ in version suffixes (e.g. %r vs %r); matched them "
                        "without versions: %d of %d genes annotated (%d before)", label, ids[0], ann_ids[0],
                        stripped, len(ids), direct)
            key_ids, key_ann = s_ids, s_ann
    matched = int(key_ids.isin(key_ann).sum())
    if matched == 0:
        raise DegflowInputError(
            f"none of the {len(ids)} gene IDs of the counts is in {label}, also without version suffixes (counts: "
            f"{', '.join(map(repr, ids[:2]))}; annotation: {', '.join(map(repr, ann_ids[:2]))}); give the annotation "
            "of the genome the reads were counted against")
    table = annotation.copy()
    table.index = key_ann
    table = table[~table.index.duplicated()]
    out = table.reindex(key_ids)
    out.index = ids
    if matched < len(ids):
        logger.info("%s annotates %d of %d genes of the counts", label, matched, len(ids))
    return out
