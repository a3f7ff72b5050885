"""One apt-get at a time: the browser and SLURM fixtures may install packages from parallel pytest workers."""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def apt_lock(path: str | None = None) -> Iterator[None]:
    """Hold an exclusive file lock while apt-get runs (dpkg refuses a second concurrent install).

    The lock file is ``degflow-tests-apt.lock`` in the temporary folder (``$TMPDIR``) unless ``path`` is given."""
    with open(path or Path(tempfile.gettempdir(), "degflow-tests-apt.lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
