"""Shared fixtures: where the repo and the real public datasets are; one numba cache for the session.

Two suites. The core suite reads only data in the repository (resources/, tests/data/) and runs on a bare clone.
The extended suite is every test marked ``extended``: the tests that use the ``shared_data`` fixture (marked here
at collection, also through another fixture) or the ``browser`` one, and tests/test_slurm.py. It runs when the
shared data folder is found ($DEGFLOW_SHARED_DATA, else ../shared/data beside the clone); without it each extended
test is skipped and pytest says so in one summary line. Under CI (CI=true) or DEGFLOW_REQUIRE_SHARED_DATA=1 a
missing folder stops the run at once, and any skipped test makes the run fail.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# One numba cache for the whole session, in the test processes and in every snakemake run they start (which
# inherit the variable; degflow.runtime.setup_job only sets NUMBA_CACHE_DIR when it is unset). Otherwise each
# run in its own temporary folder compiles every kernel again into its own `.snakemake/numba_cache`: 30-70 s
# per rule that uses numba (measured: sc_process 84 s cold vs 28 s warm on PBMC 3k). A new folder each session,
# because numba does not notice a change in a kernel that a cached kernel calls from another file. Set by the
# main process before pytest-xdist starts its workers, so they share it; a NUMBA_CACHE_DIR you set is kept.
if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="degflow-tests-numba-")
    atexit.register(shutil.rmtree, os.environ["NUMBA_CACHE_DIR"], ignore_errors=True)


#: The real-data subsets the core suite reads, in the layout of ``shared/data`` (each folder: SOURCE.md,
#: LICENSE.md); the airway counts themselves are the bundled example's, ``resources/airway``.
CORE_DATA = REPO / "tests" / "data"
SHARED_DATA_VAR = "DEGFLOW_SHARED_DATA"
#: Fixtures that put a test in the extended suite: the shared data folder, and a browser installed with apt-get.
#: A test file can also say ``pytestmark = pytest.mark.extended`` (tests/test_slurm.py: a SLURM cluster from apt).
EXTENDED_FIXTURES = {"shared_data", "browser"}
EXTENDED_SKIP = (f"extended suite not run: the shared data folder was not found; set {SHARED_DATA_VAR}=/path/to/"
                 "shared/data or put shared/data beside the clone (../shared/data)")


def find_shared_data() -> Path | None:
    """The real test datasets (``shared/data``, ~76 MB): ``$DEGFLOW_SHARED_DATA``, else ``<repo>/../shared/data``.

    Returns None when the variable is unset and no ``shared/data`` sits beside the clone: then only the core
    suite runs. A variable that names a folder without the datasets is an error, not a silent fall-back.
    """
    env = os.environ.get(SHARED_DATA_VAR)
    if env:
        if not Path(env, "airway", "counts.tsv").is_file():
            raise pytest.UsageError(f"degflow: {SHARED_DATA_VAR}={env} is not the shared data folder (it has no "
                                    "airway/counts.tsv); point it at shared/data, or unset it to run the core "
                                    "suite only")
        return Path(env)
    beside = REPO.parent / "shared" / "data"
    return beside if (beside / "airway" / "counts.tsv").is_file() else None


def _require_everything() -> str | None:
    """Why every test must run (CI, or DEGFLOW_REQUIRE_SHARED_DATA=1), or None on a user's machine."""
    if os.environ.get("DEGFLOW_REQUIRE_SHARED_DATA", "") not in ("", "0"):
        return "DEGFLOW_REQUIRE_SHARED_DATA is set"
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        return "CI is set"
    return None


def _skip_extended() -> None:
    """One call site, so pytest folds every such skip into one line of its summary (``-ra``)."""
    pytest.skip(EXTENDED_SKIP)


def pytest_configure(config):
    config.addinivalue_line("markers", "extended: needs the shared data folder or a machine that CI provides "
                                       "(apt-get as root); skipped, in one summary line, when the data are absent")
    config._degflow_shared_data = find_shared_data()
    reason = _require_everything()
    if reason and config._degflow_shared_data is None:
        raise pytest.UsageError(f"degflow: {reason}, so every test must run, but the shared data folder was not "
                                f"found: set {SHARED_DATA_VAR}=/path/to/shared/data or put shared/data beside "
                                "the clone")


