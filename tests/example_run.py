"""The bundled example (config/config.yaml: airway bulk + PBMC 3k single-cell) run as the README runs it.

One run serves test_workflow.py (its bulk part) and test_singlecell_workflow.py (its single-cell part), also when
pytest-xdist puts the two files on different workers: the first worker to ask runs it into a folder of the session
(beside the workers' own temporary folders), holding a file lock; another worker waits for the lock and reads the
same results. A failed run is recorded, so the waiting worker fails with the same message instead of running again.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def run_example(repo: Path, results: Path, cores: int, targets: list[str] = ()) -> subprocess.CompletedProcess:
    """Run the bundled config exactly as the README does, into another results folder."""
    proc = subprocess.run(
        [str(SNAKEMAKE), *targets, "--cores", str(cores), "--config", f"results={results}", "--nolock"],
        cwd=repo, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return proc


def session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary folder shared by all workers of this session (each worker's own is one level down)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def shared_example_results(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """results/ of the bundled example run with 2 cores, made once per session."""
    root = session_folder(tmp_path_factory)
    results, done, failed = root / "example_cores2", root / "example_cores2.done", root / "example_cores2.failed"
    with open(root / "example_cores2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if failed.exists():
                pytest.fail(f"the bundled example's run (on another worker) failed:\n{failed.read_text()}")
            if not done.exists():
                try:
                    run_example(repo, results, 2)
                except Exception as err:
                    failed.write_text(f"{type(err).__name__}: {err}")
                    raise
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return results
