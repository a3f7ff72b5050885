"""End-to-end runs of the new-user scenario shapes (issue 18): the user's files, snakemake, the report, the checks.

Shared by tests/test_scenarios_e2e_bulk.py and tests/test_scenarios_e2e_more.py (two files, so that the two
pytest-xdist workers share the runs). tests/test_scenarios.py checks the same shapes' numbers bit for bit in one
process; here each shape goes through snakemake as a user runs it (``snakemake --cores 2 --configfile
config.yaml`` in the experiment's folder, then ``--report report.html``), and every output file of the run must
exist and be non-empty. Each run is kept cheap: the first 1,500 airway genes, a few hundred cells.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
REPO = Path(__file__).resolve().parents[1]
N_GENES = 1500
DEX = {"design": "~ cell + dex", "reference_levels": {"dex": "untrt"},
       "contrasts": {"dex_vs_untrt": ["dex", "trt", "untrt"]}}


def airway_files(n_genes: int = N_GENES) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The first airway genes with a unique, non-empty symbol (as tests/test_scenarios.py), the bundled sheet and
    the gene table (resources/airway)."""
    counts = pd.read_csv(REPO / "resources" / "airway" / "counts.tsv", sep="\t", index_col=0)
    genes = pd.read_csv(REPO / "resources" / "airway" / "genes.tsv", sep="\t", index_col=0, dtype=str,
                        keep_default_na=False)
    sym = genes["symbol"].reindex(counts.index).fillna("")
    ok = (sym != "") & ~sym.duplicated(keep=False)
    counts = counts.loc[ok].iloc[:n_genes]
    sheet = pd.read_csv(REPO / "config" / "samples.tsv", sep="\t", dtype=str)[["sample_id", "cell", "dex"]]
    return counts, sheet, genes.loc[counts.index]


def write(work: Path, counts: pd.DataFrame, sheet: pd.DataFrame, *, name: str = "counts.tsv") -> dict:
    """The counts and the sheet as the user's files, paths relative to the experiment folder (as a user writes)."""
    work.mkdir(parents=True, exist_ok=True)
    counts.to_csv(work / name, sep="," if ".csv" in name else "\t")
    sheet.to_csv(work / "samples.tsv", sep="\t", index=False)
    return {"counts": name, "samples": "samples.tsv"}


def _snakemake(work: Path, *extra: str, timeout: int = 900) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "--cores", "2", *extra]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, timeout=timeout)


def run_experiment(work: Path, config: dict) -> Path:
    """Write config.yaml, run the workflow, make the report; every output of the run exists and is non-empty.

    The outputs are snakemake's own list (``--summary``: every file of every job of ``rule all``'s DAG). Prints
    the run's wall time (never asserted). Returns ``work/results``.
    """
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump({"results": "results", **config}, sort_keys=False))
    start = time.monotonic()
    proc = _snakemake(work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = _snakemake(work, "--report", "report.html")
    assert report.returncode == 0, report.stderr[-4000:]
    summary = _snakemake(work, "--summary")
    assert summary.returncode == 0, summary.stderr[-4000:]
    print(f"\n{work.name}: snakemake run + report + summary {time.monotonic() - start:.1f} s")
    files = pd.read_csv(io.StringIO(summary.stdout), sep="\t", dtype=str)
    assert len(files) >= 10 and (files["status"] == "ok").all(), files.loc[files["status"] != "ok"].to_string()
    for name in files["output_file"]:
        path = work / name
        assert path.exists(), name
        assert (any(path.iterdir()) if path.is_dir() else path.stat().st_size > 0), f"{name} is empty"
    assert (work / "results" / "run_info.html").is_file()
    html = (work / "report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "run_info" in html
    return work / "results"


def bulk_table(results: Path, contrast: str, name: str = "results.tsv") -> pd.DataFrame:
    return pd.read_csv(results / "bulk" / "de" / contrast / name, sep="\t", dtype={"gene_id": str, "gene_name": str},
                       keep_default_na=False, na_values=[""])


def subset_10x_h5(src: Path, dst: Path, n_cells: int) -> None:
    """The first ``n_cells`` barcodes of a Cell Ranger v3 .h5 (CSC matrix, features x barcodes), same layout."""
    import h5py

    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        for key, value in f.attrs.items():
            g.attrs[key] = value
        m, out = f["matrix"], g.create_group("matrix")
        indptr = m["indptr"][: n_cells + 1]
        end = int(indptr[-1])
        out.create_dataset("barcodes", data=m["barcodes"][:n_cells])
        out.create_dataset("data", data=m["data"][:end])
        out.create_dataset("indices", data=m["indices"][:end])
        out.create_dataset("indptr", data=indptr)
        out.create_dataset("shape", data=[int(m["shape"][0]), n_cells])
        f.copy(m["features"], out, name="features")
