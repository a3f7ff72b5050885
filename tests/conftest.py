"""Shared fixtures: where the repo and the real public datasets are; one numba cache for the session."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One numba cache for the whole session, in the test processes and in every snakemake run they start (which
# inherit the variable; workflow/scripts/_common.py only sets NUMBA_CACHE_DIR when it is unset). Otherwise each
# run in its own temporary folder compiles every kernel again into its own `.snakemake/numba_cache`: 30-70 s
# per rule that uses numba (measured: sc_process 84 s cold vs 28 s warm on PBMC 3k). A new folder each session,
# because numba does not notice a change in a kernel that a cached kernel calls from another file. Set by the
# main process before pytest-xdist starts its workers, so they share it; a NUMBA_CACHE_DIR you set is kept.
if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="degflow-tests-numba-")
    atexit.register(shutil.rmtree, os.environ["NUMBA_CACHE_DIR"], ignore_errors=True)


def find_shared_data() -> Path:
    """Locate ``shared/data``: $DEGFLOW_SHARED_DATA, then ``<repo>/../shared/data``, then /work/shared/data.

    CI clones the repo with ``shared/`` beside it; a clone made elsewhere (``git clone . /tmp/x``)
    falls back to the workplace copy.
    """
    candidates = [os.environ.get("DEGFLOW_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"]
    for c in candidates:
        if c and Path(c, "airway", "counts.tsv").is_file():
            return Path(c)
    raise FileNotFoundError(
        "the real test datasets (shared/data) were not found; set DEGFLOW_SHARED_DATA to their folder"
    )


#: Test files by how long they take, longest first (seconds in a full run on this 2-core machine, 2026-12).
#: pytest-xdist hands whole files to its 2 workers in this order (`--dist loadfile --no-loadscope-reorder` in
#: pyproject.toml): the workflow files start first and the short files fill the gaps at the end, instead of a long
#: file starting last while the other worker has run out of work. Files not listed (a few seconds each) follow in
#: name order; list a new slow file where its time puts it.
LONGEST_FIRST = (
    "test_workflow.py",  # 390 (first: it makes the bundled example's run that test_singlecell_workflow.py reads)
    "test_pseudobulk.py",  # 460
    "test_slurm.py",  # 290 (+ apt-get on a new machine)
    "test_kernels.py",  # 230 (numba compiles each kernel for each dtype and memory layout)
    "test_new_user.py",  # 150 (two end-to-end snakemake runs: plain matrix, killed + resumed)
    "test_deseq.py",  # 100
    "test_lrt.py",  # 90 (one small snakemake run, 4 dry runs, the R comparisons)
    "test_formats_workflow.py",  # 100
    "test_batch_goi.py",  # 95 (one small snakemake run)
    "test_compound_workflow.py",  # 80
    "test_singlecell_workflow.py",  # 70
    "test_formats.py",  # 55
    "test_scenarios.py",  # 60 (13 bulk + 2 single-cell experiment shapes in process)
    "test_single_cell.py",  # 40
    "test_bad_input.py",  # 15
    "test_bad_input_sc.py",  # 20
    "test_plots.py",  # 15
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order in a file


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return find_shared_data()


@pytest.fixture(scope="session")
def example_results(repo, tmp_path_factory) -> Path:
    """results/ of the bundled example run as the README runs it (2 cores), once per session for all workers.

    test_workflow.py checks its bulk part, test_singlecell_workflow.py its single-cell part (tests/example_run.py).
    """
    from example_run import shared_example_results

    return shared_example_results(repo, tmp_path_factory)


@pytest.fixture(scope="session")
def airway(shared_data):
    """The airway experiment as shipped: (counts genes x samples, sample sheet, gene symbols). Do not mutate."""
    import pandas as pd

    d = shared_data / "airway"
    counts = pd.read_csv(d / "counts.tsv", sep="\t", index_col=0)
    samples = pd.read_csv(d / "samples.tsv", sep="\t", index_col=0)
    genes = pd.read_csv(d / "genes.tsv", sep="\t", index_col=0)
    return counts, samples, genes


def _ensure_chromium() -> tuple[str, str]:
    """Chromium and ChromeDriver from Debian, installed when missing (CI runs as root on a new machine)."""
    import shutil
    import subprocess

    from apt_lock import apt_lock

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    steps = [["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]]
    with apt_lock():
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True,
                                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if proc.returncode != 0:
                pytest.fail(f"could not install Chromium for the browser test ({' '.join(cmd)}): {proc.stderr[-500:]}")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("chromium / chromedriver still missing after apt-get install")
    return chromium, driver


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium driven by Selenium, with the browser console log captured."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = _ensure_chromium()
    opts = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-quic", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.binary_location = chromium
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield drv
    drv.quit()
