"""The on-disk single-cell path (degflow.singlecell.ondisk) against the in-memory one, on the bundled PBMC 3k.

The 2,700 real PBMC 3k cells (resources/pbmc3k) pass the tutorial QC, then are cut in two halves (barcode order) that
play two samples: a technical split, so that the per-batch HVG statistics, the merge and the pseudobulk sums of
several samples are exercised. Each half is written as the workflow's per-sample ``cells.h5ad``; both paths start from
them. What must hold: the merged counts are the same; the HVGs are the same genes; the PCA is the same up to float
rounding and so is the kNN graph; the Leiden clusters agree as far as Leiden's sensitivity to float rounding allows
(see test_process_matches_in_memory); the pseudobulk sums are identical; markers are the in-memory table when no
group is capped; and the chunk size changes nothing. test_workflow_on_disk runs the workflow's on-disk path on PBMC 3k.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from degflow.errors import DegflowInputError
from degflow.io import singlecell as sc_io
from degflow.io.singlecell import validate_sample_sheet
from degflow.pseudobulk import aggregate as pseudobulk
from degflow.singlecell import annotate as sc_annotate
from degflow.singlecell import ondisk
from degflow.singlecell import process as scm
from degflow.singlecell import qc as sc_qc
from degflow.singlecell.annotate import annotate, load_markers

PARAMS = {"target_sum": 1e4, "hvg_flavor": "seurat_v3", "n_top_genes": 2000, "batch_key": "sample",
          "scale_max": 10.0, "n_comps": 50, "n_neighbors": 10, "n_pcs": 40, "knn": "exact",
          "resolutions": [1.0], "seed": 0, "run_umap": False}


@pytest.fixture(scope="module")
def samples(repo, tmp_path_factory):
    """Two per-sample cells.h5ad files (the two halves of QC-passed PBMC 3k) and the in-memory merge of them."""
    work = tmp_path_factory.mktemp("ondisk")
    adata = sc_io.read_sample(repo / "resources/pbmc3k/filtered_min3cells_v3", sample="pbmc3k")
    kept, _ = sc_qc.qc_filter(adata, min_genes=200, max_genes=2500, max_pct_mt=5.0, min_cells=3)
    half = kept.n_obs // 2
    paths = []
    for name, part in (("a", kept[:half]), ("b", kept[half:])):
        part = part.copy()
        part.obs["sample"] = name
        part.obs["condition"] = "healthy"
        del part.uns["degflow"]["qc_filter"]  # per sample tables differ: uns_merge="same" drops them either way
        sc_qc.qc_metrics(part)
        paths.append(work / f"{name}.h5ad")
        part.write_h5ad(paths[-1])
    merged = ad.concat([ad.read_h5ad(p) for p in paths], join="inner", merge="same", uns_merge="same")
    merged.obs["sample"] = pd.Categorical(merged.obs["sample"].astype(str), categories=["a", "b"])
    sc_qc.qc_metrics(merged)
    return work, paths, merged


@pytest.fixture(scope="module")
def both(samples):
    """The in-memory and the on-disk processing (and the on-disk one with another chunk size)."""
    work, paths, merged = samples
    ondisk.merge(paths, work / "merged.h5ad", categories={"sample": ["a", "b"]})
    mem = merged.copy()
    scm.process(mem, **PARAMS, n_threads=1)
    disk = {}
    for chunk in (500, 100_000):
        ondisk.process(work / "merged.h5ad", work / f"processed_{chunk}.h5ad", **PARAMS, chunk_cells=chunk,
                       n_threads=1)
        disk[chunk] = ad.read_h5ad(work / f"processed_{chunk}.h5ad")
    return mem, disk


def test_merge_is_the_in_memory_merge(samples):
    work, paths, merged = samples
    meta = ondisk.merge(paths, work / "merged_check.h5ad", categories={"sample": ["a", "b"]})
    disk = ad.read_h5ad(work / "merged_check.h5ad")
    assert ondisk.h5ad_cells(paths) == merged.n_obs == disk.n_obs == meta.n_obs
    assert (disk.X != merged.X).nnz == 0
    pd.testing.assert_frame_equal(disk.obs, merged.obs)
    assert list(disk.var.columns) == list(merged.var.columns) or set(disk.var.columns) == set(merged.var.columns)
    for col in ("n_cells_by_counts", "mean_counts", "pct_dropout_by_counts", "total_counts", "mt", "ribo", "hb"):
        np.testing.assert_allclose(disk.var[col].to_numpy(dtype=float), merged.var[col].to_numpy(dtype=float),
                                   rtol=1e-6, err_msg=col)


def test_process_matches_in_memory(both):
    mem, disk = both
    d = disk[500]
    assert (d.layers["counts"] != mem.layers["counts"]).nnz == 0
    assert abs(d.X - mem.X).max() < 1e-6
    assert d.var["highly_variable"].equals(mem.var["highly_variable"])
    np.testing.assert_allclose(d.var["variances_norm"], mem.var["variances_norm"], rtol=1e-6)
    # PCA: same components up to float rounding (ARPACK on the scaled matrix vs eigh of its covariance)
    np.testing.assert_allclose(d.uns["pca"]["variance"], mem.uns["pca"]["variance"], rtol=1e-4)
    for k in range(20):
        r = np.corrcoef(d.obsm["X_pca"][:, k], mem.obsm["X_pca"][:, k])[0, 1]
        assert r > 0.999, (k, r)  # same sign too (svd_flip convention)
    # the same PCA (degflow.singlecell.process.covariance_pca in both paths): equal to float32 rounding
    rel = np.abs(d.obsm["X_pca"] - mem.obsm["X_pca"]).max(0) / np.abs(mem.obsm["X_pca"]).max(0)
    assert rel[:40].max() < 1e-5, rel
    # the same kNN graph: the same neighbours of every cell (weights to float rounding)
    same = (mem.obsp["distances"] > 0) != (d.obsp["distances"] > 0)
    assert same.nnz <= 0.001 * mem.obsp["distances"].nnz, same.nnz
    # the bar (Kang 2018 in benchmarks/singlecell_ondisk_kang.py: 1.000 at 0.5, 0.983 at 1.0)
    ari = adjusted_rand_score(mem.obs["leiden_1.0"], d.obs["leiden_1.0"])
    assert ari >= 0.95, ari
    assert d.uns["degflow"]["pca"]["on_disk"]


def test_chunk_size_changes_nothing(both):
    _, disk = both
    a, b = disk[500], disk[100_000]
    assert a.var["highly_variable"].equals(b.var["highly_variable"])
    np.testing.assert_allclose(a.obsm["X_pca"], b.obsm["X_pca"], atol=1e-4)
    assert (a.obs["leiden_1.0"].to_numpy() == b.obs["leiden_1.0"].to_numpy()).all()


def test_pseudobulk_sums_identical(both, tmp_path):
    mem, disk = both
    ref = pseudobulk.aggregate(mem, groupby="leiden_1.0", sample_key="sample", min_cells=10, min_counts=1000)
    d = disk[500]
    d.obs["leiden_1.0"] = mem.obs["leiden_1.0"].to_numpy()  # the same labels: the sums alone are compared
    d.write_h5ad(tmp_path / "labelled.h5ad")
    got = ondisk.aggregate(tmp_path / "labelled.h5ad", groupby="leiden_1.0", sample_key="sample", min_cells=10,
                           min_counts=1000, chunk_cells=333)
    assert got.X.dtype == ref.X.dtype == np.int64
    assert (got.X != ref.X).nnz == 0 and got.X.sum() == mem.layers["counts"].sum()
    pd.testing.assert_frame_equal(got.obs, ref.obs)


def test_markers_capped_and_uncapped(both, tmp_path):
    mem, disk = both
    path = tmp_path / "labelled.h5ad"
    d = disk[500]
    d.obs["leiden_1.0"] = mem.obs["leiden_1.0"].to_numpy()
    d.write_h5ad(path)
    table, capped = ondisk.markers(path, "leiden_1.0", n_genes=20, max_cells_per_group=10_000, chunk_cells=400)
    assert capped == {}
    ref = sc_annotate.markers(d, "leiden_1.0", n_genes=20)
    pd.testing.assert_frame_equal(table, ref)
    table, capped = ondisk.markers(path, "leiden_1.0", n_genes=20, max_cells_per_group=100)
    sizes = mem.obs["leiden_1.0"].value_counts()
    assert capped == {str(k): int(v) for k, v in sizes.items() if v > 100} and capped
    top = table[table["rank"] <= 5].groupby("group")["gene"].apply(set)
    ref_top = ref[ref["rank"] <= 20].groupby("group")["gene"].apply(set)
    overlap = np.mean([len(top[g] & ref_top[g]) / 5 for g in top.index])
    assert overlap >= 0.8, overlap  # the capped sample finds the same top markers


def test_on_disk_refuses_what_it_cannot_do(samples):
    work, *_ = samples
    with pytest.raises(DegflowInputError, match="not available on the on-disk path"):
        ondisk.process(work / "merged.h5ad", work / "x.h5ad", **{**PARAMS, "hvg_flavor": "seurat"})
    with pytest.raises(DegflowInputError, match="regress_out is not available"):
        ondisk.process(work / "merged.h5ad", work / "x.h5ad", **{**PARAMS, "regress_out": ["total_counts"]})
    with pytest.raises(DegflowInputError, match="on_disk must be auto, true or false"):
        ondisk.wanted("yes", 10)
    assert ondisk.wanted("auto", ondisk.ON_DISK_AUTO_CELLS + 1) and not ondisk.wanted("auto", 1000)


def test_genes_detected_one_sample_at_a_time(repo, tmp_path):
    """sc_genes reads one sample at a time: the table of scanpy's filter_genes on all samples read together, with
    the genes shared by all samples (a gene missing from one sample is dropped, as anndata's inner join)."""
    import scanpy as sc

    from degflow.singlecell.steps import detected_genes

    pbmc = sc_io.read_sample(repo / "resources/pbmc3k/filtered_min3cells_v3", sample="pbmc3k")
    first, second = pbmc[:1200].copy(), pbmc[1200:, 5:].copy()  # the second lacks the first 5 genes
    rows = []
    for name, part in (("a", first), ("b", second)):
        part.write_h5ad(tmp_path / f"{name}.h5ad")
        rows.append({"sample": name, "path": str(tmp_path / f"{name}.h5ad"), "format": "h5ad"})
    sheet = validate_sample_sheet(pd.DataFrame(rows), source="sheet")
    got = detected_genes(sheet, min_cells=10)  # the bundled genes are those of >= 3 cells already
    adata = sc_io.read_samples(sheet)
    kept, n_cells = sc.pp.filter_genes(adata, min_cells=10, inplace=False)
    assert len(got) == pbmc.n_vars - 5 and list(got["gene"]) == list(adata.var_names)
    assert (got["n_cells"].to_numpy() == n_cells).all() and (got["kept"].to_numpy() == kept).all()
    assert 0 < got["kept"].sum() < len(got)


@pytest.mark.workflow
def test_workflow_on_disk(repo, tmp_path):
    """The workflow's on-disk path (scale.on_disk: true) on PBMC 3k, 2 cores, up to the annotated AnnData and one
    marker dot plot: every on-disk step runs, the marker cap is announced, and the clusters are those of the library's
    in-memory processing of the same merged cells (ARI, as in test_process_matches_in_memory); the UMAP and dot plot
    figures are drawn from the light reading (obs, obsm, the plotted genes)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    sc_cfg = yaml.safe_load((repo / "config/config.yaml").read_text())["singlecell"]
    sc_cfg["markers"] = str(repo / sc_cfg["markers"])
    sheet = tmp_path / "samples.tsv"
    pd.DataFrame([{"sample": "pbmc3k", "path": str(repo / "resources/pbmc3k/filtered_min3cells_v3"),
                   "format": "10x_mtx", "condition": "healthy"}]).to_csv(sheet, sep="\t", index=False)
    sc_cfg["samples"] = str(sheet)
    sc_cfg["scale"] = {"on_disk": True, "chunk_cells": 700, "marker_cells_per_group": 300}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "singlecell": sc_cfg}))
    out = tmp_path / "results" / "singlecell"
    cmd = [str(Path(sys.executable).with_name("snakemake")), str(out / "adata.h5ad"), str(out / "umap/clusters.png"),
           str(out / "markers/leiden_0.5_dotplot.png"),
           "-s", str(repo / "Snakefile"), "--configfile", "config.yaml", "--cores", "2"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert "tested on a random 300 of their cells" in res.stderr
    adata = ad.read_h5ad(out / "adata.h5ad")
    assert adata.uns["degflow"]["normalize"]["on_disk"] and adata.uns["degflow"]["normalize"]["chunk_cells"] == 700
    assert "counts" in adata.layers and adata.obsm["X_umap"].shape == (adata.n_obs, 2)
    assert "cell_type" in adata.obs.columns
    # sc_annotate read the marker genes only and wrote a copy of processed.h5ad with the new obs and uns: the same
    # matrices, and the cell types of the library's annotate() on the whole in-memory AnnData
    processed = ad.read_h5ad(out / "processed.h5ad")
    assert (adata.X != processed.X).nnz == 0 and (adata.layers["counts"] != processed.layers["counts"]).nnz == 0
    assert adata.obs.drop(columns="cell_type").equals(processed.obs)
    used = adata.uns["degflow"]["annotate"]
    annotate(processed, load_markers(sc_cfg["markers"]), groupby=used["groupby"], min_score=used["min_score"],
             min_margin=used["min_margin"])
    assert (processed.obs["cell_type"] == adata.obs["cell_type"]).all()
    assert adata.uns["degflow"]["annotate"]["assignment"] == processed.uns["degflow"]["annotate"]["assignment"]
    markers = pd.read_csv(out / "markers/leiden_0.5.tsv", sep="\t")
    assert set(markers["group"].astype(str)) == set(adata.obs["leiden_0.5"].astype(str))
    merged = ad.read_h5ad(out / "merged.h5ad")
    p = sc_cfg
    scm.process(merged, target_sum=p["normalize"]["target_sum"], n_top_genes=p["hvg"]["n_top_genes"],
                batch_key=p["batch_key"], n_comps=p["pca"]["n_comps"], scale_max=p["pca"]["scale_max"],
                n_neighbors=p["neighbors"]["n_neighbors"], n_pcs=p["neighbors"]["n_pcs"],
                resolutions=p["leiden_resolutions"], seed=p["seed"], run_umap=False, n_threads=2)
    assert merged.var["highly_variable"].equals(adata.var["highly_variable"])
    assert adjusted_rand_score(merged.obs["leiden_0.5"], adata.obs["leiden_0.5"]) >= 0.95


def test_on_disk_config_checked_before_the_dag(repo, tmp_path):
    """on_disk: true with a flavour or a regression the on-disk path lacks stops at parse time, in one line."""
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from degflow.plan.schema import validate_config

    base = {"samples": str(repo / "config/singlecell_samples.tsv"), "scale": {"on_disk": True}}
    cfg = validate_config({"singlecell": {**base, "hvg": {"flavor": "seurat"}}})
    with pytest.raises(DegflowInputError, match="flavor seurat_v3 only"):
        ondisk.check_config(cfg["singlecell"])
    cfg = validate_config({"singlecell": {**base, "pca": {"regress_out": ["total_counts"]}}})
    with pytest.raises(DegflowInputError, match="has no regress_out"):
        ondisk.check_config(cfg["singlecell"])
    ondisk.check_config(validate_config({"singlecell": base})["singlecell"])  # the defaults are fine
    sheet = tmp_path / "samples.tsv"
    pd.DataFrame([{"sample": "pbmc3k", "path": str(repo / "resources/pbmc3k/filtered_min3cells_v3"),
                   "format": "10x_mtx"}]).to_csv(sheet, sep="\t", index=False)
    sc_cfg = {**base, "samples": str(sheet), "markers": None,
              "hvg": {"flavor": "seurat", "n_top_genes": None}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "singlecell": sc_cfg}))
    res = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-n", "-s", str(repo / "Snakefile"),
                          "--configfile", "config.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("degflow:")]
    assert len(lines) == 1 and "singlecell.scale.on_disk" in lines[0] and "Traceback" not in res.stderr
    assert not (tmp_path / "results").exists()
