"""Wall time of the same library calls in two checkouts of degflow, interleaved (not pytest).

Issue 19 asked the restructure to leave the benchmarks no slower. This runs, in fresh processes, alternately in the
checkout before and the one after (``--before``/``--after``: repository roots with ``src/``), the bulk DESeq2 fit
of airway (``~ cell + dex``, numba engine, both flavours, + the contrast) and the single-cell processing of PBMC 3k
(normalise ... Leiden + UMAP), and prints the median wall time of each and the ratio after / before. Interleaving
makes both share the machine's load; numba caches are warmed by an untimed first run of each.

    .venv/bin/python benchmarks/restructure_ab.py --before ../old --after . --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

BULK = """
import time, pandas as pd
try:
    from degflow.de.fit import fit_deseq; from degflow.de.results import contrast_results
except ImportError:
    from degflow.deseq import fit_deseq, contrast_results
root = "{repo}/resources/airway"
counts = pd.read_csv(f"{{root}}/counts.tsv", sep="\\t", index_col=0)
samples = pd.read_csv(f"{{root}}/samples.tsv", sep="\\t", index_col=0)
t = time.perf_counter()
for flavor in ("deseq2", "pydeseq2"):
    dds = fit_deseq(counts, samples, "~ cell + dex", {{"dex": "untrt"}}, flavor=flavor, engine="numba", n_cpus=2)
    contrast_results(dds, ["dex", "trt", "untrt"])
print(time.perf_counter() - t)
"""

SC = """
import time, scanpy as sc
try:
    from degflow.singlecell.process import process
    from degflow.singlecell.qc import qc_metrics, qc_filter
except ImportError:
    from degflow.single_cell import process, qc_metrics, qc_filter
adata = sc.read_10x_mtx("{repo}/resources/pbmc3k/filtered_min3cells_v3")
adata.obs["sample"] = "pbmc3k"
t = time.perf_counter()
qc_metrics(adata)
adata, _ = qc_filter(adata, min_genes=200, max_genes=2500, max_pct_mt=5.0)
process(adata, hvg_flavor="seurat_v3", n_top_genes=2000, batch_key=None, n_neighbors=20, n_pcs=10,
        resolutions=[0.5], run_umap=True, seed=0, n_threads=2)
print(time.perf_counter() - t)
"""


def run(code: str, root: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(root / "src"), "NUMBA_CACHE_DIR": str(Path(tempfile.gettempdir()) / f"degflow_ab_{abs(hash(str(root)))}")}
    out = subprocess.run([sys.executable, "-c", code.format(repo=root)], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{root}: {out.stderr[-2000:]}")
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, default=REPO)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    for name, code in (("bulk DESeq2 fit + contrast, airway", BULK), ("single-cell process, PBMC 3k", SC)):
        for root in (args.before, args.after):  # warm-up: numba compiles into each checkout's cache
            run(code, root.resolve())
        times = {"before": [], "after": []}
        for _ in range(args.repeats):
            times["before"].append(run(code, args.before.resolve()))
            times["after"].append(run(code, args.after.resolve()))
        b, a = statistics.median(times["before"]), statistics.median(times["after"])
        print(f"{name}: before {b:.2f} s, after {a:.2f} s (medians of {args.repeats}, interleaved); "
              f"after / before = {a / b:.3f}")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
