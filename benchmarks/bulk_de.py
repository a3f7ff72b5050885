"""Wall time of bulk DE on airway: degflow (R-faithful), stock pydeseq2 and R DESeq2 (not pytest).

    .venv/bin/python benchmarks/bulk_de.py                 # 3 timed runs (1 for stock pydeseq2)
    .venv/bin/python benchmarks/bulk_de.py --repeats 5 --pydeseq2-repeats 1 --no-r

Each engine gets an untimed warm-up (imports, numba compile/cache load) on the first 2,000
genes, then the median of ``--repeats`` timed runs of ``fit_deseq`` + ``contrast_results``
(design ``~ cell + dex``, contrast dex trt vs untrt, alpha 0.05, ``n_cpus=1``) on all
64,102 genes.  When ``Rscript`` with DESeq2 is installed, R's ``DESeq()`` is timed the same
way inside one R process (``system.time(...)["elapsed"]``; R start-up and package loading
excluded), plus ``results()``.  Every number printed is measured in this run.
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

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import find_shared_data  # noqa: E402

from degflow.deseq import contrast_results, fit_deseq  # noqa: E402

R_SCRIPT = r"""
suppressMessages(library(DESeq2))
args <- commandArgs(trailingOnly = TRUE)
cts <- as.matrix(read.delim(args[1], row.names = 1, check.names = FALSE))
st <- read.delim(args[2], row.names = 1)
st$dex <- relevel(factor(st$dex), "untrt"); st$cell <- factor(st$cell)
reps <- as.integer(args[3])
run <- function(x) {
  dds <- DESeqDataSetFromMatrix(x, st, ~ cell + dex)
  dds <- DESeq(dds, quiet = TRUE)
  results(dds, contrast = c("dex", "trt", "untrt"), alpha = 0.05)
}
invisible(run(cts[1:2000, ]))  # warm-up
for (i in seq_len(reps)) {
  t <- system.time(res <- run(cts))
  cat(sprintf("R_TIME %.3f %.3f\n", t[["elapsed"]], t[["user.self"]] + t[["sys.self"]]))
}
cat(sprintf("R_VERSION %s DESeq2 %s\n", R.version.string, packageVersion("DESeq2")))
"""


def machine() -> str:
    cpus = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        usable = cpus
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{platform.processor() or platform.machine()}, {cpus} logical cores ({usable} usable), "
        f"Python {platform.python_version()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def time_engine(
    counts: pd.DataFrame, samples: pd.DataFrame, flavor: str, repeats: int
) -> tuple[list[float], list[float]]:
    def run(c: pd.DataFrame) -> None:
        dds = fit_deseq(c, samples, "~ cell + dex", {"dex": "untrt"}, flavor=flavor, n_cpus=1)
        contrast_results(dds, ["dex", "trt", "untrt"], alpha=0.05)

    run(counts.iloc[:2000])  # warm-up
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        run(counts)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def time_r(counts_path: Path, samples_path: Path, repeats: int) -> tuple[list[float], list[float], str] | None:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    probe = subprocess.run([rscript, "-e", "quit(status = !requireNamespace('DESeq2', quietly = TRUE))"], capture_output=True)
    if probe.returncode != 0:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(R_SCRIPT)
        script = fh.name
    try:
        out = subprocess.run(
            [rscript, script, str(counts_path), str(samples_path), str(repeats)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    rows = [line.split() for line in out.splitlines() if line.startswith("R_TIME")]
    version = next((line[len("R_VERSION ") :] for line in out.splitlines() if line.startswith("R_VERSION")), "")
    return [float(r[1]) for r in rows], [float(r[2]) for r in rows], version


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs for degflow and R (default 3)")
    ap.add_argument("--pydeseq2-repeats", type=int, default=1, help="timed runs for stock pydeseq2 (default 1: minutes each)")
    ap.add_argument("--no-r", action="store_true", help="skip R even if Rscript + DESeq2 are installed")
    args = ap.parse_args()

    data = find_shared_data() / "airway"
    counts = pd.read_csv(data / "counts.tsv", sep="\t", index_col=0)
    samples = pd.read_csv(data / "samples.tsv", sep="\t", index_col=0)
    print(f"machine: {machine()}")
    print(f"data: airway {counts.shape[0]} genes x {counts.shape[1]} samples, design ~ cell + dex, n_cpus=1")

    med: dict[str, float] = {}
    for label, flavor, reps in [
        ("degflow flavor=deseq2", "deseq2", args.repeats),
        ("stock pydeseq2 (flavor=pydeseq2)", "pydeseq2", args.pydeseq2_repeats),
    ]:
        times, cpu = time_engine(counts, samples, flavor, reps)
        med[flavor] = statistics.median(times)
        print(
            f"{label:34s} median {med[flavor]:7.2f} s wall ({statistics.median(cpu):.2f} s CPU)  "
            f"runs: {', '.join(f'{t:.2f}' for t in times)}"
        )

    r = None if args.no_r else time_r(data / "counts.tsv", data / "samples.tsv", args.repeats)
    if r is None:
        print("R DESeq2: not timed (Rscript with DESeq2 not installed, or --no-r)")
    else:
        times, cpu, version = r
        med["R"] = statistics.median(times)
        print(
            f"{'R DESeq() + results()':34s} median {med['R']:7.2f} s wall ({statistics.median(cpu):.2f} s CPU)  "
            f"runs: {', '.join(f'{t:.2f}' for t in times)}  ({version})"
        )

    print("ratios (wall time / degflow deseq2):")
    print(f"  stock pydeseq2 / degflow: {med['pydeseq2'] / med['deseq2']:.2f}x")
    if "R" in med:
        print(f"  R DESeq2 / degflow:       {med['R'] / med['deseq2']:.2f}x")


if __name__ == "__main__":
    main()
