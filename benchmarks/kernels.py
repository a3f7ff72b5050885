"""Benchmark of degflow.kernels against scanpy, pydeseq2 and the machine's floors (not pytest).

    .venv/bin/python benchmarks/kernels.py                  # 100k cells x 20k genes, 200 M non-zeros
    .venv/bin/python benchmarks/kernels.py --cells 20000    # smaller: memory grows with the non-zeros

Each timing is an untimed warm-up call (numba compile / cache load), then the median of
``--repeats`` runs; within a section all candidates (scanpy, degflow on 1 and on all threads,
the floors) are run in turn, interleaved, so they share the same background load. Synthetic
data are used for speed only; correctness is checked on real data by tests/test_kernels.py.
Every number printed is measured in this run.

Floors of the normalise + log1p step, on the same data array:
  * NumPy: ``np.log1p(data, out=data)`` (one thread; it calls the scalar libm log1p);
  * degflow's vectorised log1p alone, without the per-cell scaling;
  * memory: one parallel read + write pass (``x *= s``), the least any in-place transform costs.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# As the workflow scripts do, before numba is imported (OMP_WAIT_POLICY=PASSIVE: see its docstring).
from degflow._threads import configure_runtime  # noqa: E402

configure_runtime()

import numba  # noqa: E402
import numpy as np  # noqa: E402
from scipy import sparse  # noqa: E402

from degflow import kernels  # noqa: E402


Case = tuple[Callable[..., object], Callable[[], object] | None, int | None]  # (fn, setup, numba threads)


def bench(cases: dict[str, Case], repeats: int) -> dict[str, float]:
    """Median seconds per case. One untimed warm-up call each, then the cases are run in turn
    ``repeats`` times, interleaved, so that every case sees the same background load.
    ``setup`` (untimed) makes a fresh argument for each call; ``threads`` sets numba's count."""

    def run(fn, setup, n):
        arg = setup() if setup else None
        with kernels.threads(n):
            t0 = time.perf_counter()
            fn(arg) if setup else fn()
            return time.perf_counter() - t0

    for fn, setup, n in cases.values():
        run(fn, setup, n)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (fn, setup, n) in cases.items():
            times[name].append(run(fn, setup, n))
    return {name: statistics.median(t) for name, t in times.items()}


@numba.njit(parallel=True, cache=True)  # noqa: TID251 - benchmark data generator, not library code
def _fill_csr(indptr, indices, data, n_genes, mean_count, seed):
    rows = indptr.shape[0] - 1
    for i in numba.prange(rows):
        np.random.seed(seed + i)
        a = indptr[i]
        k = indptr[i + 1] - a
        for t in range(k):
            lo = t * n_genes // k  # stratified: one gene per stratum, so sorted and distinct
            hi = (t + 1) * n_genes // k
            indices[a + t] = lo + int(np.random.random() * (hi - lo))
            data[a + t] = 1.0 + np.floor(-np.log(1.0 - np.random.random()) * mean_count)


@numba.njit(parallel=True, cache=True)  # noqa: TID251
def _stream(x, s):
    """One read + write pass (the memory floor of an in-place transform); ``s`` is a run-time 1.0."""
    for i in numba.prange(x.shape[0]):
        x[i] = x[i] * s


