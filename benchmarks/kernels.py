"""Benchmark of degflow.kernels.sparse and degflow.kernels.sizefactors against scanpy, pydeseq2 and the machine's floors (not pytest).

    .venv/bin/python benchmarks/kernels.py                  # 100k cells x 20k genes, 200 M non-zeros
    .venv/bin/python benchmarks/kernels.py --cells 250000   # larger, if memory allows (checked first)
    .venv/bin/python benchmarks/kernels.py --cells 20000    # quick

Each timing is an untimed warm-up call (numba compile / cache load), then the median of
``--repeats`` runs; within a section all candidates (scanpy or pydeseq2, degflow on 1 and on
all threads, the floors) are run in turn, interleaved, so they share the same background load,
and the load average is printed with each section (the machine may be shared). Synthetic data
are used for speed only; correctness is checked on real data by tests/test_kernels.py. Every
number printed is measured in this run.

Floors, on this machine:
  * memory: STREAM triad ``a = b + s * c`` on float64 arrays of 256 MiB each (>> cache), 24 bytes
    per element; each kernel's GB/s counts the bytes it must move at least (below);
  * compute, for normalise + log1p: degflow's vectorised log1p alone, in place on the same
    data array (no scaling), and NumPy's ``np.log1p`` (one thread, scalar libm);
  * for size factors: one read of the count matrix (a sum), and pydeseq2's own steps.
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
from degflow.runtime import configure_runtime  # noqa: E402

configure_runtime()

import numba  # noqa: E402
import numpy as np  # noqa: E402
from scipy import sparse  # noqa: E402

from degflow.kernels import math as kmath  # noqa: E402
from degflow.kernels import sizefactors  # noqa: E402
from degflow.kernels import sparse as kernels  # noqa: E402
from degflow.runtime import threads  # noqa: E402

Case = tuple[Callable[..., object], Callable[[], object] | None, int | None]  # (fn, setup, numba threads)


def bench(cases: dict[str, Case], repeats: int) -> dict[str, float]:
    """Median seconds per case. One untimed warm-up call each, then the cases are run in turn
    ``repeats`` times, interleaved, so that every case sees the same background load.
    ``setup`` (untimed) makes a fresh argument for each call; ``threads`` sets numba's count."""

    def run(fn, setup, n):
        arg = setup() if setup else None
        with threads(n):
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


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"[load average {one:.2f} (1 min), {five:.2f} (5 min)]"


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
def _triad(a, b, c, s):
    """STREAM triad: a = b + s * c (reads 2 arrays, writes 1)."""
    for i in numba.prange(a.shape[0]):
        a[i] = b[i] + s * c[i]


@numba.njit(parallel=True, cache=True)  # noqa: TID251
def _read_sum(x):
    """One read of a 2-D array (the least any size-factor kernel must do)."""
    total = 0.0
    for i in numba.prange(x.shape[0]):
        row = 0.0
        for j in range(x.shape[1]):
            row += x[i, j]
        total += row
    return total


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
    from importlib.metadata import version

    return (
        f"machine: {platform.machine()} '{cpu}', nproc {os.cpu_count()}, numba pool {numba.config.NUMBA_NUM_THREADS} "
        f"({numba.threading_layer()} layer, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')})\n"
        f"versions: python {platform.python_version()}, numpy {np.__version__}, numba {numba.__version__}, "
        f"scanpy {version('scanpy')}, pydeseq2 {version('pydeseq2')}"
    )


