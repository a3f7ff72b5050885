"""Wall time per single-cell step on PBMC 3k: degflow vs the scanpy tutorial, side by side.

Usage::

    python benchmarks/singlecell.py [--repeat 3] [--threads 2] [--data resources/pbmc3k/filtered_min3cells_v3]

Both pipelines run the scanpy legacy PBMC 3k recipe (QC 200/2500/5 %, HVG ``seurat``
0.0125/3/0.5, regress out total counts and % MT, scale to 10, ARPACK PCA, 10 neighbours on 40
PCs, igraph Leiden at 0.5 and 1.0, UMAP, Wilcoxon markers at 1.0). A first untimed pass
compiles numba; then each step's median over ``--repeat`` passes is printed with the ratio
degflow / scanpy, and the end-to-end results (cells, HVGs, clusters, ARI vs the Seurat labels)
to show both computed the same thing. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def scanpy_tutorial(path: Path, timings: dict[str, float]) -> dict:
    import scanpy as sc

    def step(name, fn):
        t = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t
        return out

    a = step("read", lambda: sc.read_10x_mtx(path))
    a.var_names_make_unique()

    def qc():
        nonlocal a
        sc.pp.filter_cells(a, min_genes=200)
        sc.pp.filter_genes(a, min_cells=3)
        a.var["mt"] = a.var_names.str.startswith("MT-")
        sc.pp.calculate_qc_metrics(a, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
        a = a[(a.obs.n_genes_by_counts < 2500) & (a.obs.pct_counts_mt < 5)].copy()

    step("qc", qc)
    step("normalize", lambda: (sc.pp.normalize_total(a, target_sum=1e4), sc.pp.log1p(a)))
    step("hvg", lambda: sc.pp.highly_variable_genes(a, min_mean=0.0125, max_mean=3, min_disp=0.5))
    n_hvg = int(a.var.highly_variable.sum())
    a.raw = a
    b = a[:, a.var.highly_variable].copy()

    def pca():
        sc.pp.regress_out(b, ["total_counts", "pct_counts_mt"])
        sc.pp.scale(b, max_value=10)
        sc.tl.pca(b, svd_solver="arpack")

    step("pca", pca)
    step("neighbors", lambda: sc.pp.neighbors(b, n_neighbors=10, n_pcs=40))
    step("leiden", lambda: [sc.tl.leiden(b, resolution=r, flavor="igraph", n_iterations=2, directed=False,
                                         random_state=0, key_added=f"leiden_{r}") for r in (0.5, 1.0)])
    step("umap", lambda: sc.tl.umap(b))
    step("markers", lambda: sc.tl.rank_genes_groups(b, "leiden_1.0", method="wilcoxon"))
    return {"cells": b.n_obs, "hvg": n_hvg, "clusters": b.obs["leiden_1.0"].nunique(), "labels": b.obs["leiden_1.0"]}


def degflow_pipeline(path: Path, timings: dict[str, float], n_threads: int) -> dict:
    from degflow.io.singlecell import read_sample
    from degflow.singlecell.annotate import markers
    from degflow.singlecell.process import highly_variable, leiden, neighbors, normalize, pca, umap
    from degflow.singlecell.qc import qc_filter

    def step(name, fn):
        t = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - t
        return out

    a = step("read", lambda: read_sample(path))
    a, _ = step("qc", lambda: qc_filter(a, min_genes=200, max_genes=2500, max_pct_mt=5, min_cells=3))
    step("normalize", lambda: normalize(a, target_sum=1e4, n_threads=n_threads))
    step("hvg", lambda: highly_variable(a, flavor="seurat", n_top_genes=None, batch_key=None))
    step("pca", lambda: pca(a, n_comps=50, regress_out=["total_counts", "pct_counts_mt"], scale_max=10,
                            n_threads=n_threads))
    step("neighbors", lambda: neighbors(a, n_neighbors=10, n_pcs=40))
    step("leiden", lambda: leiden(a, resolutions=(0.5, 1.0)))
    step("umap", lambda: umap(a, n_threads=n_threads))
    step("markers", lambda: markers(a, "leiden_1.0"))
    return {"cells": a.n_obs, "hvg": int(a.var.highly_variable.sum()), "clusters": a.obs["leiden_1.0"].nunique(),
            "labels": a.obs["leiden_1.0"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--data", type=Path, default=REPO / "resources" / "pbmc3k" / "filtered_min3cells_v3")
    args = parser.parse_args()

    from degflow.runtime import configure_runtime

    configure_runtime(n_threads=args.threads)
    warnings.simplefilter("ignore")
    import pandas as pd
    import scanpy as sc
    from sklearn.metrics import adjusted_rand_score
    from threadpoolctl import threadpool_info

    sc.settings.verbosity = 0
    labels = pd.read_csv(args.data.parent / "seurat_pbmc3k_final_annotations.csv", index_col=0)["seurat_annotation"]
    blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i['num_threads']} thr)" for i in threadpool_info())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, python "
          f"{sys.version.split()[0]}; BLAS: {blas}")
    print(f"threads: {args.threads}; data: {args.data}")

    print("warm-up (numba compile) ...", flush=True)
    scanpy_tutorial(args.data, {})
    degflow_pipeline(args.data, {}, args.threads)

    times: dict[str, dict[str, list[float]]] = {"scanpy": defaultdict(list), "degflow": defaultdict(list)}
    results = {}
    for _ in range(args.repeat):
        for name, fn in (("scanpy", lambda t: scanpy_tutorial(args.data, t)),
                         ("degflow", lambda t: degflow_pipeline(args.data, t, args.threads))):
            t: dict[str, float] = {}
            results[name] = fn(t)
            for k, v in t.items():
                times[name][k].append(v)

    steps = list(times["scanpy"])
    print(f"\nmedian wall time over {args.repeat} runs (s)")
    print(f"{'step':<11}{'scanpy':>9}{'degflow':>9}{'ratio':>8}")
    tot = {"scanpy": 0.0, "degflow": 0.0}
    for s in steps:
        a, b = statistics.median(times["scanpy"][s]), statistics.median(times["degflow"][s])
        tot["scanpy"] += a
        tot["degflow"] += b
        print(f"{s:<11}{a:>9.2f}{b:>9.2f}{b / a:>8.2f}")
    print(f"{'total':<11}{tot['scanpy']:>9.2f}{tot['degflow']:>9.2f}{tot['degflow'] / tot['scanpy']:>8.2f}")
    print()
    for name, r in results.items():
        lab = labels.reindex(r["labels"].index)
        print(f"{name:<8} cells {r['cells']}, HVGs {r['hvg']}, clusters at 1.0: {r['clusters']}, "
              f"ARI vs Seurat {adjusted_rand_score(lab, r['labels']):.3f}")


if __name__ == "__main__":
    main()
