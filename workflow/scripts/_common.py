"""Shared set-up for the workflow's scripts (imported first by every script).

``setup(snakemake)`` sends stderr and logging to the rule's log, sets ``NUMBA_CACHE_DIR`` before numba
is imported, caps BLAS/OpenMP and numba at the rule's threads, and turns a DegflowInputError into one
line (in the log and on the terminal) instead of a traceback; any other error keeps its traceback in the log
and gets one ``degflow: rule <rule> failed: <error> (traceback in <log>)`` line on the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parents[2] / "src"
if str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))


#: The terminal's stderr (setup() sends sys.stderr to the rule's log).
_TERMINAL = sys.stderr


def note(message: str) -> None:
    """Tell the user something the run did not stop for: one ``degflow note:`` line on the terminal and in the log."""
    line = f"degflow note: {message}"
    logging.getLogger("degflow").warning(message)
    if sys.stderr is not _TERMINAL:
        print(line, file=_TERMINAL, flush=True)


def warn(message: str) -> None:
    """A warning the user must see: in the rule's log and, as one ``degflow: warning:`` line, on the terminal."""
    import logging as _logging

    _logging.getLogger("degflow").warning(message)
    if sys.stderr is not _TERMINAL:
        print(f"degflow: warning: {message}", file=_TERMINAL, flush=True)


def setup(snakemake) -> int:
    """Prepare the process for a rule; returns the number of threads to use.

    Threads go to numba kernels and to per-gene work split in blocks (joblib), whose results do
    not depend on the number of threads. BLAS stays single-threaded: a multi-threaded OpenBLAS
    sums in a different order with 1 and 2 threads (measured: log2 fold changes 1e-9 apart on
    airway), which would break "byte-identical tables whatever the thread count".
    """
    threads = int(getattr(snakemake, "threads", 1) or 1)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    os.environ["NUMBA_NUM_THREADS"] = str(threads)
    # numba's OpenMP pool busy-waits by default; with two jobs on two cores that made 2 threads up to 6x
    # slower than 1 (measured by benchmarks/kernels.py under load).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(".snakemake", "numba_cache").resolve()))
    os.environ.setdefault("MPLBACKEND", "Agg")
    global _TERMINAL
    terminal = _TERMINAL = sys.stderr
    if snakemake.log:
        Path(snakemake.log[0]).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115 - lives as long as the process
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)

    from degflow.errors import DegflowInputError

    rule = getattr(snakemake, "rule", "?")
    log_file = snakemake.log[0] if snakemake.log else None

    def _hook(exc_type, exc, tb):
        if issubclass(exc_type, DegflowInputError):
            msg = f"degflow: {exc}"
            print(msg, file=sys.stderr, flush=True)
            if sys.stderr is not terminal:
                print(msg, file=terminal, flush=True)
            return  # the process still exits with status 1: Snakemake removes this job's outputs
        sys.__excepthook__(exc_type, exc, tb)  # the traceback goes to the log
        if sys.stderr is not terminal:  # and one line to the terminal, above Snakemake's "Error in rule"
            text = " ".join(str(exc).split())
            text = text if len(text) <= 300 else text[:300] + "..."
            print(f"degflow: rule {rule} failed: {exc_type.__name__}: {text} (traceback in {log_file})",
                  file=terminal, flush=True)

    sys.excepthook = _hook
    if "numpy" in sys.modules:  # loaded before us (e.g. by the script preamble): cap the live pools too
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="blas")
    logging.getLogger("degflow").info("rule %s: %d thread(s)", getattr(snakemake, "rule", "?"), threads)
    return threads