def pytest_report_header(config):
    data = config._degflow_shared_data
    if data is None:
        return "degflow test data: core suite only (no shared data folder; see the summary at the end)"
    return f"degflow test data: core + extended suites, shared data {data}"


def pytest_runtest_setup(item):
    if item.config._degflow_shared_data is None and item.get_closest_marker("extended"):
        _skip_extended()


#: Skipped tests and modules seen by this process (with pytest-xdist: the controller, which gets every report).
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def pytest_collectreport(report):
    if report.skipped:  # a whole module, e.g. pytest.importorskip at its top
        _SKIPPED.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    """Under CI (or DEGFLOW_REQUIRE_SHARED_DATA=1) a skipped test fails the run: CI has the data, so it runs all."""
    if hasattr(session.config, "workerinput") or not _require_everything():
        return
    if _SKIPPED and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    ours = [r for r in skipped if isinstance(r.longrepr, tuple) and r.longrepr[2].endswith(EXTENDED_SKIP)]
    if ours and not terminalreporter.hasopt("s"):  # with -ra (pyproject) pytest prints them as one SKIPPED line
        tests = f"{len(ours)} test{'s' if len(ours) > 1 else ''}"
        terminalreporter.write_line(f"extended suite: {tests} skipped, " + EXTENDED_SKIP.split(": ", 1)[1])
    reason = _require_everything()
    if reason and _SKIPPED:
        n = len(_SKIPPED)
        terminalreporter.write_line(f"degflow: {n} test{'s' if n > 1 else ''} skipped, and {reason}: every test "
                                    "must run here, so the run fails", red=True)


#: Test files by how long they take, longest first (seconds in a full run on this 2-core machine, 2026-12).
#: pytest-xdist hands whole files to its 2 workers in this order (`--dist loadfile --no-loadscope-reorder` in
#: pyproject.toml): the workflow files start first and the short files fill the gaps at the end, instead of a long
#: file starting last while the other worker has run out of work. Files not listed (a few seconds each) follow in
#: name order; list a new slow file where its time puts it.
LONGEST_FIRST = (
    "test_workflow.py",  # 390 (first: it makes the bundled example's run that test_singlecell_workflow.py reads)
    "test_pseudobulk.py",  # 460
    "test_slurm.py",  # 290 (+ apt-get on a new machine)
    "test_scenarios_e2e_more.py",  # 260 (6 end-to-end snakemake runs: designs, count files, single cell)
    "test_scenarios_e2e_bulk.py",  # 230 (7 end-to-end snakemake runs: the airway matrix's shapes)
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
    "test_suites.py",  # 30 (pytest in throw-away clones: the core/extended split)
    "test_composition.py",  # 20 (one snakemake dry run)
    "test_bad_input.py",  # 15
    "test_bad_input_sc.py",  # 20
    "test_plots.py",  # 15
)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: tests keep their order in a file
    for item in items:  # a test that uses shared_data (even through another fixture) is an extended test
        if EXTENDED_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.extended)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def core_data() -> Path:
    """tests/data: the real-data subsets in the repository, laid out as in shared/data (core suite)."""
    return CORE_DATA


@pytest.fixture(scope="session")
def shared_data(pytestconfig) -> Path:
    """The shared data folder (extended suite); the test is skipped when it was not found."""
    if pytestconfig._degflow_shared_data is None:
        _skip_extended()
    return pytestconfig._degflow_shared_data


@pytest.fixture(scope="session")
def example_results(repo, tmp_path_factory) -> Path:
    """results/ of the bundled example run as the README runs it (2 cores), once per session for all workers.

    test_workflow.py checks its bulk part, test_singlecell_workflow.py its single-cell part (tests/example_run.py).
    """
    from example_run import shared_example_results

    return shared_example_results(repo, tmp_path_factory)


@pytest.fixture(scope="session")
def airway():
    """The airway experiment as shipped: (counts genes x samples, sample sheet, gene symbols). Do not mutate.

    resources/airway is the bundled example: the same bytes as shared/data/airway (its SOURCE.md)."""
    import pandas as pd

    d = REPO / "resources" / "airway"
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
