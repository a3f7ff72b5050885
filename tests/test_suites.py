"""The core / extended split of the test suite (tests/conftest.py), on a throw-away copy of the conftest.

Each case runs pytest in a subprocess on a folder laid out as a clone (``<tmp>/clone/tests``) with two tests: one
that reads nothing from outside (core) and one that uses ``shared_data`` (extended). The shared data folder is a
stand-in with ``airway/counts.tsv``; the real one is not read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = '''
import pytest


def test_core():
    assert 1 + 1 == 2


def test_extended(shared_data):
    assert (shared_data / "airway" / "counts.tsv").is_file()
'''


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    tests = tmp_path / "clone" / "tests"
    tests.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("conftest.py"), tests / "conftest.py")
    (tests / "test_two.py").write_text(TESTS)
    return tmp_path / "clone"


def _shared(root: Path) -> Path:
    (root / "shared" / "data" / "airway").mkdir(parents=True)
    (root / "shared" / "data" / "airway" / "counts.tsv").write_text("gene_id\tA\ng1\t1\n")
    return root / "shared" / "data"


def _pytest(clone: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items()
            if k not in ("CI", "DEGFLOW_SHARED_DATA", "DEGFLOW_REQUIRE_SHARED_DATA", "PYTEST_ADDOPTS")}
    base["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # no xdist etc.: ~5 s less per run
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=clone, capture_output=True, text=True, timeout=120, env={**base, **env})


def test_bare_clone_runs_the_core_suite_and_says_so_in_one_line(clone: Path) -> None:
    proc = _pytest(clone)
    assert proc.returncode == 0, proc.stdout
    assert "1 passed, 1 skipped" in proc.stdout
    lines = [ln for ln in proc.stdout.splitlines() if "DEGFLOW_SHARED_DATA" in ln]
    assert lines == ["extended suite: 1 test skipped, the shared data folder was not found; set "
                     "DEGFLOW_SHARED_DATA=/path/to/shared/data or put shared/data beside the clone (../shared/data)"]
    # with -ra (pyproject.toml) pytest's own summary folds the skips into one line instead
    proc = _pytest(clone, "-ra")
    lines = [ln for ln in proc.stdout.splitlines() if "DEGFLOW_SHARED_DATA" in ln]
    assert len(lines) == 1 and lines[0].startswith("SKIPPED [1] tests/conftest.py:"), proc.stdout


def test_data_beside_the_clone_or_in_the_variable_run_everything(clone: Path, tmp_path: Path) -> None:
    _shared(tmp_path)  # <tmp>/shared/data beside <tmp>/clone
    proc = _pytest(clone, "-ra")
    assert proc.returncode == 0 and "2 passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout
    assert "extended suites, shared data " + str(tmp_path / "shared" / "data") in proc.stdout
    proc = _pytest(clone, "-m", "not extended")  # the core suite alone
    assert proc.returncode == 0 and "1 passed, 1 deselected" in proc.stdout, proc.stdout
    other = _shared(tmp_path / "elsewhere")
    shutil.rmtree(tmp_path / "shared")
    proc = _pytest(clone, DEGFLOW_SHARED_DATA=str(other))
    assert proc.returncode == 0 and "2 passed" in proc.stdout, proc.stdout


def test_a_wrong_variable_is_an_error(clone: Path, tmp_path: Path) -> None:
    proc = _pytest(clone, DEGFLOW_SHARED_DATA=str(tmp_path))
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"degflow: DEGFLOW_SHARED_DATA={tmp_path} is not the shared data folder (it has no airway/counts.tsv)" \
        in proc.stderr


@pytest.mark.parametrize("env", [{"CI": "true"}, {"DEGFLOW_REQUIRE_SHARED_DATA": "1"}], ids=["CI", "require"])
def test_ci_needs_the_data_and_fails_on_any_skip(clone: Path, tmp_path: Path, env: dict[str, str]) -> None:
    proc = _pytest(clone, **env)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR and "passed" not in proc.stdout
    assert "so every test must run, but the shared data folder was not found" in proc.stderr
    _shared(tmp_path)
    assert _pytest(clone, **env).returncode == 0
    (clone / "tests" / "test_skips.py").write_text("import pytest\n\n\ndef test_x():\n    pytest.skip('no tool')\n")
    proc = _pytest(clone, **env)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
    assert "2 passed, 1 skipped" in proc.stdout
    assert "degflow: 1 test skipped, and " in proc.stdout and "every test must run here, so the run fails" in proc.stdout
