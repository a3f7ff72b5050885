"""How long snakemake needs to plan a large bulk experiment (not pytest): 1,000 samples x 10 contrasts.

    .venv/bin/python benchmarks/dag.py                      # 1,000 samples, 10 contrasts, 60,000 genes
    .venv/bin/python benchmarks/dag.py --genes 20000        # a smaller matrix
    .venv/bin/python benchmarks/dag.py --keep               # keep the generated experiment (prints where)

A synthetic experiment is written to a temporary folder: a sample sheet (``batch`` with 4 levels,
``condition`` with ``ctrl`` + one level per contrast), a genes x samples matrix of valid integer counts
(Poisson around log-normal gene means, so every sample and most genes have reads) and a config that
copies config/config.yaml's settings with design ``~ batch + condition`` and contrasts ``tK vs ctrl``.
The data exist only for the planning; nothing is fitted. Wall times depend on what else the machine
runs; the CPU times printed beside them do much less.

Printed, each measured in this run:
  * generate       writing the synthetic files (not part of any snakemake run);
  * validation     degflow's parse-time checks in-process: config schema, sample sheet, reading and
                   checking the counts, design and contrasts (what the Snakefile runs before the DAG);
                   first call as in a snakemake run (lazy imports included), then once more;
  * dry-run        wall clock and CPU time of ``snakemake -n`` in a new process (interpreter start, imports, parse,
                   validation, DAG), without and with ``--profile profiles/slurm`` (groups formed as on
                   a cluster), with the job counts snakemake reports.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def make_experiment(folder: Path, samples: int, contrasts: int, genes: int, seed: int = 0) -> Path:
    """Write sample sheet, counts and config into ``folder``; return the config path."""
    rng = np.random.default_rng(seed)
    levels = [f"t{k}" for k in range(1, contrasts + 1)]
    names = [f"S{j:04d}" for j in range(samples)]
    sheet = pd.DataFrame({
        "sample_id": names,
        "batch": [f"b{j % 4}" for j in range(samples)],
        # every condition level in every batch (round-robin), so the design is full rank
        "condition": [(["ctrl", *levels])[(j // 4) % (contrasts + 1)] for j in range(samples)],
    })
    sheet.to_csv(folder / "samples.tsv", sep="\t", index=False)

    mean = np.exp(rng.normal(3.0, 2.0, genes)).clip(0, 1e5)
    depth = rng.uniform(0.5, 1.5, samples)
    counts = rng.poisson(mean[:, None] * depth[None, :]).astype(np.int64)
    frame = pd.DataFrame(counts, columns=names, index=pd.Index([f"G{i:06d}" for i in range(genes)], name="gene_id"))
    frame.to_csv(folder / "counts.tsv", sep="\t")

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    bulk = config["bulk"]
    bulk.update({
        "counts": str(folder / "counts.tsv"),
        "samples": str(folder / "samples.tsv"),
        "annotation": None,
        "exclude": [],
        "design": "~ batch + condition",
        "reference_levels": {"batch": "b0", "condition": "ctrl"},
        "contrasts": {f"{lv}_vs_ctrl": ["condition", lv, "ctrl"] for lv in levels},
    })
    config["results"] = str(folder / "results")
    config = {"results": config["results"], "bulk": bulk}  # only the bulk part of the example
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def time_validation(config_path: Path) -> tuple[tuple[float, float], tuple[float, float]]:
    """degflow's parse-time validation in this process, (wall, CPU) seconds: first call (as in a snakemake
    run, lazy imports included), second call."""
    from degflow.plan.bulk import plan_bulk
    from degflow.plan.schema import validate_config

    raw = yaml.safe_load(config_path.read_text())
    times = []
    for _ in range(2):
        t, c = time.perf_counter(), time.process_time()
        cfg = validate_config(raw, schema_dir=REPO / "workflow" / "schemas")
        plan, _ = plan_bulk(cfg["bulk"])
        times.append((time.perf_counter() - t, time.process_time() - c))
        assert len(plan.samples) > 0
    return times[0], times[1]


def job_stats(text: str) -> tuple[dict[str, int], int]:
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal\s+(\d+)", text, re.S)
    if not m:
        raise RuntimeError(f"no job stats in snakemake's output:\n{text[-3000:]}")
    stats = {p[0]: int(p[1]) for p in (line.split() for line in m.group(1).splitlines()) if len(p) == 2}
    return stats, int(m.group(2))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def dry_run(config_path: Path, profile: bool) -> tuple[float, float, str]:
    # Run from the experiment's folder, as a user with their own experiment would: from the repository,
    # snakemake would also load config/config.yaml (the Snakefile's `configfile:`) and merge its
    # contrasts into ours.
    cmd = [str(SNAKEMAKE), "-n", "-s", str(REPO / "Snakefile"), "--configfile", str(config_path), "--nolock"]
    cmd += ["--profile", str(REPO / "profiles" / "slurm")] if profile else ["--cores", "2"]
    env = dict(os.environ)
    t, c = time.perf_counter(), _children_cpu()
    proc = subprocess.run(cmd, cwd=config_path.parent, capture_output=True, text=True, env=env, timeout=3600)
    elapsed, cpu = time.perf_counter() - t, _children_cpu() - c
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-5000:]}")
    return elapsed, cpu, proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--contrasts", type=int, default=10)
    ap.add_argument("--genes", type=int, default=60000, help="rows of the counts matrix (Ensembl: ~60,000)")
    ap.add_argument("--keep", action="store_true", help="keep the generated experiment")
    ap.add_argument("--no-profile", action="store_true", help="skip the dry-run with --profile profiles/slurm")
    args = ap.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="degflow-dag-"))
    try:
        t = time.perf_counter()
        config_path = make_experiment(folder, args.samples, args.contrasts, args.genes)
        gen = time.perf_counter() - t
        size_mb = (folder / "counts.tsv").stat().st_size / 1e6
        print(f"experiment: {args.samples} samples x {args.contrasts} contrasts, counts {args.genes} genes "
              f"({size_mb:.0f} MB TSV) in {folder}")
        print(f"generate       {gen:7.1f} s")
        (first, first_cpu), (second, second_cpu) = time_validation(config_path)
        print(f"validation     {first:7.1f} s   CPU {first_cpu:6.1f} s   (in-process: schema, sheet, counts, design; "
              f"again: {second:.1f} s, CPU {second_cpu:.1f} s)")
        runs = [("dry-run local", False)] + ([] if args.no_profile else [("dry-run slurm", True)])
        for label, profile in runs:
            elapsed, cpu, out = dry_run(config_path, profile)
            stats, total = job_stats(out)
            found = re.findall(r"Group job (\S+) \(jobs", out)
            extra = f", {len(found)} SLURM group jobs ({len(set(found))} groups)" if profile and found else ""
            print(f"{label:14} {elapsed:7.1f} s   CPU {cpu:6.1f} s   ({total} jobs{extra}: "
                  + ", ".join(f"{k} {v}" for k, v in stats.items()) + ")")
    finally:
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
