"""Atlas-size single-cell benchmark: the workflow's on-disk path on N cells, per rule wall time and peak RSS,
then scanpy's in-memory recipe at growing N until it no longer fits.

Usage::

    DEGFLOW_SHARED_DATA=/work/shared/data python benchmarks/singlecell_scale.py --cells 100000 [--out /tmp/scale]
        [--cells-per-sample 15000] [--chunk-cells 20000] [--max-rss-gib 20] [--scanpy-max 0] [--cores 2]

**The input is a benchmark input, never a result.** It is made of the real UMIs of Kang et al. 2018 (16 samples,
the 10x files of ../shared/data/kang2018_ifnb_8donors_h5; cells with >= 200 genes) in ceil(N / cells-per-sample)
samples; sample j draws from Kang sample j mod 16 and keeps its condition and donor, so the pseudobulk design of
config/examples/kang2018.yaml (~ donor + condition, stim vs ctrl) holds. Each benchmark cell pools half of the
UMIs (binomial thinning, p = 1/2) of a real cell and of another real cell of the same sample and Leiden cluster
(in-memory path, resolution 1.0): plain resampling would put ~35 identical copies of every cell in a million, and
each cell's nearest neighbours would be its own copies (measured: 874 Leiden clusters on 20,000 resampled cells;
1,751 on 36,000 after thinning copies alone), a graph no real atlas has. The pooled cells keep Kang's clusters,
depth and sparsity. (PBMC 3k is left out: its one healthy donor would be a condition level confounded with its
donor and make the paired design singular.)

Then the workflow (config/examples/kang2018.yaml with this sample sheet and ``singlecell.scale.on_disk: true``)
runs on ``--cores`` cores, every job watched with psutil every 0.5 s: per rule the jobs, the summed and the longest
wall time and the peak RSS of its largest job. Any process above ``--max-rss-gib`` stops the run (the machine is
shared; nothing may OOM it). Then scanpy's in-memory recipe (normalize_total, log1p, seurat_v3 HVGs by sample,
scale to 10, ARPACK PCA, neighbours, Leiden, UMAP) on the first M merged cells, M = 100k, 200k, 400k, ... up to
``--scanpy-max`` (default N), stopped when its RSS passes ``--max-rss-gib``. The last line::

    cells=N peak_rss_gib=X wall_s=Y scanpy_max_cells=M scanpy_wall_s_at_M=Z
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
GIB = 1024**3


def build_input(n_cells: int, out: Path, *, per_sample: int, seed: int) -> Path:
    """Benchmark cells from the real UMIs of Kang 2018 (see the module docstring); returns the sample sheet."""
    import anndata as ad
    import pandas as pd

    from degflow.io import singlecell as sc_io
    from degflow.singlecell import process as scm

    data = Path(os.environ.get("DEGFLOW_SHARED_DATA", REPO.parent / "shared" / "data")) / "kang2018_ifnb_8donors_h5"
    sheet = pd.read_csv(REPO / "config/examples/kang2018_samples.tsv", sep="\t")
    # the real cells and their clusters (Leiden 1.0 of the in-memory path, per Kang sample below)
    parts = [sc_io.read_sample(data / Path(p).name, sample=s) for s, p in zip(sheet["sample"], sheet["path"],
                                                                             strict=True)]
    kang = ad.concat(parts, join="inner")
    kang.obs["sample"] = pd.Categorical([str(s) for s in kang.obs["sample"]], categories=list(sheet["sample"]))
    ng = np.diff(kang.X.tocsr().indptr)
    kang = kang[ng >= 200].copy()
    lab = kang[:, np.asarray((kang.X > 0).sum(axis=0)).ravel() >= 3].copy()
    scm.process(lab, n_top_genes=2000, batch_key="sample", resolutions=[1.0], run_umap=False, hvg_span=0.5)
    clusters = lab.obs["leiden_1.0"].to_numpy()
    counts = kang.X.tocsr().astype(np.float32)
    n_samples = max(1, -(-n_cells // per_sample))
    sizes = np.full(n_samples, n_cells // n_samples)
    sizes[: n_cells - sizes.sum()] += 1
    rng = np.random.default_rng(seed)
    folder = out / "input"
    folder.mkdir(parents=True, exist_ok=True)
    samples = kang.obs["sample"].to_numpy().astype(str)
    rows = []
    for j, size in enumerate(sizes):
        src = sheet.iloc[j % len(sheet)]
        own = np.flatnonzero(samples == src["sample"])
        a = rng.choice(own, size=int(size))
        b = np.empty_like(a)
        for c in np.unique(clusters[a]):  # b: a random cell of the same sample and cluster as a
            pool = own[clusters[own] == c]
            where = clusters[a] == c
            b[where] = rng.choice(pool, size=int(where.sum()))
        x = counts[a].copy(), counts[b].copy()
        for m in x:  # each UMI of either cell kept with probability 1/2 (binomial thinning)
            m.data = rng.binomial(m.data.astype(np.int64), 0.5).astype(np.float32)
        pooled = (x[0] + x[1]).tocsr()
        pooled.eliminate_zeros()
        name = f"{src['sample']}_r{j // len(sheet)}"
        part = ad.AnnData(pooled, var=pd.DataFrame(index=kang.var_names))
        part.obs_names = [f"{name}_{i}" for i in range(len(a))]
        path = folder / f"{name}.h5ad"
        part.write_h5ad(path)
        rows.append({"sample": name, "path": str(path), "format": "h5ad", "condition": src["condition"],
                     "donor": src["donor"]})
    path = out / "samples.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    print(f"benchmark input (NOT a result): {n_cells} cells in {n_samples} samples (seed {seed}) in {folder}, each "
          "pooling half of the UMIs of two real Kang 2018 cells of one sample and cluster", flush=True)
    return path


_SCRIPT = re.compile(r"tmp[^/]*\.([a-z_]+)\.py$")


def _script_of(proc) -> str | None:
    try:
        for part in proc.cmdline():
            m = _SCRIPT.search(part)
            if m:
                return m.group(1)
    except Exception:  # noqa: BLE001 - the process may be gone
        return None
    return None


def watch(cmd: list[str], *, cwd: Path, log: Path, max_rss: float, root_name: str = "snakemake (scheduler)"
          ) -> tuple[int, dict, float, float]:
    """Run ``cmd``, polling its process tree; returns (exit code, {pid: (script, start, end, peak)}, peak, wall)."""
    import psutil

    start = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    root = psutil.Process(proc.pid)
    jobs: dict[int, list] = {}
    peak = 0.0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        now = time.time()
        for p in procs:
            try:
                rss = p.memory_info().rss
            except psutil.Error:
                continue
            peak = max(peak, rss)
            job = jobs.get(p.pid)
            if job is None:
                name = root_name if p.pid == root.pid else _script_of(p)
                if name is None:
                    continue
                job = jobs[p.pid] = [name, now, now, 0]
            job[2], job[3] = now, max(job[3], rss)
            if rss > max_rss * GIB:
                print(f"STOP: {job[0]} (pid {p.pid}) at {rss / GIB:.1f} GiB > {max_rss} GiB", flush=True)
                os.killpg(proc.pid, 15)
        time.sleep(0.5)
    return proc.wait(), jobs, peak, time.time() - start


def run_workflow(sheet: Path, out: Path, *, cores: int, chunk_cells: int, max_rss: float) -> tuple[float, float]:
    import yaml

    cfg = yaml.safe_load((REPO / "config/examples/kang2018.yaml").read_text())
    cfg["results"] = str(out / "results")
    sc = cfg["singlecell"]
    sc["samples"] = str(sheet)
    sc["markers"] = str(REPO / sc["markers"])
    sc["scale"] = {"on_disk": True, "chunk_cells": chunk_cells}
    (out / "config.yaml").write_text(yaml.safe_dump(cfg))
    snakemake = Path(sys.executable).with_name("snakemake")
    cmd = [str(snakemake), "-s", str(REPO / "Snakefile"), "--configfile", str(out / "config.yaml"), "--cores",
           str(cores), "--rerun-incomplete"]
    code, jobs, peak, wall = watch(cmd, cwd=REPO, log=out / "snakemake.log", max_rss=max_rss)
    rules: dict[str, list] = {}
    for name, t0, t1, rss in jobs.values():
        r = rules.setdefault(name, [0, 0.0, 0.0, 0])
        r[0] += 1
        r[1] += t1 - t0
        r[2] = max(r[2], t1 - t0)
        r[3] = max(r[3], rss)
    print(f"\n{'rule (script)':<26}{'jobs':>6}{'wall_s (sum)':>14}{'wall_s (max job)':>18}{'peak_rss_gib':>14}")
    for name, (n, total, longest, rss) in sorted(rules.items(), key=lambda kv: -kv[1][3]):
        print(f"{name:<26}{n:>6}{total:>14.1f}{longest:>18.1f}{rss / GIB:>14.2f}")
    print(f"workflow: exit code {code}, wall {wall:.0f} s, peak RSS of any process {peak / GIB:.2f} GiB "
          f"(log: {out / 'snakemake.log'})", flush=True)
    if code != 0:
        raise SystemExit(f"the workflow failed (exit code {code}); see {out / 'snakemake.log'}")
    (out / "workflow.json").write_text(json.dumps({"peak": peak, "wall": wall}))
    return peak, wall


_SCANPY = """
import sys, time, h5py, numpy as np, pandas as pd, anndata as ad, scanpy as sc, scipy.sparse as sp
sys.path.insert(0, sys.argv[3])
path, n = sys.argv[1], int(sys.argv[2])
t = time.time()
with h5py.File(path, "r") as f:
    g = f["X"]; ptr = g["indptr"][: n + 1]
    X = sp.csr_matrix((g["data"][: ptr[-1]], g["indices"][: ptr[-1]], ptr), shape=(n, g.attrs["shape"][1]))
    obs = ad.io.read_elem(f["obs"]).iloc[:n]
