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
