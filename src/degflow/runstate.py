"""Resuming a run that was killed: the lock Snakemake leaves behind when it cannot clean up.

A run killed by SIGKILL, a power cut or a cluster's wall-time limit leaves ``.snakemake/locks/`` behind, and
the next run refuses to start ("Directory cannot be locked") until ``--unlock``. :func:`clear_stale_lock`,
called when the workflow is parsed (before Snakemake takes its lock), removes such a lock when no Snakemake
process (nor one of its jobs) is running in the same folder on this machine, and the run that took the lock
was started on this machine (:func:`record_owner` notes the host; a run started on another node of a shared
filesystem is never unlocked from here: ``--unlock`` stays the way there). Outputs the killed jobs left
half-written are redone because the workflow's default profile (``profiles/default/config.yaml``) sets
``rerun-incomplete``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

#: Written by :func:`record_owner` when a run is about to take the lock: ``<host>\t<pid>``.
OWNER_FILE = "degflow_owner"


def _is_snakemake(cmdline: list[str]) -> bool:
    """A Snakemake process (``snakemake ...``, ``python -m snakemake``) or one of its script jobs."""
    for i, arg in enumerate(cmdline):
        if Path(arg).name == "snakemake" or (arg == "-m" and i + 1 < len(cmdline) and cmdline[i + 1] == "snakemake"):
            return True
        if "/.snakemake/scripts/" in arg or arg.startswith(".snakemake/scripts/"):
            return True
    return False


def snakemake_running_in(workdir: str | Path) -> list[int]:
    """Process ids of other Snakemake processes (or their jobs) whose working directory is ``workdir``.

    The current process and its ancestors are left out (the Snakemake run that is parsing the workflow).
    """
    import psutil  # a dependency of snakemake

    workdir = Path(workdir).resolve()
    me = psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = proc.info
        if info["pid"] in skip or not info.get("cmdline") or not info.get("cwd"):
            continue
        try:
            if Path(info["cwd"]).resolve() == workdir and _is_snakemake(info["cmdline"]):
                found.append(int(info["pid"]))
        except OSError:
            continue
    return found


def clear_stale_lock(workdir: str | Path = ".") -> bool:
    """Remove ``<workdir>/.snakemake/locks/*`` when no Snakemake runs in ``workdir``; True when removed.

    A lock held by a live run (another terminal, a dry run's sibling) is kept, so Snakemake still refuses
    to start two runs writing the same files.
    """
    lockdir = Path(workdir, ".snakemake", "locks")
    locks = [p for p in lockdir.glob("*.lock")] if lockdir.is_dir() else []
    if not locks or lock_host(workdir) not in (None, socket.gethostname()) or snakemake_running_in(workdir):
        return False
    for p in locks:
        try:
            os.remove(p)
        except FileNotFoundError:
            pass
    return True


def lock_host(workdir: str | Path = ".") -> str | None:
    """The host recorded by the run that last took the lock in ``workdir`` (None when not recorded)."""
    try:
        return Path(workdir, ".snakemake", OWNER_FILE).read_text().split("\t", 1)[0].strip() or None
    except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
        return None


def record_owner(workdir: str | Path = ".") -> None:
    """Note this host and process as the owner of the lock Snakemake is about to take (when there is none yet)."""
    snakedir = Path(workdir, ".snakemake")
    lockdir = snakedir / "locks"
    if lockdir.is_dir() and any(lockdir.glob("*.lock")):
        return  # a live run holds it: leave its record
    snakedir.mkdir(exist_ok=True)
    (snakedir / OWNER_FILE).write_text(f"{socket.gethostname()}\t{os.getpid()}\n")
