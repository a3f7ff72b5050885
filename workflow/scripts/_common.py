"""Shared set-up for the workflow's scripts (imported first by every script): a shim over degflow.runtime.

It puts the repository's ``src`` on ``sys.path`` (the rules' conda envs do not install degflow) and adapts
Snakemake's ``snakemake`` object to :func:`degflow.runtime.setup_job`, which does the work: threads, numba
cache, the log, and one ``degflow:`` line for an error (see its docstring). ``note`` and ``warn`` are
:func:`degflow.runtime.note` and :func:`degflow.runtime.warn`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parents[2] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

from degflow.runtime import note, setup_job, warn  # noqa: E402 - after the sys.path line; imports no numpy

__all__ = ["note", "setup", "warn"]


def setup(snakemake) -> int:
    """Prepare the process for a rule (:func:`degflow.runtime.setup_job`); returns the number of threads to use."""
    return setup_job(threads=getattr(snakemake, "threads", 1), log=snakemake.log[0] if snakemake.log else None,
                     rule=getattr(snakemake, "rule", "?"))
