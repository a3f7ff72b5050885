"""One process's runtime: thread budget, numba cache location, and a workflow job's log and error line.

A Snakemake job gets ``threads: n`` and must not use more: numba's ``prange`` pool and the
BLAS/OpenMP pools of NumPy/SciPy (OpenBLAS, MKL, libgomp) each default to every core, so two
jobs side by side on a 2-core machine would run 8 threads. :func:`configure_runtime` sets all
of them once, at the start of a script: numba gets ``n`` threads, BLAS 1 (the workflow's
policy: results must not depend on the thread count, and a multi-threaded OpenBLAS changes its
summation order with it). :func:`set_threads` and :func:`threads` change the numba count later;
a kernel call with ``n_threads=...`` uses :func:`threads`.

Numba reads ``NUMBA_CACHE_DIR`` when it is imported and fixes each kernel's cache location
when the kernel module is imported, so the cache directory must be set **before**
``import numba`` (and before ``import degflow.kernels.jit``, scanpy or pydeseq2, which import
numba). On a read-only install (a conda env in a shared prefix, a container) numba cannot
write its cache beside the sources and would recompile every kernel in every job (tens of
seconds); a writable ``NUMBA_CACHE_DIR`` (:func:`setup_job` uses ``.snakemake/numba_cache``)
makes the compile a one-off.

:func:`setup_job` is the whole set-up of a workflow job (every ``workflow/scripts/*.py`` calls it
through ``_common.setup``): :func:`configure_runtime`, the log, and one ``degflow:`` line for an
error; :func:`note` and :func:`warn` tell the user something on the terminal from inside a job.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

__all__ = ["configure_runtime", "note", "resolve_threads", "set_threads", "setup_job", "threads", "warn"]

logger = logging.getLogger(__name__)

# Environment variables read by the thread pools when their library is loaded.
_POOL_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

#: The terminal's stderr: :func:`setup_job` sends ``sys.stderr`` to the job's log, :func:`note` and
#: :func:`warn` still reach the terminal through this.
_TERMINAL = sys.stderr


def _check_n(n_threads: object, name: str = "n_threads") -> int:
    # operator.index accepts int and numpy integers without importing numpy here (numpy must
    # not be loaded before configure_runtime has set the BLAS variables).
    try:
        if isinstance(n_threads, bool):
            raise TypeError
        n = operator.index(n_threads)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a positive int or None, got {n_threads!r}") from None
    if n < 1:
        raise ValueError(f"{name} must be >= 1, got {n}")
    return n


def configure_runtime(
    *,
    n_threads: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    blas_threads: int | None = 1,
) -> None:
    """Set the numba cache folder and cap every thread pool of this process.

    Call it first thing in a script, before numba, numpy, scanpy, pydeseq2 or
    :mod:`degflow.kernels.jit` are imported (:func:`setup_job`, which every workflow script
    runs through ``workflow/scripts/_common.setup``, calls it).

    Parameters
    ----------
    n_threads
        Thread budget of the process (``snakemake.threads``) for numba kernels: sets
        ``NUMBA_NUM_THREADS`` (read when numba is imported) if numba is not imported yet, else
        ``numba.set_num_threads``. ``None`` leaves numba alone.
    cache_dir
        Writable folder for numba's on-disk cache (created if missing); exported as
        ``NUMBA_CACHE_DIR``. If numba is already imported the setting is also pushed into
        ``numba.config``, which only affects kernels defined afterwards: a warning says so
        when :mod:`degflow.kernels.jit` was imported first. ``None`` leaves it alone.
    blas_threads
        Threads for BLAS/OpenMP (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
        ``MKL_NUM_THREADS``; applied to the loaded BLAS at run time too if numpy is already
        loaded). Default 1, the workflow's policy: a multi-threaded OpenBLAS sums in a
        thread-dependent order (measured: log2 fold changes 1e-9 apart on airway with 1 and 2
        threads), so results would change with the thread count. ``None`` leaves BLAS alone.

    Also sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set: numba's OpenMP threads then sleep
    at the end of a parallel region instead of spinning. On a busy machine (several jobs on
    the same cores) spinning threads steal the time slices their team waits for; measured on
    this project's 2-core machine at load 8: a 10 ms kernel on 2 threads took 6x longer than
    on 1 with spinning, and no longer with passive waiting. Waking a sleeping thread costs
    microseconds; degflow's kernels run for milliseconds or more. It takes effect only if set
    before numba starts its threads (the first parallel kernel call).
    """
    if blas_threads is not None:
        b = _check_n(blas_threads, "blas_threads")
        for var in _POOL_ENV:
            os.environ[var] = str(b)
    if n_threads is not None:
        n = _check_n(n_threads)
        if "numba" in sys.modules:  # its pool size is fixed at import: a changed NUMBA_NUM_THREADS would only make
            set_threads(n, blas_threads=None)  # numba's next config reload fail ("Cannot set NUMBA_NUM_THREADS ...")
        else:
            os.environ["NUMBA_NUM_THREADS"] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if cache_dir is not None:
        path = Path(cache_dir).resolve()
        path.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(path)
        if "numba" in sys.modules:
            import numba

            numba.config.CACHE_DIR = str(path)
            if "degflow.kernels.jit" in sys.modules:
                warnings.warn(
                    "configure_runtime(cache_dir=...) was called after degflow.kernels.jit was imported; "
                    "its kernels keep their old cache location. Call configure_runtime before importing "
                    "degflow.kernels.jit, scanpy or pydeseq2.",
                    RuntimeWarning,
                    stacklevel=2,
                )
    if blas_threads is not None and "numpy" in sys.modules:  # its OpenBLAS read the variables when it was loaded
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=b, user_api="blas")


def setup_job(*, threads: int | None, log: str | os.PathLike[str] | None = None, rule: str = "?") -> int:
    """Prepare the process of one workflow job (a rule's script); returns the number of threads to use.

    ``workflow/scripts/_common.setup(snakemake)`` calls it first thing in every script. It

    - caps the thread pools with :func:`configure_runtime`: numba gets ``threads`` (its kernels and the
      per-gene work split in blocks, whose results do not depend on the number of threads), BLAS 1;
      numba's cache goes to ``NUMBA_CACHE_DIR`` if set, else ``.snakemake/numba_cache``;
      ``MPLBACKEND`` defaults to ``Agg``;
    - sends stderr and logging (``%(asctime)s %(levelname)s %(name)s: ...`` at INFO) to ``log``;
    - turns a :class:`~degflow.errors.DegflowInputError` into one ``degflow: <message>`` line (in the log and
      on the terminal) instead of a traceback; any other error keeps its traceback in the log and gets one
      ``degflow: rule <rule> failed: <error> (traceback in <log>)`` line on the terminal. The process still
      exits with status 1, so Snakemake removes the job's outputs.

    Parameters
    ----------
    threads
        The rule's ``threads`` (``None`` or 0: 1).
    log
        The rule's log file (its folder is created), or ``None`` to keep stderr.
    rule
        The rule's name, for the log and the terminal line of an unexpected error.

    Returns
    -------
    The thread count, for the library calls' ``n_threads``/``n_cpus``.
    """
    global _TERMINAL
    n = int(threads or 1)
    configure_runtime(n_threads=n, blas_threads=1,
                      cache_dir=None if "NUMBA_CACHE_DIR" in os.environ else Path(".snakemake", "numba_cache"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    terminal = _TERMINAL = sys.stderr
    if log:
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        sys.stderr = open(log, "w")  # noqa: SIM115 - lives as long as the process
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)

    from degflow.errors import DegflowInputError

    log_file = log if log else None

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
    logging.getLogger("degflow").info("rule %s: %d thread(s)", rule, n)
    return n


def note(message: str) -> None:
    """Tell the user something the run did not stop for: one ``degflow note:`` line on the terminal and in the log.

    In a workflow job (after :func:`setup_job`) the log gets it through logging (``degflow`` logger, WARNING)
    and the terminal as one ``degflow note: <message>`` line; elsewhere only logging sees it.
    """
    logging.getLogger("degflow").warning(message)
    if sys.stderr is not _TERMINAL:
        print(f"degflow note: {message}", file=_TERMINAL, flush=True)


def warn(message: str) -> None:
    """A warning the user must see: in the job's log and, as one ``degflow: warning:`` line, on the terminal.

    As :func:`note`, with the terminal line ``degflow: warning: <message>``.
    """
    logging.getLogger("degflow").warning(message)
    if sys.stderr is not _TERMINAL:
        print(f"degflow: warning: {message}", file=_TERMINAL, flush=True)


def resolve_threads(n_threads: int | None) -> int:
    """The numba thread count a kernel call will use: ``n_threads``, capped at numba's pool size.

    ``None`` means the current setting (``numba.get_num_threads()``). A request above the pool
    size (``NUMBA_NUM_THREADS``, by default the number of cores) is lowered with a warning.
    """
    import numba

    if n_threads is None:
        return int(numba.get_num_threads())
    n = _check_n(n_threads)
    pool = int(numba.config.NUMBA_NUM_THREADS)
    if n > pool:
        warnings.warn(
            f"n_threads={n} is more than numba's thread pool ({pool} threads, NUMBA_NUM_THREADS); "
            f"using {pool}",
            RuntimeWarning,
            stacklevel=3,
        )
        n = pool
    return n


def set_threads(n_threads: int | None, *, blas_threads: int | None = 1) -> int:
    """Run numba kernels on ``n_threads`` threads and cap BLAS/OpenMP at ``blas_threads``; returns the numba count.

    ``n_threads=None`` restores numba's full pool (``NUMBA_NUM_THREADS``). ``blas_threads``:
    default 1 (see :func:`configure_runtime`), ``None`` leaves BLAS alone. Either way no
    process runs more than ``max(n_threads, blas_threads)`` compute threads at a time (degflow's
    kernels call no BLAS). The setting stays until changed; :func:`threads` is the temporary
    form. numba's count is per calling Python thread.
    """
    import numba

    n = int(numba.config.NUMBA_NUM_THREADS) if n_threads is None else resolve_threads(n_threads)
    numba.set_num_threads(n)
    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=_check_n(blas_threads, "blas_threads"))  # not a `with`: stays in place
    logger.debug("threads: numba %d, BLAS/OpenMP %s", n, blas_threads if blas_threads is not None else "unchanged")
    return n


@contextlib.contextmanager
def threads(n_threads: int | None, *, blas_threads: int | None = None) -> Iterator[int]:
    """Temporarily run numba kernels on ``n_threads`` threads (and, if given, BLAS on ``blas_threads``).

    Yields the numba thread count actually used; ``None`` keeps numba's current setting.
    Restores both on exit. numba's setting is per calling Python thread, so this is safe to use
    from several threads. degflow's kernels use it with BLAS untouched (they call no BLAS, and
    threadpoolctl's scan of the loaded libraries costs ~1 ms).
    """
    import numba

    before = numba.get_num_threads()
    n = before if n_threads is None else resolve_threads(n_threads)
    numba.set_num_threads(n)
    try:
        if blas_threads is None:
            yield n
        else:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=_check_n(blas_threads, "blas_threads")):
                yield n
    finally:
        numba.set_num_threads(before)
