"""How reproducible is pydeseq2's answer on airway, and where does NumbaInference sit in it (not pytest).

    .venv/bin/python benchmarks/pydeseq2_reproducibility.py          # ~3 min on 2 cores (stock pydeseq2 twice)

Issue 11 asked the numba backend to equal pydeseq2's ``DefaultInference`` end to end (log2FC 1e-6, dispersions
1e-4 relative, identical DEG calls). On PyDESeq2's synthetic data it does (``tests/test_inference.py``), and on
identical inputs every routine does. On the full airway matrix, though, pydeseq2's own answer is not fixed to
that precision: this script fits airway (``~ cell + dex``, trt vs untrt) with

* ``stock``: stock pydeseq2 0.5.4 (``flavor="pydeseq2", engine="pydeseq2"``), the machine's OpenBLAS kernels;
* ``stock, generic BLAS``: the same, with ``OPENBLAS_CORETYPE=Prescott`` (OpenBLAS's generic kernels: no FMA,
  no AVX) -- same code, same data, different last bits in BLAS/LAPACK;
* ``NumbaInference``: ``flavor="pydeseq2", engine="numba"``;
* ``degflow default`` and ``degflow default, generic BLAS``: ``flavor="deseq2", engine="numba"`` (the DESeq2
  1.38 port), for contrast;

each in its own process (the BLAS kernel is chosen when NumPy loads), and prints, for pairs of fits: gene-wise
and MAP dispersions that differ by > 1e-4 relative, genes whose L-BFGS-B convergence flag differs, the trend
coefficients, the largest log2FC difference (baseMean > 1) and the DEG calls (padj < 0.05, |LFC| > 1).

What it shows (see the README): pydeseq2's L-BFGS-B on log(alpha) stops with "abnormal termination" on a
different set of ~100 flat-likelihood genes whenever the last bits of the objective change; those genes fall
back to a coarse grid (for MAP dispersions without the prior), some of them enter the trend fit, the trend moves
by ~0.1 %, and every MAP dispersion and log2FC moves with it. Every number printed is measured in this run.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FITS = {
    "stock": ("pydeseq2", "pydeseq2", None),
    "stock, generic BLAS": ("pydeseq2", "pydeseq2", "Prescott"),
    "NumbaInference": ("pydeseq2", "numba", None),
    "degflow default": ("deseq2", "numba", None),
    "degflow default, generic BLAS": ("deseq2", "numba", "Prescott"),
}
PAIRS = [
    ("stock, generic BLAS", "stock"),
    ("NumbaInference", "stock"),
    ("NumbaInference", "stock, generic BLAS"),
    ("degflow default, generic BLAS", "degflow default"),
]


def worker(flavor: str, engine: str, out: str) -> None:
    """Fit airway in this process and pickle (var, results, trend coefficients)."""
    from degflow.runtime import configure_runtime

    configure_runtime(blas_threads=1)
    import pandas as pd

    from degflow.de.fit import fit_deseq
    from degflow.de.results import contrast_results

    d = ROOT / "resources" / "airway"  # the bundled example (= shared/data/airway)
    counts = pd.read_csv(d / "counts.tsv", sep="\t", index_col=0)
    samples = pd.read_csv(d / "samples.tsv", sep="\t", index_col=0)
    n = len(os.sched_getaffinity(0))
    dds = fit_deseq(counts, samples, "~ cell + dex", {"dex": "untrt"}, flavor=flavor, engine=engine, n_cpus=n)
    res = contrast_results(dds, ["dex", "trt", "untrt"], alpha=0.05, n_cpus=n)
    trend = dds.uns.get("trend_coeffs")
    with open(out, "wb") as fh:
        pickle.dump((dds.var.copy(), res, None if trend is None else list(map(float, trend))), fh)


def compare(a: tuple, b: tuple) -> str:
    import numpy as np

    from degflow.bulk.degs import classify

    (va, ra, ta), (vb, rb, tb) = a, b
    parts = []
    for key in ("genewise_dispersions", "MAP_dispersions"):
        if key in va and key in vb:
            x, y = va[key].to_numpy(float), vb[key].to_numpy(float)
            ok = np.isfinite(x) & np.isfinite(y)
            parts.append(f"{key.split('_')[0]} > 1e-4 rel: {int((np.abs(x - y)[ok] > 1e-4 * y[ok]).sum())}")
    for key in ("_genewise_converged", "_MAP_converged"):
        if key in va and key in vb:
            x = va[key].fillna(True).to_numpy(bool)
            y = vb[key].fillna(True).to_numpy(bool)
            parts.append(f"{key.strip('_').split('_')[0]} L-BFGS-B flags differ: {int((x != y).sum())}")
    if ta is not None and tb is not None:
        rel = max(abs(p - q) / abs(q) for p, q in zip(ta, tb, strict=False))
        parts.append(f"trend coefficients {rel:.2g} rel")
    ok = (rb["baseMean"] > 1).to_numpy()
    d = np.nanmax(np.abs(ra["log2FoldChange"].to_numpy() - rb["log2FoldChange"].to_numpy())[ok])
    parts.append(f"max |dLFC| (baseMean > 1) {d:.2g}")

    ca, cb = classify(ra).to_numpy(), classify(rb).to_numpy()  # padj < 0.05, |LFC| > 1
    parts.append(f"DEGs up/down {(ca == 'up').sum()}/{(ca == 'down').sum()} vs {(cb == 'up').sum()}/"
                 f"{(cb == 'down').sum()} ({int((ca != cb).sum())} calls differ)")
    return "\n    ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", nargs=3, metavar=("FLAVOR", "ENGINE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.worker:
        worker(*args.worker)
        return
    fits = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (flavor, engine, coretype) in FITS.items():
            out = str(Path(tmp, f"{len(fits)}.pkl"))
            env = dict(os.environ)
            env.pop("OPENBLAS_CORETYPE", None)
            if coretype:
                env["OPENBLAS_CORETYPE"] = coretype
            print(f"fitting airway: {label} (flavor={flavor}, engine={engine}"
                  f"{', OPENBLAS_CORETYPE=' + coretype if coretype else ''})", flush=True)
            subprocess.run([sys.executable, __file__, "--worker", flavor, engine, out], env=env, check=True)
            with open(out, "rb") as fh:
                fits[label] = pickle.load(fh)
    print()
    for a, b in PAIRS:
        print(f"{a}  vs  {b}:\n    {compare(fits[a], fits[b])}")


if __name__ == "__main__":
    main()
