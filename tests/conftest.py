"""Shared fixtures: where the repo and the real public datasets are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return find_shared_data()


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