def mem_available() -> float:
    """MemAvailable in bytes (Linux), or inf."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", type=int, default=100_000)
    p.add_argument("--genes", type=int, default=20_000)
    p.add_argument("--nnz-per-cell", type=int, default=2_000)
    p.add_argument("--bulk-samples", type=int, default=100)
    p.add_argument("--bulk-genes", type=int, default=60_000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--bulk-only", action="store_true", help="only the memory floor and the size factors")
    args = p.parse_args()
    warnings.filterwarnings("ignore", category=FutureWarning)

    # Peak memory: the matrix, scanpy's AnnData copy, a fresh copy per in-place run and a new
    # output matrix: ~4 matrices (float32 data + int32 indices, 8 bytes per non-zero).
    nnz = args.cells * args.nnz_per_cell
    need = 4 * 8 * nnz
    avail = mem_available()
    _triad(np.empty(4), np.ones(4), np.ones(4), 1.0)  # compile; starts numba's threading layer
    print(machine())
    print(
        f"single-cell size: {args.cells} cells x {args.genes} genes x {args.nnz_per_cell} non-zeros per cell "
        f"= {nnz / 1e6:.0f} M non-zeros, float32 CSR ({8 * nnz / 1e9:.1f} GB data + indices); peak ~{need / 1e9:.1f} GB "
        f"of {avail / 1e9:.1f} GB available"
    )
    if need > 0.85 * avail and not args.bulk_only:
        sys.exit(f"not enough memory for --cells {args.cells}: about {need / 1e9:.1f} GB needed; use fewer cells")

    import anndata as ad
    import scanpy as sc
    from scanpy.preprocessing._utils import _get_mean_var

    nt = numba.config.NUMBA_NUM_THREADS
    threads_list = sorted({1, nt})
    r = args.repeats

    def scaling(t: dict[str, float], key: str) -> str:
        if nt == 1:
            return ""
        t1, tn = t[key + "1"], t[key + str(nt)]
        return f"  1->{nt} threads: {t1 * 1e3:.1f} -> {tn * 1e3:.1f} ms ({t1 / tn:.2f}x)"

    # --- 0. memory floor: STREAM triad ------------------------------------------------------------
    n_triad = 1 << 25  # 32 Mi float64 = 256 MiB per array
    a, b, c = np.empty(n_triad), np.ones(n_triad), np.full(n_triad, 2.0)
    cases: dict[str, Case] = {f"triad{n}": (lambda: _triad(a, b, c, 3.0), None, n) for n in threads_list}  # noqa: F821 - run by bench() before the del below
    t = bench(cases, r)
    triad = {n: 24 * n_triad / t[f"triad{n}"] / 1e9 for n in threads_list}
    del a, b, c
    print(
        "\nSTREAM triad (a = b + s*c, float64, 3 x 256 MiB): "
        + ", ".join(f"{triad[n]:.1f} GB/s on {n} thread{'s' if n > 1 else ''}" for n in threads_list)
        + f"  {load()}\n"
    )
    bw = triad[nt]

    if not args.bulk_only:
        t0 = time.perf_counter()
        X = make_counts(args.cells, args.genes, args.nnz_per_cell)
        print(f"single-cell data made in {time.perf_counter() - t0:.1f} s: {X.shape[0]} x {X.shape[1]}, {X.nnz / 1e6:.0f} M non-zeros")

        # --- 1. normalise + log1p ---------------------------------------------------------------
        def scanpy_norm_log(a):
            sc.pp.normalize_total(a)
            sc.pp.log1p(a)

        fresh = X.copy
        cases = {"scanpy": (scanpy_norm_log, lambda: ad.AnnData(X.copy()), None)}
        for n in threads_list:
            cases[f"new{n}"] = (lambda: kernels.normalize_log1p(X), None, n)
            cases[f"inplace{n}"] = (lambda m: kernels.normalize_log1p(m, inplace=True), fresh, n)
            cases[f"target{n}"] = (lambda m: kernels.normalize_log1p(m, target_sum=1e4, inplace=True), fresh, n)
            cases[f"exclude{n}"] = (lambda: kernels.normalize_log1p(X, exclude_highly_expressed=True), None, n)
            cases[f"log1p{n}"] = (lambda d: kmath.log1p_array(d, d), lambda: X.data.copy(), n)
        cases["np.log1p"] = (lambda d: np.log1p(d, out=d), lambda: X.data.copy(), None)
        t = bench(cases, r)
        d_bytes, i_bytes, p_bytes = X.data.nbytes, X.indices.nbytes, X.indptr.nbytes
        # least bytes moved: in place with target_sum: read + write data, read indptr; the median
        # target adds a read of data (the totals); a new matrix also reads data and copies indices.
        moved = {
            "target": 2 * d_bytes + p_bytes,
            "inplace": 3 * d_bytes + p_bytes,
            "new": 3 * d_bytes + 2 * i_bytes + 2 * p_bytes,
            "exclude": 4 * d_bytes + 2 * i_bytes + 2 * p_bytes,
            "log1p": 2 * d_bytes,
        }
        print(f"normalise + log1p (scanpy normalize_total + log1p; target_sum=None: median of the cell totals)  {load()}")
        print(f"  scanpy normalize_total + log1p (in place)          {t['scanpy']:7.3f} s")
        for key, label in [
            ("new", "degflow normalize_log1p, new matrix"),
            ("inplace", "degflow normalize_log1p, inplace=True"),
            ("target", "degflow, target_sum=1e4, inplace (one pass)"),
            ("exclude", "degflow, exclude_highly_expressed, new matrix"),
            ("log1p", "floor: degflow's log1p alone, in place"),
        ]:
            tk = t[key + str(nt)]
            gbs = moved[key] / tk / 1e9
            print(
                f"  {label:<50} {tk:7.3f} s  scanpy/it {t['scanpy'] / tk:5.1f}x  {gbs:5.1f} GB/s = {gbs / bw:4.0%} of triad"
                f"{scaling(t, key)}"
            )
        floor = t[f"log1p{nt}"]
        print(f"  floor: np.log1p(data, out=data), NumPy, 1 thread    {t['np.log1p']:7.3f} s")
        print(
            f"  => fused normalise+log1p vs the log1p floor: one pass (target_sum) {t[f'target{nt}'] / floor:.2f}x the floor, "
            f"median target {t[f'inplace{nt}'] / floor:.2f}x, new matrix {t[f'new{nt}'] / floor:.2f}x; "
            f"vs scanpy {t['scanpy'] / t[f'inplace{nt}']:.1f}x (in place) / {t['scanpy'] / t[f'new{nt}']:.1f}x (new matrix)\n"
        )

        # --- 2. mean / variance ---------------------------------------------------------------------
        Xn = kernels.normalize_log1p(X, target_sum=1e4)
        del X
        cases = {"scanpy0": (lambda: _get_mean_var(Xn, axis=0), None, None), "scanpy1": (lambda: _get_mean_var(Xn, axis=1), None, None)}
        for n in threads_list:
            cases[f"gene{n}"] = (lambda: kernels.mean_var(Xn, axis=0), None, n)
            cases[f"cell{n}"] = (lambda: kernels.mean_var(Xn, axis=1), None, n)
        t = bench(cases, r)
        mv_bytes = {"gene": Xn.data.nbytes + Xn.indices.nbytes + Xn.indptr.nbytes, "cell": Xn.data.nbytes + Xn.indptr.nbytes}
        print(f"mean + variance (ddof=1) of the log-normalised matrix (scanpy _get_mean_var)  {load()}")
        for key, sk, label in [("gene", "scanpy0", "per gene"), ("cell", "scanpy1", "per cell")]:
            tk = t[key + str(nt)]
            gbs = mv_bytes[key] / tk / 1e9
            print(
                f"  {label}: scanpy {t[sk]:.3f} s, degflow mean_var {tk:.3f} s  scanpy/it {t[sk] / tk:5.2f}x  "
                f"{gbs:5.1f} GB/s = {gbs / bw:4.0%} of triad{scaling(t, key)}"
            )
        print()
        del Xn

    # --- 3. size factors ------------------------------------------------------------------------
    from pydeseq2.preprocessing import deseq2_norm

    rng = np.random.default_rng(1)
    n_s, n_g = args.bulk_samples, args.bulk_genes
    mu = rng.lognormal(4.0, 2.0, n_g)[None, :] * rng.lognormal(0.0, 0.3, n_s)[:, None]
    counts = rng.negative_binomial(5, 5 / (5 + mu)).astype(np.int64)  # NB with dispersion 0.2
    counts_f = np.asfortranarray(counts)  # a genes x samples table transposed

    def pydeseq2_sf_only():  # deseq2_norm without dividing the counts (its size-factor steps only)
        with np.errstate(divide="ignore"):
            log_counts = np.log(counts)
        logmeans = log_counts.mean(axis=0)
        keep = ~np.isinf(logmeans)
        return np.exp(np.median(log_counts[:, keep] - logmeans[keep], axis=1))

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

    assert np.allclose(sizefactors.size_factors_ratio(counts), deseq2_norm(counts)[1], rtol=1e-12, atol=0)
    assert np.allclose(
        sizefactors.size_factors_poscounts(counts, flavor="pydeseq2"), pydeseq2_poscounts(), rtol=1e-12, atol=0
    )
    cases = {
        "pd": (lambda: deseq2_norm(counts), None, None),
        "pdsf": (pydeseq2_sf_only, None, None),
        "pdpos": (pydeseq2_poscounts, None, None),
    }
    for n in threads_list:
        cases[f"ratio{n}"] = (lambda: sizefactors.size_factors_ratio(counts), None, n)
        cases[f"ratioF{n}"] = (lambda: sizefactors.size_factors_ratio(counts_f), None, n)
        cases[f"pos{n}"] = (lambda: sizefactors.size_factors_poscounts(counts), None, n)
        cases[f"read{n}"] = (lambda: _read_sum(counts), None, n)
    t = bench(cases, r)
    zero_genes = int((counts == 0).any(axis=0).sum())
    gb = counts.nbytes / 1e9
    print(
        f"size factors, simulated NB counts, {n_s} samples x {n_g} genes, int64 ({gb * 1e3:.0f} MB; "
        f"{zero_genes} genes with a zero)  {load()}"
    )
    print(f"  pydeseq2 deseq2_norm (also returns counts / size factors)   {t['pd']:.4f} s")
    print(f"  pydeseq2 deseq2_norm's size-factor steps only               {t['pdsf']:.4f} s")
    print(f"  pydeseq2 0.5.4 fit_size_factors('poscounts') body          {t['pdpos']:.4f} s")
    for key, ref, label in [
        ("ratio", "pd", "degflow size_factors_ratio (C order)"),
        ("ratioF", "pd", "degflow size_factors_ratio (F order, genes x samples .T)"),
        ("pos", "pdpos", "degflow size_factors_poscounts"),
        ("read", None, "floor: one parallel read of the counts"),
    ]:
        tk = t[key + str(nt)]
        vs = f"pydeseq2/it {t[ref] / tk:5.1f}x" if ref else " " * 17
        extra = f" (vs size-factor steps only {t['pdsf'] / tk:.1f}x)" if key == "ratio" else ""
        print(
            f"  {label:<58} {tk:.4f} s  {vs}  {gb / tk:5.1f} GB/s = {gb / tk / bw:4.0%} of triad"
            f"{scaling(t, key)}{extra}"
        )
    print(f"\n{load()} at the end (the machine may be shared: ratios are more stable than seconds)")


if __name__ == "__main__":
    main()
