"""Wall time of bulk DE: degflow's numba engine vs stock pydeseq2 vs R DESeq2, same data and cores (not pytest).

    .venv/bin/python benchmarks/bulk_de.py                      # everything (stock pydeseq2 on the large matrix: long)
    .venv/bin/python benchmarks/bulk_de.py --large-pydeseq2-genes 3000 --no-r-large

Engines (each ``fit_deseq`` + ``contrast_results``; ``n_cpus`` = all usable cores unless ``--cores``):

* ``degflow default (deseq2 flavor)``: ``flavor="deseq2", engine="numba"`` -- the workflow's default: the
  DESeq2 1.38 port with its per-gene loops (``fitDisp``, ``fitDispGrid``, ``fitBeta``) as numba kernels
  (:mod:`degflow.kernels.deseq`);
* ``degflow deseq2 flavor, NumPy loops``: ``flavor="deseq2", engine="pydeseq2"`` -- the same port with the
  loops vectorised in NumPy over gene blocks (its readable reference);
* ``degflow numba (pydeseq2 flavor)``: pydeseq2's driver with :class:`degflow.de.inference.NumbaInference`
  (``flavor="pydeseq2", engine="numba"``), i.e. stock pydeseq2's algorithm on compiled kernels;
* ``stock pydeseq2``: ``flavor="pydeseq2", engine="pydeseq2"`` (``DefaultInference``, joblib workers);
* ``R DESeq()``: ``DESeq()`` + ``results()`` inside one R process when ``Rscript`` with DESeq2 is
  installed (``apt-get install r-bioc-deseq2``); R start-up and package loading excluded. DESeq()
  runs on one core (no BiocParallel), which is its default.

Data: airway (8 samples x 64,102 genes, ``~ cell + dex``) and a large matrix of 100 samples x
30,000 genes (``~ condition``, 50 vs 50) **simulated** from airway's fitted means and dispersions
(degflow's fit of airway; negative binomial draws, seed 0, 10 % of genes given a fold change) -- a
benchmark input, never a result. Each engine gets an untimed warm-up on 500 genes (imports, numba
compile / cache load), then the median of ``--repeats`` timed runs. Thread scaling: both numba engines
on 1 and on 2 threads on the large matrix. Every number printed is measured in this run, with
``os.getloadavg()``: on a shared machine the ratios are only as good as the load allows.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

# As the workflow scripts do, before numba is imported: BLAS on 1 thread, numba on --cores.
from degflow.runtime import configure_runtime  # noqa: E402

configure_runtime(blas_threads=1)

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from degflow.de.fit import fit_deseq  # noqa: E402
from degflow.de.results import contrast_results  # noqa: E402

R_SCRIPT = r"""
suppressMessages(library(DESeq2))
args <- commandArgs(trailingOnly = TRUE)
cts <- as.matrix(read.delim(args[1], row.names = 1, check.names = FALSE))
st <- read.delim(args[2], row.names = 1)
design <- as.formula(args[4])
for (v in colnames(st)) st[[v]] <- factor(st[[v]])
if ("dex" %in% colnames(st)) st$dex <- relevel(st$dex, "untrt")
contrast <- strsplit(args[5], ",")[[1]]
reps <- as.integer(args[3])
run <- function(x) {
  dds <- DESeqDataSetFromMatrix(x, st, design)
  dds <- DESeq(dds, quiet = TRUE)
  results(dds, contrast = contrast, alpha = 0.05)
}
invisible(run(cts[1:500, ]))  # warm-up
for (i in seq_len(reps)) {
  t <- system.time(res <- run(cts))
  cat(sprintf("R_TIME %.3f %.3f\n", t[["elapsed"]], t[["user.self"]] + t[["sys.self"]]))
}
cat(sprintf("R_VERSION %s DESeq2 %s\n", R.version.string, packageVersion("DESeq2")))
"""

DEFAULT = "degflow default (deseq2 flavor)"
PD_NUMBA = "degflow numba (pydeseq2 flavor)"
ENGINES = {  # label -> fit_deseq keywords
    DEFAULT: {"flavor": "deseq2", "engine": "numba"},
    "degflow deseq2 flavor, NumPy loops": {"flavor": "deseq2", "engine": "pydeseq2"},
    PD_NUMBA: {"flavor": "pydeseq2", "engine": "numba"},
    "stock pydeseq2": {"flavor": "pydeseq2", "engine": "pydeseq2"},
}


def machine() -> str:
    cpus = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = cpus
    return (
        f"{platform.processor() or platform.machine()}, {cpus} logical cores ({usable} usable), "
        f"Python {platform.python_version()}, {load()}"
    )


def load() -> str:
    la = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}"


def time_engine(
    counts: pd.DataFrame, samples: pd.DataFrame, design: str, ref: dict, contrast: list[str], kw: dict,
    repeats: int, n_cpus: int,
) -> tuple[list[float], list[float], pd.DataFrame]:
    def run(c: pd.DataFrame) -> pd.DataFrame:
        dds = fit_deseq(c, samples, design, ref, n_cpus=n_cpus, **kw)
        return contrast_results(dds, contrast, alpha=0.05, n_cpus=n_cpus)

    run(counts.iloc[:500])  # warm-up: imports, numba compile / cache load
    times, cpu, res = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        res = run(counts)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu, res


def time_r(counts: pd.DataFrame, samples: pd.DataFrame, design: str, contrast: list[str], repeats: int
           ) -> tuple[list[float], list[float], str] | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    probe = subprocess.run([rscript, "-e", "quit(status = !requireNamespace('DESeq2', quietly = TRUE))"],
                           capture_output=True)
    if probe.returncode != 0:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        script, cpath, spath = Path(tmp, "run.R"), Path(tmp, "counts.tsv"), Path(tmp, "samples.tsv")
        script.write_text(R_SCRIPT)
        counts.to_csv(cpath, sep="\t")
        samples.to_csv(spath, sep="\t")
        out = subprocess.run(
            [rscript, str(script), str(cpath), str(spath), str(repeats), design, ",".join(contrast)],
            capture_output=True, text=True, check=True,
        ).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("R_TIME")]
    version = next((line[len("R_VERSION ") :] for line in out.splitlines() if line.startswith("R_VERSION")), "")
    return [float(r[1]) for r in rows], [float(r[2]) for r in rows], version


def simulate_large(counts: pd.DataFrame, samples: pd.DataFrame, n_samples: int, n_genes: int, seed: int = 0
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NB counts from airway's fitted base means and dispersions (degflow's fit); a benchmark input only."""
    dds = fit_deseq(counts, samples, "~ cell + dex", {"dex": "untrt"}, n_cpus=1)
    base = dds.var["_normed_means"].to_numpy()
    disp = dds.var["dispersions"].to_numpy()
    ok = np.flatnonzero((base > 0) & np.isfinite(disp))
    rng = np.random.default_rng(seed)
    pick = rng.choice(ok, n_genes, replace=n_genes > ok.size)
    mean, alpha = base[pick], disp[pick]
    cond = np.repeat(["A", "B"], [n_samples // 2, n_samples - n_samples // 2])
    lfc = np.where(rng.random(n_genes) < 0.1, rng.normal(0, 1.5, n_genes), 0.0)
    sf = np.exp(rng.normal(0, 0.2, n_samples))
    mu = mean[:, None] * sf[None, :] * np.exp2(np.where(cond == "B", 1.0, 0.0)[None, :] * lfc[:, None])
    size = 1.0 / alpha[:, None]
    y = rng.negative_binomial(size, size / (size + mu))
    names = [f"s{i + 1}" for i in range(n_samples)]
    return (pd.DataFrame(y, index=[f"g{i + 1}" for i in range(n_genes)], columns=names),
            pd.DataFrame({"condition": cond}, index=names))


def report(label: str, times: list[float], cpu: list[float], extra: str = "") -> float:
    med = statistics.median(times)
    print(f"  {label:38s} median {med:8.2f} s wall ({statistics.median(cpu):7.2f} s CPU)  "
          f"runs: {', '.join(f'{t:.2f}' for t in times)}  [{load()}]{extra}", flush=True)
    return med


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> str:
    ok = (a["baseMean"] > 1).to_numpy()
    d = np.nanmax(np.abs(a["log2FoldChange"].to_numpy()[ok] - b["log2FoldChange"].to_numpy()[ok]))
    da = (a["padj"] < 0.05).to_numpy()
    db = (b["padj"] < 0.05).to_numpy()
    return f"max |dLFC| (baseMean > 1) {d:.2g}, padj < 0.05: {da.sum()} vs {db.sum()} ({(da != db).sum()} differ)"


def section(name: str, counts: pd.DataFrame, samples: pd.DataFrame, design: str, ref: dict, contrast: list[str],
            args: argparse.Namespace, cores: int, pydeseq2_genes: int | None, with_r: bool) -> dict[str, float]:
    print(f"\n{name}: {counts.shape[0]} genes x {counts.shape[1]} samples, design {design}, n_cpus={cores}")
    med: dict[str, float] = {}
    results: dict[str, pd.DataFrame] = {}
    for label, kw in ENGINES.items():
        data = counts
        reps = args.repeats
        note = ""
        if kw == ENGINES["stock pydeseq2"]:
            reps = args.pydeseq2_repeats
            if pydeseq2_genes is not None and pydeseq2_genes < counts.shape[0]:
                data = counts.iloc[:pydeseq2_genes]
                note = f"  (first {pydeseq2_genes} genes only; time x {counts.shape[0] / pydeseq2_genes:.1f} = estimate)"
        times, cpu, res = time_engine(data, samples, design, ref, contrast, kw, reps, cores)
        if note:
            times = [t * counts.shape[0] / data.shape[0] for t in times]
            cpu = [c * counts.shape[0] / data.shape[0] for c in cpu]
        med[label] = report(label, times, cpu, note)
        results[label] = res
    if with_r:
        r = time_r(counts, samples, design, contrast, args.repeats)
        if r is None:
            print("  R DESeq2: not timed (Rscript with DESeq2 not installed, or --no-r)")
        else:
            med["R"] = report("R DESeq() + results()", r[0], r[1], f"  ({r[2]}; one core)")
    print(f"  ratios (wall time / {DEFAULT}):")
    for label, t in med.items():
        if label != DEFAULT:
            print(f"    {label:36s} {t / med[DEFAULT]:6.2f}x")
    print(f"  stock pydeseq2 / {PD_NUMBA} (same algorithm): {med['stock pydeseq2'] / med[PD_NUMBA]:.2f}x")
    a, b = results[DEFAULT], results["degflow deseq2 flavor, NumPy loops"]
    print(f"  default vs NumPy loops: {agreement(a, b)}")
    a, b = results[PD_NUMBA], results["stock pydeseq2"]
    if len(a) == len(b):
        print(f"  pydeseq2 flavor, numba vs stock: {agreement(a, b)}")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs for degflow and R (default 3)")
    ap.add_argument("--pydeseq2-repeats", type=int, default=1, help="timed runs for stock pydeseq2 (default 1)")
    ap.add_argument("--cores", type=int, default=None, help="n_cpus for every engine (default: usable cores)")
    ap.add_argument("--no-r", action="store_true", help="skip R even if Rscript + DESeq2 are installed")
    ap.add_argument("--no-r-large", action="store_true", help="skip R on the large matrix")
    ap.add_argument("--no-airway", action="store_true", help="skip the airway section")
    ap.add_argument("--large-samples", type=int, default=100)
    ap.add_argument("--large-genes", type=int, default=30000)
    ap.add_argument("--scaling-only", action="store_true",
                    help="only the 1 -> N thread scaling of the numba engines on the large matrix")
    ap.add_argument("--large-pydeseq2-genes", type=int, default=None,
                    help="time stock pydeseq2 on the first N genes of the large matrix and scale (default: all)")
    args = ap.parse_args()
    cores = args.cores or len(os.sched_getaffinity(0))

    data = ROOT / "resources" / "airway"  # the bundled example (= shared/data/airway)
    counts = pd.read_csv(data / "counts.tsv", sep="\t", index_col=0)
    samples = pd.read_csv(data / "samples.tsv", sep="\t", index_col=0)
    print(f"machine: {machine()}")
    if not (args.no_airway or args.scaling_only):
        section("airway", counts, samples[["cell", "dex"]], "~ cell + dex", {"dex": "untrt"}, ["dex", "trt", "untrt"],
                args, cores, None, not args.no_r)

    big, big_samples = simulate_large(counts, samples, args.large_samples, args.large_genes)
    if not args.scaling_only:
        section("simulated (airway means and dispersions)", big, big_samples, "~ condition", {"condition": "A"},
                ["condition", "B", "A"], args, cores, args.large_pydeseq2_genes, not (args.no_r or args.no_r_large))

    for label in (DEFAULT, PD_NUMBA):
        print(f"\nthread scaling, {label}, simulated matrix [{load()}]:")
        one = None
        for n in sorted({1, min(2, cores), cores}):
            times, cpu, _ = time_engine(big, big_samples, "~ condition", {"condition": "A"}, ["condition", "B", "A"],
                                        ENGINES[label], args.repeats, n)
            t = report(f"{n} thread(s)", times, cpu)
            one = one or t
            print(f"    speed-up vs 1 thread: {one / t:.2f}x")


if __name__ == "__main__":
    main()
