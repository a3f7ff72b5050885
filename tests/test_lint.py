"""The linters of issue 19 are clean: ruff (pyproject's [tool.ruff]), snakefmt ([tool.snakefmt]) and ``snakemake --lint``.

Each runs as a subprocess on the repository as it is, in seconds; a finding fails the test with the linter's own
report. Fix a finding with ``ruff check --fix`` / ``snakefmt Snakefile workflow/rules/`` (see pyproject.toml).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

BIN = Path(sys.executable).parent


def _run(repo: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(a) for a in args], cwd=cwd or repo, capture_output=True, text=True, env=env,
                          timeout=300)


def test_ruff_is_clean(repo):
    proc = _run(repo, BIN / "ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_bans_raw_numba_njit(repo, tmp_path):
    """The TID251 ban is switched on: a raw ``numba.njit`` outside degflow.kernels.jit.jit is a finding."""
    bad = tmp_path / "kernel.py"
    bad.write_text("import numba\n\n\n@numba.njit(cache=True)\ndef f(x):\n    return x\n")
    proc = _run(repo, BIN / "ruff", "check", "--no-cache", "--config", repo / "pyproject.toml",
                "--output-format", "concise", bad)
    assert proc.returncode == 1 and "TID251" in proc.stdout and "degflow.kernels.jit.jit" in proc.stdout, proc.stdout


def test_snakefmt_is_clean(repo):
    proc = _run(repo, BIN / "snakefmt", "--check", "Snakefile", "workflow/rules/")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _lint(repo: Path, configfile: Path, cwd: Path | None = None) -> str:
    proc = _run(repo, BIN / "snakemake", "-s", repo / "Snakefile", "--lint", "--configfile", configfile, cwd=cwd)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Lints for" not in out, out[-5000:]
    assert "Congratulations, your workflow is in a good condition!" in out, out[-5000:]
    return out


def test_snakemake_lint_bundled_config(repo):
    """Bulk and single-cell rules as the bundled config/config.yaml defines them."""
    _lint(repo, repo / "config" / "config.yaml")


def test_snakemake_lint_compound_study(repo):
    """The compound-study rules (rescue, pathway panels, enrichment), defined by the bundled GSE121659 example."""
    _lint(repo, repo / "config" / "examples" / "gse121659.yaml")


def test_snakemake_lint_pseudobulk_and_composition(repo, shared_data, tmp_path):
    """The pseudobulk and composition rules, defined by the Kang 2018 example (its files are in the shared data)."""
    cfg = yaml.safe_load((repo / "config/examples/kang2018.yaml").read_text())
    sheet = pd.read_csv(repo / "config/examples/kang2018_samples.tsv", sep="\t")
    sheet["path"] = [str(shared_data / "kang2018_ifnb_8donors_h5" / f"{s}.h5") for s in sheet["sample"]]
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    sc = cfg["singlecell"]
    sc.update(samples=str(tmp_path / "samples.tsv"), markers=str(repo / sc["markers"]))
    assert sc.get("pseudobulk") and sc.get("composition"), "kang2018.yaml no longer defines these rules"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "singlecell": sc}))
    _lint(repo, tmp_path / "config.yaml", cwd=tmp_path)
