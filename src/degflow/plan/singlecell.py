"""Single-cell planning: the ``singlecell`` section against its sample sheet, before the DAG
(``workflow/rules/singlecell_common.smk``), and what the rules read from the plan.

=============================  ==========================================================================
:func:`plan_singlecell`        the sheet (paths, formats), HVG, batch, integration, PCA, clusterings,
                               annotation, reference
:func:`check_reference`        ``singlecell.reference``: an .h5ad with the label column
:func:`sample_gb`              GB of raw input per sample (what memory and time requests grow with)
:func:`marker_groupings`       the obs columns with one marker table each
:func:`umap_panels`            the UMAP figures and the obs columns each colours
:func:`goi_groupby`            the grouping of the genes-of-interest figures
:func:`singlecell_targets`     the final outputs of the single-cell rules (``rule all``)
:func:`reader_rows`            each sample's reader columns (the gene-filter rule's params)
:func:`process_params`         ``degflow.singlecell.process.process``'s options from the config
:func:`qc_thresholds`          the QC threshold lines of the violin plots
=============================  ==========================================================================
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from degflow.errors import DegflowInputError

#: obs columns a single-cell run always has (QC metrics, doublet scores) besides the sheet's metadata.
SC_OBS_METRICS = ("n_genes_by_counts", "total_counts", "log1p_n_genes_by_counts", "log1p_total_counts",
                  "total_counts_mt", "pct_counts_mt", "total_counts_ribo", "pct_counts_ribo", "total_counts_hb",
                  "pct_counts_hb", "doublet_score")


def _check_sc_path(path: Path, fmt: str, where: str) -> None:
    """Stop when a single-cell count path does not fit its declared format, or is an unreadable HDF5 file.

    ``10x_mtx`` takes the folder (or its ``matrix.mtx[.gz]``), ``bd_rhapsody`` a folder or CSV, ``10x_h5`` and
    ``h5ad`` a file; an ``.h5``/``.h5ad`` file (or one declared so) must open as HDF5.
    """
    import h5py

    name = path.name.lower()
    if path.is_dir() and fmt in ("10x_h5", "h5ad"):
        raise DegflowInputError(f"{where}: format {fmt} takes a file but '{path}' is a folder; set format to "
                                "10x_mtx (a folder with matrix.mtx) or auto, or give the .h5 file")
    if path.is_file() and fmt == "10x_mtx" and not name.endswith((".mtx", ".mtx.gz")):
        looks = " (an HDF5 file: use format 10x_h5 or h5ad)" if h5py.is_hdf5(path) else ""
        raise DegflowInputError(f"{where}: format 10x_mtx takes the folder holding matrix.mtx, features.tsv and "
                                f"barcodes.tsv, but '{path}' is a file{looks}; fix the path or the format")
    h5_like = fmt in ("10x_h5", "h5ad") or (fmt == "auto" and name.endswith((".h5", ".h5ad", ".hdf5")))
    if path.is_file() and h5_like:
        try:
            with h5py.File(path, "r") as f:
                list(f.keys())
                for key in ("matrix", "X", "obs"):
                    if key in f:
                        f[key]  # noqa: B018 - opening the group reads its header
        except (OSError, KeyError, RuntimeError) as exc:
            reason = str(exc).split(";")[0].split("(")[0].strip() or type(exc).__name__
            raise DegflowInputError(f"{where}: '{path}' is not a readable HDF5 file ({reason}): a truncated or "
                                    "corrupt copy? copy it again (its size should match the source)") from None


@dataclass
class SingleCellPlan:
    """What the single-cell rules need, after validation."""

    samples: list[str]
    sheet: pd.DataFrame
    files: dict[str, list[str]]
    metadata: dict[str, list[str]]
    clusterings: list[str]
    annotation_key: str | None
    reference: bool = False


def plan_singlecell(sc_cfg: Mapping) -> SingleCellPlan:
    """Check the single-cell section beyond types (run at parse time, before the DAG).

    Parameters
    ----------
    sc_cfg
        ``CFG["singlecell"]`` after :func:`degflow.plan.schema.validate_config` (defaults filled in).

    Returns
    -------
    SingleCellPlan
        ``samples`` (sheet order); ``sheet`` (validated, indexed by sample, strings); ``files``: the input
        files of each sample (a directory's files, so editing one re-runs that sample); ``metadata``: obs
        column -> categories in sheet order (``sample`` and every metadata column such as ``condition``);
        ``clusterings``: the ``leiden_<resolution>`` columns; ``annotation_key``: the clustering named from
        the marker YAML (None without ``markers``).

    Raises
    ------
    DegflowInputError
        Missing or malformed sheet (duplicate or empty sample names, unknown format, non-numeric QC
        override), a path that does not exist, a missing marker YAML, an annotation resolution not among
        ``leiden_resolutions``, an HVG flavour that needs ``n_top_genes`` without it, a ``batch_key`` or
        ``pca.regress_out`` column that will not exist, Harmony without harmonypy.
    """
    from degflow.io.singlecell import QC_OVERRIDE_COLUMNS, READER_COLUMNS, read_sample_sheet
    from degflow.singlecell.annotate import load_markers
    from degflow.singlecell.process import leiden_key

    source = sc_cfg["samples"]
    sheet = read_sample_sheet(source)
    files: dict[str, list[str]] = {}
    for row, (sample, rec) in enumerate(sheet.iterrows(), start=2):
        where = f"single-cell sample sheet '{source}', row {row} (sample '{sample}')"
        path = Path(rec["path"])
        if not path.exists():
            raise DegflowInputError(f"{where}: path '{path}' does not exist; fix it (relative paths start where "
                                    "snakemake runs)")
        _check_sc_path(path, str(rec.get("format", "auto") or "auto"), where)
        found = sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) \
            if path.is_dir() else [str(path)]
        tags = rec.get("bd_sample_tags", "")
        if tags:
            if not Path(tags).is_file():
                raise DegflowInputError(f"{where}: bd_sample_tags file '{tags}' does not exist; fix or empty it")
            found.append(str(tags))
        files[str(sample)] = found
    meta_cols = [c for c in sheet.columns if c not in READER_COLUMNS and c not in QC_OVERRIDE_COLUMNS]
    metadata = {"sample": [str(s) for s in sheet.index]}
    metadata.update({c: list(dict.fromkeys(sheet[c].astype(str))) for c in meta_cols})

    hvg = sc_cfg["hvg"]
    if hvg["flavor"] in ("seurat_v3", "pearson_residuals") and hvg["n_top_genes"] is None:
        raise DegflowInputError(f"config key 'singlecell.hvg.n_top_genes': flavor {hvg['flavor']} needs a number "
                                "(e.g. 2000); null is only for flavor seurat or cell_ranger")
    batch = sc_cfg["batch_key"]
    if batch is not None and batch not in metadata:
        raise DegflowInputError(f"config key 'singlecell.batch_key': '{batch}' is not 'sample' nor a column of "
                                f"'{source}' (columns: {', '.join(metadata)})")
    if sc_cfg["integration"] == "harmony":
        import importlib.util

        if batch is None or len(set(metadata[batch])) < 2:
            raise DegflowInputError("config key 'singlecell.integration': harmony needs singlecell.batch_key with "
                                    f"at least two batches (batch_key: {batch}); set integration to none")
        if importlib.util.find_spec("harmonypy") is None:
            raise DegflowInputError("config key 'singlecell.integration': harmony needs the harmonypy package "
                                    "(pip install harmonypy==2.1.0), or set it to none")
    for col in sc_cfg["pca"]["regress_out"]:
        if col not in SC_OBS_METRICS and col not in metadata:
            near = difflib.get_close_matches(col, [*SC_OBS_METRICS, *metadata], n=1)
            raise DegflowInputError(f"config key 'singlecell.pca.regress_out': '{col}' is not an obs column"
                                    + (f"; did you mean '{near[0]}'?" if near else
                                       f" (QC metrics: {', '.join(SC_OBS_METRICS)})"))

    n_pcs, n_comps = sc_cfg["neighbors"].get("n_pcs"), sc_cfg["pca"].get("n_comps")
    if n_pcs is not None and n_comps is not None and int(n_pcs) > int(n_comps):
        raise DegflowInputError(f"config key 'singlecell.neighbors.n_pcs': {n_pcs} is more than the "
                                f"{n_comps} components computed (singlecell.pca.n_comps); lower n_pcs to at most "
                                f"{n_comps} or raise pca.n_comps")
    resolutions = [float(r) for r in sc_cfg["leiden_resolutions"]]
    clusterings = [leiden_key(r) for r in resolutions]
    annotation_key = None
    if sc_cfg["markers"]:
        load_markers(sc_cfg["markers"])
        res = sc_cfg["annotation"]["resolution"]
        if res is not None and float(res) not in resolutions:
            raise DegflowInputError(f"config key 'singlecell.annotation.resolution': {res} is not one of "
                                    f"singlecell.leiden_resolutions {resolutions}")
        annotation_key = leiden_key(max(resolutions) if res is None else float(res))
    reference = sc_cfg.get("reference")
    if reference:
        check_reference(reference["path"], reference["label_key"])
    from degflow.singlecell.ondisk import check_config as check_on_disk

    check_on_disk(sc_cfg)  # singlecell.scale.on_disk: true with a step the on-disk path lacks
    return SingleCellPlan(samples=metadata["sample"], sheet=sheet, files=files, metadata=metadata,
                          clusterings=clusterings, annotation_key=annotation_key, reference=bool(reference))


def check_reference(path: str, label_key: str) -> None:
    """The reference of ``singlecell.reference`` exists, is an .h5ad and has ``obs[label_key]`` (reads only obs).

    Raises
    ------
    DegflowInputError
        Missing file, not an h5ad, ``label_key`` not an obs column or without any label.
    """
    import anndata as ad
    import h5py

    key = "config key 'singlecell.reference"
    if not Path(path).is_file():
        raise DegflowInputError(f"{key}.path': '{path}' does not exist; give a labelled .h5ad with raw counts "
                                "(relative paths start where snakemake runs)")
    try:
        with h5py.File(path, "r") as fh:
            obs = ad.io.read_elem(fh["obs"])
    except (OSError, KeyError) as e:
        raise DegflowInputError(f"{key}.path': '{path}' is not an .h5ad AnnData file ({e})") from None
    if label_key not in obs.columns:
        raise DegflowInputError(f"{key}.label_key': '{label_key}' is not an obs column of '{path}' (columns: "
                                f"{', '.join(map(str, obs.columns))})")
    if obs[label_key].isna().all():
        raise DegflowInputError(f"{key}.label_key': obs['{label_key}'] of '{path}' holds no label")


# ----------------------------------------------------------------------------------------------
# what the rules read (singlecell_common.smk)
# ----------------------------------------------------------------------------------------------
def sample_gb(plan: SingleCellPlan) -> dict[str, float]:
    """GB of raw count files per sample (a directory: its files), what single-cell memory and time grow with.

    Parameters
    ----------
    plan
        From :func:`plan_singlecell`.

    Returns
    -------
    dict[str, float]
        Sample -> GB (1e9 bytes), sheet order.
    """
    return {s: sum(Path(f).stat().st_size for f in plan.files[s] if Path(f).is_file()) / 1e9 for s in plan.samples}


def marker_groupings(plan: SingleCellPlan, *, reference: bool) -> list[str]:
    """The obs columns with one marker table and dot plot each.

    Parameters
    ----------
    plan
        From :func:`plan_singlecell`.
    reference
        Whether ``singlecell.reference`` is set (``cell_type_reference`` exists).

    Returns
    -------
    list[str]
        Every Leiden clustering, ``cell_type`` when annotated from the markers, ``cell_type_reference`` with a
        reference.
    """
    groupings = plan.clusterings + (["cell_type"] if plan.annotation_key else [])
    if reference:
        groupings = groupings + ["cell_type_reference"]
    return groupings


def umap_panels(plan: SingleCellPlan, *, reference: bool, doublets: bool) -> dict[str, list[str]]:
    """The UMAP figures: name -> the obs columns it colours (one panel each).

    Parameters
    ----------
    plan
        From :func:`plan_singlecell`.
    reference
        Whether ``singlecell.reference`` is set.
    doublets
        Whether doublets are scored (``singlecell.doublets.method`` is not ``none``).

    Returns
    -------
    dict[str, list[str]]
        ``clusters``, ``cell_type`` (annotated), ``cell_type_reference`` (reference), ``sample``, ``condition`` /
        ``donor`` / ``batch`` when the sheet has them, ``qc``.
    """
    umaps = {"clusters": plan.clusterings}
    if plan.annotation_key:
        umaps["cell_type"] = ["cell_type"]
    if reference:
        umaps["cell_type_reference"] = ["cell_type_reference", "cell_type_reference_confidence"]
    umaps["sample"] = ["sample"]
    for col in ("condition", "donor", "batch"):
        if col in plan.metadata:
            umaps[col] = [col]
    umaps["qc"] = ["n_genes_by_counts", "total_counts", "pct_counts_mt"] + (["doublet_score"] if doublets else [])
    return umaps


def goi_groupby(sc_cfg: Mapping, plan: SingleCellPlan) -> str:
    """The grouping of the single-cell genes-of-interest figures.

    Parameters
    ----------
    sc_cfg
        ``CFG["singlecell"]`` (defaults filled in).
    plan
        From :func:`plan_singlecell`.

    Returns
    -------
    str
        The pseudobulk cell types (``singlecell.pseudobulk.groupby``), else ``cell_type``, ``cell_type_reference`` or
        the last clustering.
    """
    if sc_cfg.get("pseudobulk"):
        return sc_cfg["pseudobulk"]["groupby"]
    if plan.annotation_key:
        return "cell_type"
    return "cell_type_reference" if sc_cfg.get("reference") else plan.clusterings[-1]


def singlecell_targets(sc_dir: str, *, plan: SingleCellPlan, groupings: list[str], umaps: Mapping[str, list[str]],
                       genes_of_interest: bool, reference: bool) -> list[str]:
    """The final outputs of the single-cell rules (targets of ``rule all``).

    Parameters
    ----------
    sc_dir
        ``<results>/singlecell``.
    plan
        From :func:`plan_singlecell`.
    groupings, umaps
        :func:`marker_groupings` and :func:`umap_panels`.
    genes_of_interest, reference
        Whether ``singlecell.genes_of_interest`` / ``singlecell.reference`` are set.

    Returns
    -------
    list[str]
        The paths, the data and QC tables first.
    """
    out = [f"{sc_dir}/adata.h5ad", f"{sc_dir}/qc/genes.tsv", f"{sc_dir}/cluster_sizes.tsv",
           f"{sc_dir}/cluster_sizes.html", f"{sc_dir}/qc/cells_removed.tsv", f"{sc_dir}/qc/cells_removed.html"]
    out += [f"{sc_dir}/qc/{kind}_{stage}.png" for kind in ("violin", "scatter") for stage in ("before", "after")]
    out += [f"{sc_dir}/umap/{umap}.png" for umap in umaps]
    out += [f"{sc_dir}/markers/{g}{ext}" for g in groupings for ext in (".tsv", ".html", "_dotplot.png")]
    if plan.annotation_key:
        out += [f"{sc_dir}/annotation_scores.tsv", f"{sc_dir}/annotation_scores.html",
                f"{sc_dir}/markers/annotation_dotplot.png"]
    if genes_of_interest:
        out += [f"{sc_dir}/genes_of_interest/{name}.png" for name in ("umap", "dotplot", "violin")]
        out += [f"{sc_dir}/genes_of_interest/genes.tsv"]
    if reference:
        out += [f"{sc_dir}/reference/labels.tsv", f"{sc_dir}/reference/summary.tsv",
                f"{sc_dir}/reference/summary.html"]
    return out


def reader_rows(plan: SingleCellPlan) -> list[dict[str, Any]]:
    """Every sample's name and reader columns (path, format, BD/10x options) as dicts, sheet order.

    Metadata and QC-override columns are left out, so editing them does not re-run the gene filter.

    Parameters
    ----------
    plan
        From :func:`plan_singlecell`.

    Returns
    -------
    list[dict]
        ``{"sample": ..., "path": ..., "format": ..., ...}`` per sample.
    """
    cols = [c for c in ("path", "format", "bd_counts", "bd_sample_tags", "genome") if c in plan.sheet.columns]
    return [{"sample": s, **plan.sheet.loc[s, cols].to_dict()} for s in plan.samples]


def process_params(sc_cfg: Mapping) -> dict[str, Any]:
    """The keyword arguments of :func:`degflow.singlecell.process.process` from the config.

    Parameters
    ----------
    sc_cfg
        ``CFG["singlecell"]`` (defaults filled in).

    Returns
    -------
    dict
        ``target_sum``, the HVG, batch, PCA, neighbour and Leiden settings, ``seed``.
    """
    hvg, pca, nn = sc_cfg["hvg"], sc_cfg["pca"], sc_cfg["neighbors"]
    return {
        "target_sum": sc_cfg["normalize"]["target_sum"],
        "hvg_flavor": hvg["flavor"],
        "n_top_genes": hvg["n_top_genes"],
        "min_mean": hvg["min_mean"],
        "max_mean": hvg["max_mean"],
        "min_disp": hvg["min_disp"],
        "hvg_span": hvg["span"],
        "batch_key": sc_cfg["batch_key"],
        "integration": sc_cfg["integration"],
        "regress_out": pca["regress_out"],
        "scale_max": pca["scale_max"],
        "n_comps": pca["n_comps"],
        "n_neighbors": nn["n_neighbors"],
        "n_pcs": nn["n_pcs"],
        "knn": nn["knn"],
        "resolutions": sc_cfg["leiden_resolutions"],
        "seed": sc_cfg["seed"],
    }


def qc_thresholds(sc_cfg: Mapping) -> dict[str, list]:
    """The QC threshold lines drawn on the violins.

    Parameters
    ----------
    sc_cfg
        ``CFG["singlecell"]`` (defaults filled in).

    Returns
    -------
    dict[str, list]
        Metric -> threshold values (``n_genes_by_counts``: min and max genes; ``pct_counts_mt``: the maximum).
    """
    qc = sc_cfg["qc"]
    return {"n_genes_by_counts": [qc["min_genes"], qc["max_genes"]], "pct_counts_mt": [qc["max_pct_mt"]]}