def make_counts(n_cells: int, n_genes: int, nnz_per_cell: int, seed: int = 0) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    per_cell = np.clip(rng.lognormal(np.log(nnz_per_cell), 0.35, n_cells), 50, n_genes).astype(np.int64)
    per_cell = (per_cell * (nnz_per_cell * n_cells / per_cell.sum())).astype(np.int64).clip(1, n_genes)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    np.cumsum(per_cell, out=indptr[1:])
    idx_dtype = np.int32 if indptr[-1] < 2**31 else np.int64
    indptr = indptr.astype(idx_dtype)
    indices = np.empty(indptr[-1], dtype=idx_dtype)
    data = np.empty(indptr[-1], dtype=np.float32)
    _fill_csr(indptr, indices, data, n_genes, 2.0, seed)
    x = sparse.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))
    assert x.has_canonical_format  # scipy checks it here (and caches the answer)
    return x


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    import pydeseq2
    import scanpy

    return (
        f"machine: {platform.machine()} '{cpu}', nproc {os.cpu_count()}, numba pool {numba.config.NUMBA_NUM_THREADS} "
        f"({numba.threading_layer()} layer, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), "
        f"load average {load[0]:.2f}\n"
        f"versions: python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
        f"scanpy {scanpy.__version__}, pydeseq2 {pydeseq2.__version__}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--nnz-per-cell", type=int, default=2_000)
    p.add_argument("--bulk-samples", type=int, default=100)
    p.add_argument("--bulk-genes", type=int, default=60_000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)

    import anndata as ad
    import scanpy as sc
    from scanpy.preprocessing._utils import _get_mean_var

    max_threads = numba.config.NUMBA_NUM_THREADS
    r = args.repeats
    t0 = time.perf_counter()
    X = make_counts(args.cells, args.genes, args.nnz_per_cell)
    _stream(X.data[:10].copy(), np.float32(1.0))  # compile outside the machine line
    print(machine())
    print(
        f"single-cell data: {X.shape[0]} cells x {X.shape[1]} genes, {X.nnz / 1e6:.0f} M non-zeros, float32 CSR "
        f"(made in {time.perf_counter() - t0:.1f} s)\n"
    )

    # --- 1. normalise + log1p ---------------------------------------------------------------
    def scanpy_norm_log(a):
        sc.pp.normalize_total(a)
        sc.pp.log1p(a)

    nt = max_threads
    threads_list = sorted({1, nt})
    fresh = X.copy
    cases: dict[str, Case] = {"scanpy": (scanpy_norm_log, lambda: ad.AnnData(X.copy()), None)}
    for n in threads_list:
        cases[f"new{n}"] = (lambda: kernels.normalize_log1p(X), None, n)
        cases[f"inplace{n}"] = (lambda m: kernels.normalize_log1p(m, inplace=True), fresh, n)
        cases[f"target{n}"] = (lambda m: kernels.normalize_log1p(m, target_sum=1e4, inplace=True), fresh, n)
        cases[f"exclude{n}"] = (lambda: kernels.normalize_log1p(X, exclude_highly_expressed=True), None, n)
        cases[f"log1p{n}"] = (lambda d: kernels._log1p_array(d, d), lambda: X.data.copy(), n)
        cases[f"stream{n}"] = (lambda d: _stream(d, np.float32(1.0)), lambda: X.data.copy(), n)
    cases["np.log1p"] = (lambda d: np.log1p(d, out=d), lambda: X.data.copy(), None)
    t = bench(cases, r)
    gb = X.data.nbytes * 2 / 1e9

    def scaling(key: str) -> str:
        if nt == 1:
            return ""
        return f"   1->{nt} threads {t[key + '1']:.3f} -> {t[key + str(nt)]:.3f} s ({t[key + '1'] / t[key + str(nt)]:.2f}x)"

    print("normalise + log1p (target_sum=None: median of the cell totals)")
    print(f"  scanpy normalize_total + log1p (in place)        {t['scanpy']:7.3f} s")
    for key, label in [
        ("new", "degflow normalize_log1p, new matrix"),
        ("inplace", "degflow normalize_log1p, inplace=True"),
        ("target", "degflow, target_sum=1e4, inplace (one pass)"),
        ("exclude", "degflow, exclude_highly_expressed, new matrix"),
    ]:
        print(f"  {label:<48} {t[key + str(nt)]:7.3f} s   scanpy/degflow {t['scanpy'] / t[key + str(nt)]:5.1f}x{scaling(key)}")
    one_pass = t[f"target{nt}"]
    print("floors (the same data array):")
    print(
        f"  np.log1p(data, out=data), 1 thread (NumPy)       {t['np.log1p']:7.3f} s   "
        f"degflow one-pass is {t['np.log1p'] / one_pass:.1f}x faster"
    )
    print(
        f"  degflow's log1p alone, no scaling                {t[f'log1p{nt}']:7.3f} s   "
        f"one-pass normalise+log1p / it {one_pass / t[f'log1p{nt}']:.2f}{scaling('log1p')}"
    )
    print(
        f"  memory: read + write {gb:.1f} GB                     {t[f'stream{nt}']:7.3f} s   "
        f"({gb / t[f'stream{nt}']:.1f} GB/s) one-pass / it {one_pass / t[f'stream{nt}']:.1f}{scaling('stream')}\n"
    )

    # --- 2. mean / variance ---------------------------------------------------------------------
    Xn = kernels.normalize_log1p(X, target_sum=1e4)
    del X
    cases = {"scanpy0": (lambda: _get_mean_var(Xn, axis=0), None, None), "scanpy1": (lambda: _get_mean_var(Xn, axis=1), None, None)}
    for n in threads_list:
        cases[f"gene{n}"] = (lambda: kernels.mean_var(Xn, axis=0), None, n)
        cases[f"cell{n}"] = (lambda: kernels.mean_var(Xn, axis=1), None, n)
    t = bench(cases, r)
    print("mean + variance (ddof=1) of the log-normalised matrix")
    print(f"  per gene: scanpy _get_mean_var {t['scanpy0']:.3f} s, degflow mean_var {t[f'gene{nt}']:.3f} s (scanpy/degflow {t['scanpy0'] / t[f'gene{nt}']:.2f}x){scaling('gene')}")
    print(f"  per cell: scanpy _get_mean_var {t['scanpy1']:.3f} s, degflow mean_var {t[f'cell{nt}']:.3f} s (scanpy/degflow {t['scanpy1'] / t[f'cell{nt}']:.2f}x){scaling('cell')}\n")
    del Xn

    # --- 3. size factors ------------------------------------------------------------------------
    from pydeseq2.preprocessing import deseq2_norm

    rng = np.random.default_rng(1)
    n_s, n_g = args.bulk_samples, args.bulk_genes
    mu = rng.lognormal(4.0, 2.0, n_g)[None, :] * rng.lognormal(0.0, 0.3, n_s)[:, None]
    counts = rng.negative_binomial(5, 5 / (5 + mu)).astype(np.int64)  # NB with dispersion 0.2

    def pydeseq2_poscounts():  # the body of pydeseq2 0.5.4 DeseqDataSet.fit_size_factors("poscounts")
        log_counts = np.zeros_like(counts, dtype=float)
        np.log(counts, out=log_counts, where=counts != 0)
        logmeans = log_counts.mean(axis=0)
        keep = (~np.isinf(logmeans)) & (logmeans > 0)

        def size_factor(x):
            m = np.logical_and(keep, x > 0)
            return np.exp(np.median(np.log(x[m]) - logmeans[m]))

        s = np.apply_along_axis(size_factor, 1, counts)
        return s / np.exp(np.mean(np.log(s)))

    cases = {"pd": (lambda: deseq2_norm(counts), None, None), "pdpos": (pydeseq2_poscounts, None, None)}
    for n in threads_list:
        cases[f"ratio{n}"] = (lambda: kernels.size_factors_ratio(counts), None, n)
        cases[f"pos{n}"] = (lambda: kernels.size_factors_poscounts(counts), None, n)
    t = bench(cases, r)
    zero_genes = int((counts == 0).any(axis=0).sum())
    print(f"size factors, simulated NB counts, {n_s} samples x {n_g} genes ({zero_genes} genes with a zero)")
    print(f"  ratio:     pydeseq2 deseq2_norm {t['pd']:.3f} s, degflow {t[f'ratio{nt}']:.4f} s (pydeseq2/degflow {t['pd'] / t[f'ratio{nt}']:.1f}x){scaling('ratio')}")
    print(f"  poscounts: pydeseq2 0.5.4 code {t['pdpos']:.3f} s, degflow {t[f'pos{nt}']:.4f} s (pydeseq2/degflow {t['pdpos'] / t[f'pos{nt}']:.1f}x){scaling('pos')}")
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (the machine is shared: ratios are more stable than seconds)")

if __name__ == "__main__":
    main()
