"""One apt-get at a time: the browser and SLURM fixtures may install packages from parallel pytest workers."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def apt_lock(path: str = "/tmp/degflow-tests-apt.lock") -> Iterator[None]:
    """Hold an exclusive file lock while apt-get runs (dpkg refuses a second concurrent install)."""
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