a = ad.AnnData(X, obs=obs[["sample"]].copy())
a.layers["counts"] = a.X.copy()
sc.pp.normalize_total(a, target_sum=1e4); sc.pp.log1p(a)
sc.pp.highly_variable_genes(a, flavor="seurat_v3", n_top_genes=2000, layer="counts", batch_key="sample", span=0.5)
b = a[:, a.var.highly_variable].copy()
sc.pp.scale(b, max_value=10); sc.pp.pca(b, n_comps=50, svd_solver="arpack")
# scanpy's pynndescent path fails with the pinned scanpy 1.11.5 + scipy 1.17 ('csr_array' has no 'getnnz'):
# degflow's transformer (the same pynndescent parameters, CSR output) is the workaround
from degflow.singlecell.process import _pynndescent_transformer
sc.pp.neighbors(b, n_neighbors=10, n_pcs=40, transformer=_pynndescent_transformer(b.n_obs, 10, 0)); sc.tl.leiden(b, flavor="igraph", n_iterations=2); sc.tl.umap(b)
print(f"scanpy done {n} {time.time() - t:.1f}")
"""


def scanpy_recipe(merged: Path, *, upto: int, max_rss: float, out: Path, start: int = 100_000) -> tuple[int, float]:
    """scanpy in memory on the first M merged cells, M doubling from ``start`` (and upto); (largest M that fit, its
    wall)."""
    script = out / "scanpy_recipe.py"
    script.write_text(_SCANPY)
    from degflow.singlecell.ondisk import h5ad_cells

    total = min(upto, h5ad_cells(merged))
    sizes, m = [], min(start, total)
    while m < total:
        sizes.append(m)
        m *= 2
    sizes.append(total)
    best, best_wall = 0, float("nan")
    for m in sizes:
        code, jobs, peak, wall = watch([sys.executable, str(script), str(merged), str(m), str(REPO / "src")], cwd=out,
                                       log=out / f"scanpy_{m}.log", max_rss=max_rss, root_name="scanpy recipe")
        # the recipe's own process is not a snakemake script: its peak is the tree's peak
        ok = code == 0
        print(f"scanpy in memory, {m} cells: {'done' if ok else 'stopped/failed'} in {wall:.0f} s, peak RSS "
              f"{peak / GIB:.2f} GiB", flush=True)
        if not ok:
            break
        best, best_wall = m, wall
    return best, best_wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cells-per-sample", type=int, default=15_000)
    ap.add_argument("--chunk-cells", type=int, default=20_000)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--max-rss-gib", type=float, default=20.0)
    ap.add_argument("--scanpy-max", type=int, default=None, help="largest M for scanpy (default N; 0 = skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-workflow", action="store_true", help="reuse the workflow run already in --out")
    ap.add_argument("--reuse-input", action="store_true", help="reuse the input already built in --out")
    ap.add_argument("--scanpy-start", type=int, default=100_000, help="smallest M for scanpy (then doubled)")
    args = ap.parse_args()
    out = (args.out or Path(f"/tmp/degflow_scale_{args.cells}")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    print(f"load before: {os.getloadavg()}; {os.cpu_count()} cores", flush=True)
    if args.skip_workflow:
        saved = json.loads((out / "workflow.json").read_text())
        peak, wall = saved["peak"], saved["wall"]
    else:
        sheet = out / "samples.tsv"
        if args.reuse_input and sheet.exists():
            print(f"benchmark input (NOT a result): reusing {sheet}", flush=True)
        else:
            sheet = build_input(args.cells, out, per_sample=args.cells_per_sample, seed=args.seed)
        peak, wall = run_workflow(sheet, out, cores=args.cores, chunk_cells=args.chunk_cells,
                                  max_rss=args.max_rss_gib)
    merged = out / "results" / "singlecell" / "merged.h5ad"
    upto = args.cells if args.scanpy_max is None else args.scanpy_max
    best, best_wall = (scanpy_recipe(merged, upto=upto, max_rss=args.max_rss_gib, out=out,
                                   start=args.scanpy_start) if upto
                       else (0, float("nan")))
    print(f"load after: {os.getloadavg()}", flush=True)
    print(f"cells={args.cells} peak_rss_gib={peak / GIB:.2f} wall_s={wall:.0f} scanpy_max_cells={best} "
          f"scanpy_wall_s_at_M={best_wall:.0f}")


if __name__ == "__main__":
    main()
