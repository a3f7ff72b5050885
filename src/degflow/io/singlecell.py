"""Read single-cell count matrices: 10x mtx / HDF5, h5ad and BD Rhapsody, one sample or a sample sheet.

One entry point per level:

:func:`read_sample`
    one sample from a 10x ``mtx`` directory (Cell Ranger v2 ``genes.tsv`` or v3
    ``features.tsv.gz``, compressed or not), a 10x ``.h5`` (legacy per-genome or v3), an ``.h5ad``
    (raw counts in ``X`` or ``layers["counts"]``) or a BD Rhapsody ``*_MolsPerCell.csv`` (RSEC or
    DBEC table; AbSeq ``|pAbO`` columns split off as protein);
:func:`read_samples`
    every sample of a single-cell sample sheet, concatenated with sample-prefixed barcodes and the
    sheet's metadata (``condition``, ``donor``, …) in ``obs``.

The AnnData returned always holds **raw integer counts** in ``X`` (``float32`` CSR, cells × genes),
gene symbols as ``var_names`` (made unique the scanpy way: ``-1``, ``-2`` …) and the original
identifiers in ``var["gene_ids"]``. Non-gene features (10x "Antibody Capture", BD AbSeq) never sit
among the genes: they go to ``obsm["protein"]`` (a cells × antibodies DataFrame), other 10x feature
types to ``obsm["crispr"]``, ``obsm["multiplexing"]`` or ``obsm["custom"]``.

Every problem with the input raises :class:`~degflow.errors.DegflowInputError` with one line naming
the file (and sheet row) and what to do.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

from degflow.checks import check_sparse_counts
from degflow.errors import DegflowInputError
from degflow.io.sheets import read_sheet, repeated_rows
from degflow.io.text import open_text

__all__ = [
    "FORMATS",
    "QC_OVERRIDE_COLUMNS",
    "READER_COLUMNS",
    "qc_overrides",
    "read_sample",
    "read_sample_sheet",
    "read_samples",
    "sniff_sc_format",
    "validate_sample_sheet",
]

log = logging.getLogger("degflow")

#: The values of ``format`` besides ``"auto"``.
FORMATS: tuple[str, ...] = ("10x_mtx", "10x_h5", "h5ad", "bd_rhapsody")
#: Sample-sheet columns that override QC thresholds for one sample (empty = use the config value).
QC_OVERRIDE_COLUMNS: tuple[str, ...] = ("min_genes", "max_genes", "max_pct_mt", "nmads")
#: Sample-sheet columns read by the loader (not copied to ``obs``).
READER_COLUMNS: tuple[str, ...] = ("path", "format", "bd_counts", "bd_sample_tags", "genome")
#: 10x feature types kept apart from the genes, and the ``obsm`` key each goes to.
_FEATURE_TYPE_KEYS: dict[str, str] = {
    "Antibody Capture": "protein",
    "CRISPR Guide Capture": "crispr",
    "Multiplexing Capture": "multiplexing",
    "Custom": "custom",
}
_GEX = "Gene Expression"
_BD_PROTEIN = re.compile(r"\|pAbO$", re.IGNORECASE)
_BD_TABLE = re.compile(r"_(RSEC|DBEC)_MolsPerCell(_Unfiltered)?\.csv(\.gz)?$", re.IGNORECASE)
_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_SYMBOL_COLUMNS = ("gene_symbols", "feature_name", "gene_name", "gene_symbol", "symbol", "name")


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------


def _find(directory: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _as_csr(X) -> sp.csr_matrix:
    """Canonical float32 CSR (sorted indices, no duplicates, no explicit zeros)."""
    X = sp.csr_matrix(X, dtype=np.float32)  # AnnData/scanpy still expect spmatrix
    X.sum_duplicates()
    X.eliminate_zeros()
    X.sort_indices()
    return X


def _unique(var: pd.DataFrame, path: Path | str) -> pd.DataFrame:
    """Make gene symbols unique the scanpy way (``-1``, ``-2`` …) before an AnnData is built."""
    n_dup = int(var.index.duplicated().sum())
    if n_dup:
        var = var.copy()
        var.index = ad.utils.make_index_unique(pd.Index(var.index.astype(str)), join="-")
        log.info("%s: %d duplicated gene symbols made unique (-1, -2, ...); IDs stay in var['gene_ids']", path, n_dup)
    return var


def _split_features(X: sp.csr_matrix, var: pd.DataFrame, obs_names: pd.Index
                    ) -> tuple[sp.csr_matrix, pd.DataFrame, dict[str, pd.DataFrame]]:
    """Keep gene-expression features in X; return the others as obsm DataFrames by feature type."""
    if "feature_types" not in var.columns:
        return X, var, {}
    types = var["feature_types"].astype(str).to_numpy()
    gex = types == _GEX
    extra: dict[str, pd.DataFrame] = {}
    for ftype in pd.unique(types[~gex]):
        key = _FEATURE_TYPE_KEYS.get(ftype, re.sub(r"\W+", "_", ftype.strip().lower()))
        cols = np.flatnonzero(types == ftype)
        dense = np.asarray(X[:, cols].toarray(), dtype=np.float32)
        extra[key] = pd.DataFrame(dense, index=obs_names, columns=pd.Index(var.index[cols].astype(str)))
        log.info("%d %r features kept apart from the genes in obsm[%r]", len(cols), ftype, key)
    return X[:, np.flatnonzero(gex)], var.iloc[np.flatnonzero(gex)].copy(), extra


# ----------------------------------------------------------------------------------------------
# format detection
# ----------------------------------------------------------------------------------------------


def sniff_sc_format(path: str | Path) -> str:
    """Which of :data:`FORMATS` ``path`` holds, from its layout and content.

    A directory with ``matrix.mtx[.gz]`` is ``10x_mtx``; a directory holding ``*_MolsPerCell.csv``
    or a CSV whose header (after ``#`` lines) starts with ``Cell_Index`` is ``bd_rhapsody``; an
    HDF5 file is ``h5ad`` when it carries anndata's ``encoding-type`` attribute, else ``10x_h5``.
    """
    path = Path(path)
    if not path.exists():
        raise DegflowInputError(f"{path}: not found; check the path in the sample sheet")
    if path.is_dir():
        if _find(path, ["matrix.mtx"]):
            return "10x_mtx"
        if [p for p in path.iterdir() if _BD_TABLE.search(p.name)]:
            return "bd_rhapsody"
        raise DegflowInputError(
            f"{path}: directory holds neither matrix.mtx[.gz] (10x) nor *_RSEC/DBEC_MolsPerCell.csv (BD Rhapsody); "
            "point to the count-matrix directory or file, or set format in the sample sheet"
        )
    name = path.name.lower()
    if name.endswith((".mtx", ".mtx.gz")):
        return "10x_mtx"
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            return "h5ad" if "encoding-type" in f.attrs else "10x_h5"
    if name.endswith((".csv", ".csv.gz")):
        return "bd_rhapsody"
    raise DegflowInputError(
        f"{path}: cannot tell the format from the name or content; set format to one of {', '.join(FORMATS)}"
    )


# ----------------------------------------------------------------------------------------------
# 10x
# ----------------------------------------------------------------------------------------------


def _read_10x_mtx(path: Path) -> tuple[ad.AnnData, dict[str, pd.DataFrame]]:
    directory = path.parent if path.is_file() else path
    matrix = _find(directory, ["matrix.mtx"])
    features = _find(directory, ["features.tsv", "genes.tsv"])
    barcodes = _find(directory, ["barcodes.tsv"])
    missing = [n for n, f in (("matrix.mtx", matrix), ("features.tsv/genes.tsv", features),
                              ("barcodes.tsv", barcodes)) if f is None]
    if missing:
        raise DegflowInputError(f"{directory}: 10x directory lacks {' and '.join(missing)} (plain or .gz); "
                                "point to the folder Cell Ranger/STARsolo wrote (e.g. filtered_feature_bc_matrix)")
    try:
        with open_text(matrix, errors="strict") as fh:
            M = scipy.io.mmread(fh)
    except (ValueError, OSError, EOFError) as e:
        raise DegflowInputError(f"{matrix}: not a readable MatrixMarket file ({e}); re-export the matrix") from None
    try:
        feat = pd.read_csv(features, sep="\t", header=None, dtype=str, keep_default_na=False, quoting=3)
    except pd.errors.EmptyDataError:
        feat = pd.DataFrame(columns=[0, 1])
    try:
        bc = pd.read_csv(barcodes, sep="\t", header=None, dtype=str, keep_default_na=False, quoting=3)
    except pd.errors.EmptyDataError:
        bc = pd.DataFrame(columns=[0])
    n_genes, n_cells = M.shape
    if n_genes != len(feat) or n_cells != len(bc):
        raise DegflowInputError(
            f"{matrix}: the matrix is {n_genes} features x {n_cells} cells but {features.name} has {len(feat)} "
            f"rows and {barcodes.name} {len(bc)}; the three files come from different runs: re-export the directory"
        )
    ids = feat[0].to_numpy()
    symbols = feat[1].to_numpy() if feat.shape[1] > 1 else ids
    var = pd.DataFrame({"gene_ids": ids}, index=pd.Index(symbols, dtype=str))
    if feat.shape[1] > 2:
        var["feature_types"] = feat[2].to_numpy()
    X = _as_csr(sp.csr_matrix(M).T)
    obs_names = pd.Index(bc[0].to_numpy(), dtype=str)
    X, var, extra = _split_features(X, var, obs_names)
    return ad.AnnData(X, obs=pd.DataFrame(index=obs_names), var=_unique(var, path)), extra


def _h5_strings(ds) -> np.ndarray:
    return np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]], dtype=object)


def _read_10x_h5(path: Path, genome: str | None) -> tuple[ad.AnnData, dict[str, pd.DataFrame]]:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DegflowInputError(f"{path}: not a readable HDF5 file ({e}); give a Cell Ranger .h5") from None
    with f:
        try:
            if "matrix" in f:  # Cell Ranger >= 3
                g = f["matrix"]
                feats = g["features"]
                var = pd.DataFrame({"gene_ids": _h5_strings(feats["id"]),
                                    "feature_types": _h5_strings(feats["feature_type"])},
                                   index=pd.Index(_h5_strings(feats["name"]), dtype=str))
                if "genome" in feats:
                    var["genome"] = _h5_strings(feats["genome"])
            else:  # Cell Ranger <= 2: one group per genome
                genomes = [k for k in f if isinstance(f[k], h5py.Group)]
                if genome is None and len(genomes) > 1:
                    raise DegflowInputError(f"{path}: holds several genomes ({', '.join(genomes)}); "
                                            "name one in the sample sheet column 'genome'")
                genome_used = genome or (genomes[0] if genomes else None)
                if genome_used not in genomes:
                    raise DegflowInputError(f"{path}: genome {genome_used!r} not found (has: {', '.join(genomes)}); "
                                            "fix the sample sheet column 'genome'")
                g = f[genome_used]
                var = pd.DataFrame({"gene_ids": _h5_strings(g["genes"])},
                                   index=pd.Index(_h5_strings(g["gene_names"]), dtype=str))
            n_genes, n_cells = (int(v) for v in g["shape"][()])
            X = sp.csc_matrix((g["data"][()], g["indices"][()], g["indptr"][()]), shape=(n_genes, n_cells))
            obs_names = pd.Index(_h5_strings(g["barcodes"]), dtype=str)
        except KeyError as e:
            raise DegflowInputError(f"{path}: not a 10x count HDF5 (missing {e}); give Cell Ranger's "
                                    "filtered_feature_bc_matrix.h5 (or use format h5ad for AnnData files)") from None
    if len(var) != n_genes or len(obs_names) != n_cells:
        raise DegflowInputError(f"{path}: shape says {n_genes} features x {n_cells} cells but it names "
                                f"{len(var)} features and {len(obs_names)} barcodes; the file is damaged")
    if genome is not None and "genome" in var.columns:
        if genome not in set(var["genome"]):
            raise DegflowInputError(f"{path}: genome {genome!r} not found (has: {', '.join(pd.unique(var['genome']))})"
                                    "; fix the sample sheet column 'genome'")
        keep = np.flatnonzero(var["genome"].to_numpy() == genome)
        X, var = X[keep], var.iloc[keep]
    X = _as_csr(X.T)
    X, var, extra = _split_features(X, var, obs_names)
    return ad.AnnData(X, obs=pd.DataFrame(index=obs_names), var=_unique(var, path)), extra


# ----------------------------------------------------------------------------------------------
# h5ad
# ----------------------------------------------------------------------------------------------


def _read_h5ad(path: Path) -> tuple[ad.AnnData, dict[str, pd.DataFrame]]:
    try:
        src = ad.read_h5ad(path)
    except (OSError, KeyError, ValueError) as e:
        raise DegflowInputError(f"{path}: not a readable .h5ad ({type(e).__name__}: {e})") from None
    where = "layers['counts']" if "counts" in src.layers else "X"
    X = src.layers["counts"] if "counts" in src.layers else src.X
    if X is None:
        raise DegflowInputError(f"{path}: has no X and no layers['counts']; store the raw counts in one of them")
    X = _as_csr(X)
    hint = ("degflow needs raw counts: store them in X or layers['counts']"
            + (" (adata.layers['counts'] = adata.raw.X if .raw holds counts)" if src.raw is not None else ""))
    check_sparse_counts(X, path, src.obs_names, src.var_names, what=f"{where} (normalised data?)", hint=hint)
    var = src.var.copy()
    if "gene_ids" not in var.columns:
        var["gene_ids"] = var.index.astype(str)
    ensembl = np.mean([bool(_ENSEMBL.match(v)) for v in var.index[:1000].astype(str)]) > 0.9 if len(var) else False
    if ensembl:
        sym = next((c for c in _SYMBOL_COLUMNS if c in var.columns), None)
        if sym is not None:
            var["gene_ids"] = var.index.astype(str)
            var.index = pd.Index(var[sym].astype(str).to_numpy(), dtype=str)
            log.info("%s: var_names are Ensembl IDs; using var[%r] as gene symbols (IDs kept in var['gene_ids'])",
                     path, sym)
        else:
            log.warning("%s: var_names are Ensembl IDs and no symbol column (%s) exists; mitochondrial/ribosomal "
                        "QC by symbol prefix will find nothing", path, ", ".join(_SYMBOL_COLUMNS))
    obs = src.obs.copy()
    extra = {k: v for k, v in src.obsm.items() if isinstance(v, pd.DataFrame)}
    return ad.AnnData(X, obs=obs, var=_unique(var, path)), extra


# ----------------------------------------------------------------------------------------------
# BD Rhapsody
# ----------------------------------------------------------------------------------------------


def _bd_header(path: Path) -> tuple[int, list[str] | None]:
    """Number of leading ``#`` lines and the header fields after them (None for an empty file)."""
    n = 0
    with open_text(path, errors="strict") as fh:
        for line in fh:
            if line.startswith("#"):
                n += 1
                continue
            if not line.strip():
                n += 1
                continue
            return n, line.rstrip("\r\n").split(",")
    return n, None


def _pick_bd_table(path: Path, bd_counts: str) -> Path:
    tables = sorted(p for p in path.iterdir() if _BD_TABLE.search(p.name) and "_Unfiltered" not in p.name)
    kinds = {p: _BD_TABLE.search(p.name).group(1).upper() for p in tables}
    wanted = ["DBEC", "RSEC"] if bd_counts == "auto" else [bd_counts.upper()]
    for kind in wanted:
        hits = [p for p in tables if kinds[p] == kind]
        if len(hits) > 1:
            raise DegflowInputError(f"{path}: several {kind} tables ({', '.join(p.name for p in hits)}); "
                                    "give the file itself as the sample's path")
        if hits:
            log.info("%s: reading the %s table %s", path, kind, hits[0].name)
            return hits[0]
    have = ", ".join(p.name for p in tables) or "none"
    raise DegflowInputError(f"{path}: no {'/'.join(wanted)} *_MolsPerCell.csv table here (found: {have}); WTA runs "
                            "write RSEC only: set bd_counts to rsec, or point to the file")


def _read_bd(path: Path, bd_counts: str, sample_tags: str | Path | None
             ) -> tuple[ad.AnnData, dict[str, pd.DataFrame]]:
    if path.is_dir():
        path = _pick_bd_table(path, bd_counts)
    else:
        m = _BD_TABLE.search(path.name)
        if m and bd_counts != "auto" and m.group(1).upper() != bd_counts.upper():
            raise DegflowInputError(f"{path}: this is the {m.group(1).upper()} table but bd_counts is {bd_counts}; "
                                    f"point to the *_{bd_counts.upper()}_MolsPerCell.csv file or change bd_counts")
    n_comment, header = _bd_header(path)
    if header is None:
        raise DegflowInputError(f"{path}: empty BD table (no header after {n_comment} '#' lines); "
                                "give the *_MolsPerCell.csv written by the BD Rhapsody pipeline")
    if "Cell_Index" not in header:
        shown = ",".join(header[:4])[:80]
        raise DegflowInputError(f"{path}: no 'Cell_Index' column in the header (line {n_comment + 1}: {shown!r}); "
                                "give a BD Rhapsody *_MolsPerCell.csv (cells in rows, Cell_Index first)")
    idx = header.index("Cell_Index")
    feature_cols = [c for i, c in enumerate(header) if i != idx]
    if not feature_cols:
        raise DegflowInputError(f"{path}: the header names no genes besides Cell_Index; the table is empty")
    blocks, cells = [], []
    try:
        reader = pd.read_csv(path, skiprows=n_comment + 1, header=None, chunksize=4096, dtype={idx: str},
                             keep_default_na=False, na_values=[""], engine="c")
    except pd.errors.EmptyDataError:
        reader = []
    line = n_comment + 2
    for chunk in reader:
        if chunk.shape[1] != len(header):
            raise DegflowInputError(f"{path}: data rows have {chunk.shape[1]} fields but the header {len(header)}; "
                                    "the file is truncated or damaged")
        values = chunk.drop(columns=[idx])
        if not all(pd.api.types.is_numeric_dtype(t) for t in values.dtypes):
            num = values.apply(pd.to_numeric, errors="coerce")
            bad = num.isna().to_numpy()
            r, c = (int(v[0]) for v in np.nonzero(bad))
            raise DegflowInputError(f"{path}, line {line + r}: value {values.iat[r, c]!r} in column "
                                    f"{feature_cols[c]!r} is not a count")
        arr = values.to_numpy(dtype=np.float64)
        if np.isnan(arr).any():
            r, c = (int(v[0]) for v in np.nonzero(np.isnan(arr)))
            raise DegflowInputError(f"{path}, line {line + r}: empty value in column {feature_cols[c]!r}; "
                                    "counts must be complete")
        blocks.append(sp.csr_matrix(arr.astype(np.float32)))
        cells.extend(chunk[idx].astype(str).str.strip().tolist())
        line += len(chunk)
    if not blocks:
        raise DegflowInputError(f"{path}: the BD table has a header but no cell rows; the matrix is empty")
    X = _as_csr(sp.vstack(blocks, format="csr"))
    obs_names = pd.Index(cells, dtype=str)
    protein = np.array([bool(_BD_PROTEIN.search(c)) for c in feature_cols])
    extra = {}
    if protein.any():
        extra["protein"] = pd.DataFrame(X[:, np.flatnonzero(protein)].toarray(), index=obs_names,
                                        columns=pd.Index([c for c, p in zip(feature_cols, protein, strict=True) if p]))
        log.info("%s: %d AbSeq (|pAbO) columns kept apart from the genes in obsm['protein']", path, protein.sum())
    genes = [c for c, p in zip(feature_cols, protein, strict=True) if not p]
    X = X[:, np.flatnonzero(~protein)]
    var = pd.DataFrame({"gene_ids": genes, "feature_types": _GEX}, index=pd.Index(genes, dtype=str))
    out = ad.AnnData(X, obs=pd.DataFrame(index=obs_names), var=_unique(var, path))
    if sample_tags is not None:
        out.obs = out.obs.join(_read_bd_tags(Path(sample_tags), obs_names))
    return out, extra


def _read_bd_tags(path: Path, cells: pd.Index) -> pd.DataFrame:
    if not path.is_file():
        raise DegflowInputError(f"{path}: sample-tag calls file not found; fix bd_sample_tags in the sample sheet")
    n_comment, header = _bd_header(path)
    if header is None or not {"Cell_Index", "Sample_Tag", "Sample_Name"} <= set(header):
        raise DegflowInputError(f"{path}: expected columns Cell_Index, Sample_Tag, Sample_Name "
                                "(a BD *_Sample_Tag_Calls.csv)")
    tags = pd.read_csv(path, skiprows=n_comment, dtype=str, keep_default_na=False).set_index("Cell_Index")
    missing = cells.difference(tags.index)
    if len(missing):
        raise DegflowInputError(f"{path}: {len(missing)} cells of the count table have no sample-tag call "
                                f"(e.g. Cell_Index {missing[0]}); is it the calls file of the same run?")
    return tags.loc[cells, ["Sample_Tag", "Sample_Name"]].rename(
        columns={"Sample_Tag": "sample_tag", "Sample_Name": "sample_tag_name"})


# ----------------------------------------------------------------------------------------------
# one sample
# ----------------------------------------------------------------------------------------------


def read_sample(
    path: str | Path,
    *,
    format: Literal["auto", "10x_mtx", "10x_h5", "h5ad", "bd_rhapsody"] = "auto",  # noqa: A002
    sample: str | None = None,
    bd_counts: Literal["auto", "rsec", "dbec"] = "auto",
    bd_sample_tags: str | Path | None = None,
    genome: str | None = None,
) -> ad.AnnData:
    """Read one sample's raw counts.

    Parameters
    ----------
    path
        10x mtx directory (or its ``matrix.mtx[.gz]``), 10x ``.h5``, ``.h5ad``, BD Rhapsody
        ``*_MolsPerCell.csv`` or a BD output directory holding one.
    format
        One of :data:`FORMATS`, or ``"auto"`` (:func:`sniff_sc_format`).
    sample
        Sample name: barcodes become ``"<sample>_<barcode>"`` and ``obs["sample"]`` is set.
    bd_counts
        BD only: which molecule table, ``"dbec"`` (recommended for Targeted) or ``"rsec"`` (the
        only one of WTA runs). ``"auto"`` takes the file given, or from a directory the DBEC table
        when present, else RSEC. A file whose name says the other kind is refused.
    bd_sample_tags
        BD only: a ``*_Sample_Tag_Calls.csv`` whose calls are added as ``obs["sample_tag"]`` and
        ``obs["sample_tag_name"]``.
    genome
        10x HDF5 only: keep the features of this genome (required for legacy multi-genome files).

    Returns
    -------
    AnnData with

    ``X``
        raw counts, ``float32`` CSR (cells × genes), gene-expression features only;
    ``obs_names``
        barcodes (``Cell_Index`` for BD), ``"<sample>_"``-prefixed when ``sample`` is given;
    ``obs["sample"]``
        ``sample`` (when given);
    ``var_names``
        gene symbols, made unique (``-1``, ``-2``, …, as ``var_names_make_unique``);
    ``var["gene_ids"]``
        the original feature IDs (Ensembl IDs for 10x; the symbol where the format has no IDs);
    ``var["feature_types"]``
        ``"Gene Expression"`` (formats that record it);
    ``obsm["protein"]`` (and ``"crispr"``, ``"multiplexing"``, ``"custom"``)
        ``pandas.DataFrame`` of counts for 10x Antibody Capture / BD AbSeq (``|pAbO``) features.

    Raises
    ------
    DegflowInputError
        Missing path; unknown format; matrix dimensions that disagree with the barcode/feature
        files; an empty matrix; non-integer or negative values (normalised data); a BD table without
        ``Cell_Index``; duplicated barcodes.
    """
    start = time.perf_counter()
    path = Path(path)
    if not path.exists():
        raise DegflowInputError(f"{path}: not found" + (f" (sample {sample!r})" if sample else "")
                                + "; check the path in the sample sheet (relative paths start where snakemake runs)")
    if format == "auto":
        format = sniff_sc_format(path)  # noqa: A001
    if format not in FORMATS:
        raise DegflowInputError(f"{path}: unknown format {format!r}; use one of auto, {', '.join(FORMATS)}")
    if bd_counts not in ("auto", "rsec", "dbec"):
        raise DegflowInputError(f"{path}: bd_counts must be auto, rsec or dbec, not {bd_counts!r}")
    if format == "10x_mtx":
        adata, extra = _read_10x_mtx(path)
    elif format == "10x_h5":
        adata, extra = _read_10x_h5(path, genome)
    elif format == "h5ad":
        adata, extra = _read_h5ad(path)
    else:
        adata, extra = _read_bd(path, bd_counts, bd_sample_tags)
    if adata.n_obs == 0 or adata.n_vars == 0 or adata.X.nnz == 0:
        raise DegflowInputError(f"{path}: empty matrix ({adata.n_obs} cells x {adata.n_vars} genes, "
                                f"{adata.X.nnz} non-zero counts); is this the filtered matrix of the right sample?")
    if format != "h5ad":
        check_sparse_counts(adata.X, path, adata.obs_names, adata.var_names)
    dup = adata.obs_names[adata.obs_names.duplicated()]
    if len(dup):
        raise DegflowInputError(f"{path}: barcode {dup[0]!r} occurs more than once ({len(dup)} duplicates); "
                                "barcodes of one sample must be unique")
    for key, frame in extra.items():
        frame.index = adata.obs_names
        adata.obsm[key] = frame
    if sample is not None:
        new = pd.Index([f"{sample}_{b}" for b in adata.obs_names], dtype=str)
        adata.obs_names = new
        for frame in adata.obsm.values():
            if isinstance(frame, pd.DataFrame):
                frame.index = new
        adata.obs["sample"] = pd.Categorical([sample] * adata.n_obs)
    adata.uns["degflow"] = {"read": {"path": str(path), "format": format}}
    if format == "bd_rhapsody":
        adata.uns["degflow"]["read"]["bd_counts"] = bd_counts
    log.info("read %s (%s): %d cells x %d genes in %.1fs", path, format, adata.n_obs, adata.n_vars,
             time.perf_counter() - start)
    return adata


# ----------------------------------------------------------------------------------------------
# sample sheet
# ----------------------------------------------------------------------------------------------


def _empty(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or str(value).strip() == ""


def validate_sample_sheet(sheet: pd.DataFrame, *, source: str | Path = "sample sheet") -> pd.DataFrame:
    """Check a single-cell sample sheet and return it indexed by ``sample``, as strings.

    ``sheet`` may carry the sample names in a ``sample`` column or as its index (named ``sample``).
    Required: ``sample`` and ``path``. Optional: ``format`` (default ``auto``), ``condition``,
    ``donor``, ``batch``, ``bd_counts``, ``bd_sample_tags``, ``genome``, the QC overrides
    :data:`QC_OVERRIDE_COLUMNS`, and any other metadata column (copied to ``obs``).

    Raises
    ------
    DegflowInputError
        No ``path`` column; empty or duplicate sample names; empty path; unknown format;
        non-numeric QC override.
    """
    df = sheet.copy()
    if "sample" not in df.columns:
        if df.index.name in ("sample", "sample_id"):
            df = df.reset_index().rename(columns={"sample_id": "sample"})
        elif "sample_id" in df.columns:
            df = df.rename(columns={"sample_id": "sample"})
        else:
            raise DegflowInputError(f"{source}: no 'sample' column; the sheet needs columns sample, path "
                                    "(and optionally format, condition, donor)")
    if "path" not in df.columns:
        raise DegflowInputError(f"{source}: no 'path' column; give each sample's count matrix file or directory")
    if df.empty:
        raise DegflowInputError(f"{source}: has a header but no samples")
    df = df.astype(object).where(pd.notna(df), "")
    df = df.map(lambda v: str(v).strip())
    for i, name in enumerate(df["sample"]):
        if name == "":
            raise DegflowInputError(f"{source}, row {i + 2}: the sample name is empty")
        if not re.fullmatch(r"[^\W_][\w.\-]*", name):
            raise DegflowInputError(f"{source}, row {i + 2}: sample name {name!r} may hold only letters (any "
                                    "alphabet), digits, '_', '.' and '-', and must start with a letter or digit "
                                    "(it prefixes barcodes and names output files): no spaces, '/' or other signs")
        if df["path"].iat[i] == "":
            raise DegflowInputError(f"{source}, row {i + 2} (sample {name!r}): the path is empty")
    again = repeated_rows(df["sample"])
    if again is not None:
        raise DegflowInputError(f"{source}: sample name {again[0]!r} appears more than once (rows {again[1]}); "
                                "sample names must be unique")
    if "format" not in df.columns:
        df["format"] = "auto"
    df["format"] = df["format"].replace("", "auto")
    for i, fmt in enumerate(df["format"]):
        if fmt not in ("auto", *FORMATS):
            raise DegflowInputError(f"{source}, row {i + 2}: format {fmt!r} is not one of auto, {', '.join(FORMATS)}")
    for col in QC_OVERRIDE_COLUMNS:
        if col in df.columns:
            for i, v in enumerate(df[col]):
                if v != "" and pd.isna(pd.to_numeric(v, errors="coerce")):
                    raise DegflowInputError(f"{source}, row {i + 2}: QC override {col}={v!r} is not a number "
                                            "(leave it empty to use the config value)")
    df = df.set_index("sample")
    df.attrs["source"] = str(source)
    return df


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read (:func:`degflow.io.sheets.read_sheet`, ``#`` lines skipped) and check a single-cell sample sheet; see
    :func:`validate_sample_sheet`."""
    path = Path(path)
    sheet = read_sheet(path, what="single-cell sample sheet", key="singlecell.samples", comment="#",
                       not_found=f"{path}: single-cell sample sheet not found; check singlecell.samples in the config",
                       empty=f"{path}: the sample sheet is empty; it needs a header and one row per sample")
    return validate_sample_sheet(sheet, source=path)


def qc_overrides(sheet: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per-sample QC thresholds from the sheet's :data:`QC_OVERRIDE_COLUMNS` (empty cells left out).

    Returns ``{sample: {"max_pct_mt": 10.0, ...}}`` for :func:`degflow.singlecell.qc.qc_filter`.
    """
    sheet = validate_sample_sheet(sheet, source=sheet.attrs.get("source", "sample sheet"))
    out: dict[str, dict[str, float]] = {}
    for sample, row in sheet.iterrows():
        vals = {c: float(row[c]) for c in QC_OVERRIDE_COLUMNS if c in sheet.columns and row[c] != ""}
        if vals:
            out[str(sample)] = vals
    return out


def _concat_obsm(parts: Sequence[ad.AnnData], obs_names: pd.Index) -> dict[str, pd.DataFrame]:
    keys = sorted({k for a in parts for k, v in a.obsm.items() if isinstance(v, pd.DataFrame)})
    out = {}
    for key in keys:
        frames = [a.obsm[key] if key in a.obsm else pd.DataFrame(index=a.obs_names) for a in parts]
        out[key] = pd.concat(frames, axis=0, join="outer").reindex(obs_names).astype(np.float32)
        if any(key not in a.obsm for a in parts):
            log.warning("obsm[%r] is measured in only some samples; the others hold NaN", key)
    return out


def read_samples(
    sheet: pd.DataFrame,
    *,
    base_dir: str | Path | None = None,
    join: Literal["inner", "outer"] = "inner",
) -> ad.AnnData:
    """Read every sample of a single-cell sample sheet and concatenate them.

    Parameters
    ----------
    sheet
        Sample sheet (see :func:`validate_sample_sheet`); read it with :func:`read_sample_sheet`.
    base_dir
        Folder relative paths start from (default: the working directory, where snakemake runs).
    join
        Genes measured in only some samples: ``"inner"`` keeps the shared genes (logging how many
        were dropped), ``"outer"`` keeps all, with 0 where a sample lacks the gene.

    Returns
    -------
    AnnData as :func:`read_sample` (raw counts in ``X``), plus

    ``obs_names``
        ``"<sample>_<barcode>"``;
    ``obs["sample"]``
        categorical, in sheet order;
    ``obs[<column>]``
        every metadata column of the sheet (``condition``, ``donor``, …), categorical;
    ``uns["degflow"]["read"]``
        ``samples``, ``paths``, ``formats`` and ``n_cells`` per sample.

    Raises
    ------
    DegflowInputError
        Anything :func:`validate_sample_sheet` or :func:`read_sample` refuses, naming the row.
    """
    source = sheet.attrs.get("source", "sample sheet")
    sheet = validate_sample_sheet(sheet, source=source)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    meta_cols = [c for c in sheet.columns if c not in READER_COLUMNS and c not in QC_OVERRIDE_COLUMNS]
    parts = []
    for row, (sample, rec) in enumerate(sheet.iterrows(), start=2):
        path = Path(rec["path"])
        path = path if path.is_absolute() else base / path
        if not path.exists():
            raise DegflowInputError(f"{source}, row {row} (sample {sample!r}): {path} not found; fix the path "
                                    f"(relative paths start in {base})")
        tags = rec.get("bd_sample_tags", "") or None
        if tags is not None and not Path(tags).is_absolute():
            tags = base / tags
        a = read_sample(path, format=rec["format"], sample=str(sample),
                        bd_counts=rec.get("bd_counts", "") or "auto", bd_sample_tags=tags,
                        genome=rec.get("genome", "") or None)
        for col in meta_cols:
            a.obs[col] = rec[col]
        parts.append(a)
    genes = [set(a.var_names) for a in parts]
    shared = set.intersection(*genes)
    union = set.union(*genes)
    if len(shared) < len(union):
        msg = f"{len(union) - len(shared)} of {len(union)} genes are missing from some samples"
        if join == "inner":
            if not shared:
                raise DegflowInputError(f"{source}: the samples share no gene names; were they quantified against "
                                        "different references (or some with IDs, some with symbols)?")
            log.warning("%s; keeping the %d shared genes (join='outer' keeps all)", msg, len(shared))
        else:
            log.warning("%s; they count 0 in the samples that lack them (join='outer')", msg)
    obsm = _concat_obsm(parts, pd.Index(np.concatenate([a.obs_names for a in parts])))
    for a in parts:
        a.obsm.clear()
        a.uns.clear()
    adata = ad.concat(parts, join=join, merge="same")
    adata.X = _as_csr(adata.X)
    for key, frame in obsm.items():
        adata.obsm[key] = frame
    adata.obs["sample"] = pd.Categorical(adata.obs["sample"], categories=[str(s) for s in sheet.index])
    for col in meta_cols:
        if adata.obs[col].dtype == object:
            adata.obs[col] = pd.Categorical(adata.obs[col], categories=list(dict.fromkeys(sheet[col])))
    adata.uns["degflow"] = {"read": {
        "samples": [str(s) for s in sheet.index],
        "paths": [str(p) for p in sheet["path"]],
        "formats": [str(f) for f in sheet["format"]],
        "n_cells": [int((adata.obs["sample"] == s).sum()) for s in sheet.index],
    }}
    return adata
