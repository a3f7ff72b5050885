"""The on-disk single-cell path against the in-memory one on Kang 2018 (16 samples, real cells): cluster ARI.

Usage::

    DEGFLOW_SHARED_DATA=/work/shared/data python benchmarks/singlecell_ondisk_kang.py [--out /tmp/kang_ondisk]

Reads the 16 Kang 10x files, keeps the genes of >= 3 cells and the cells with >= 200 genes (the example's QC;
no doublet step: both paths start from the same merged counts), then processes them with the settings of
config/examples/kang2018.yaml (seurat_v3 HVGs by sample, 50 PCs, Harmony, 10 neighbours on 40 PCs, Leiden 0.5
and 1.0) in memory (degflow.singlecell.process.process) and on disk (degflow.singlecell.ondisk.process, 5,000 cells per
chunk), and prints the ARI of each clustering, the HVG overlap, the PCA agreement and the pseudobulk sums check.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))


def main() -> None:
    import anndata as ad
    import numpy as np
    import pandas as pd
    from sklearn.metrics import adjusted_rand_score

    from degflow.io import singlecell as sc_io
    from degflow.pseudobulk import aggregate as pseudobulk
    from degflow.singlecell import ondisk
    from degflow.singlecell import process as scm
    from degflow.singlecell import qc as sc_qc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/kang_ondisk")
    ap.add_argument("--chunk-cells", type=int, default=5000)
    args = ap.parse_args()
    data = Path(os.environ.get("DEGFLOW_SHARED_DATA", REPO.parent / "shared" / "data")) / "kang2018_ifnb_8donors_h5"
    sheet = pd.read_csv(REPO / "config/examples/kang2018_samples.tsv", sep="\t")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = []
    for row in sheet.itertuples():
        a = sc_io.read_sample(data / Path(row.path).name, sample=row.sample)
        a.obs["sample"], a.obs["condition"], a.obs["donor"] = row.sample, row.condition, str(row.donor)
        parts.append(a)
    adata = ad.concat(parts, join="inner", merge="same")
    adata.obs["sample"] = pd.Categorical(adata.obs["sample"].astype(str), categories=list(sheet["sample"]))
    kept, _ = sc_qc.qc_filter(adata, min_genes=200, max_genes=None, max_pct_mt=None, min_cells=3)
    kept.write_h5ad(out / "merged.h5ad")
    print(f"Kang 2018: {kept.n_obs} cells x {kept.n_vars} genes after QC (real cells, no resampling)")
    params = {"target_sum": 1e4, "hvg_flavor": "seurat_v3", "n_top_genes": 2000, "batch_key": "sample",
              "scale_max": 10.0, "n_comps": 50, "integration": "harmony", "n_neighbors": 10, "n_pcs": 40,
              "knn": "auto", "resolutions": [0.5, 1.0], "seed": 0, "run_umap": False}
    mem = kept.copy()
    scm.process(mem, **params, n_threads=2)
    ondisk.process(out / "merged.h5ad", out / "processed.h5ad", **params, chunk_cells=args.chunk_cells,
                   n_threads=2)
    disk = ad.read_h5ad(out / "processed.h5ad")
    hv_m, hv_d = mem.var["highly_variable"], disk.var["highly_variable"]
    print(f"HVGs: {int(hv_m.sum())} in memory, {int(hv_d.sum())} on disk, {int((hv_m & hv_d).sum())} shared")
    r = [abs(np.corrcoef(mem.obsm["X_pca"][:, k], disk.obsm["X_pca"][:, k])[0, 1]) for k in range(40)]
    diff = float(np.abs(mem.obsm["X_pca"] - disk.obsm["X_pca"]).max())
    print(f"PCA: min |correlation| of the first 40 components {min(r):.6f}; largest |difference| {diff:.2e} "
          f"(of values up to {float(np.abs(mem.obsm['X_pca']).max()):.1f})")
    for key in ("leiden_0.5", "leiden_1.0"):
        print(f"{key}: ARI on disk vs in memory {adjusted_rand_score(mem.obs[key], disk.obs[key]):.4f} "
              f"({mem.obs[key].nunique()} vs {disk.obs[key].nunique()} clusters)")
    ref = pseudobulk.aggregate(mem, groupby="leiden_1.0", sample_key="sample", min_cells=10, min_counts=1000)
    disk.obs["leiden_1.0"] = mem.obs["leiden_1.0"].to_numpy()
    disk.write_h5ad(out / "labelled.h5ad")
    got = ondisk.aggregate(out / "labelled.h5ad", groupby="leiden_1.0", sample_key="sample",
                           chunk_cells=args.chunk_cells)
    same = got.X.shape == ref.X.shape and (got.X != ref.X).nnz == 0 and got.obs.equals(ref.obs)
    print(f"pseudobulk sums (same labels): {'identical' if same else 'DIFFERENT'} ({ref.n_obs} pseudo-samples)")


if __name__ == "__main__":
    main()
