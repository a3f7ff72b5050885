"""Text files as degflow reads them: is it text, is it gzip, which separator, its first line, a table of strings.

Shared by the bulk count readers (:mod:`degflow.io.counts`, :mod:`degflow.io.genecounts`,
:mod:`degflow.io.quantifiers`, :mod:`degflow.io.annotation`), the single-cell readers and the sheet readers.
Compression is judged by a file's magic bytes, never its name; every problem raises
:class:`~degflow.errors.DegflowInputError` with one line naming the file.

:func:`check_text_file`
    stop early on a spreadsheet, PDF, BAM or broken gzip given where a text table is expected;
:func:`open_text`, :func:`is_gzip`, :func:`first_line`, :func:`show_line`
    open plain or gzipped text, peek at it and quote a line in a message;
:func:`strip_compression`, :func:`guess_sep`, :func:`read_table`
    read a delimited table as strings (no NA conversion), parser errors turned into input errors;
:func:`is_number`, :func:`check_exists`
    the small tests the readers share.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path
from typing import TextIO

import pandas as pd

from degflow.errors import DegflowInputError

__all__ = [
    "check_exists",
    "check_text_file",
    "first_line",
    "guess_sep",
    "is_gzip",
    "is_number",
    "open_text",
    "read_table",
    "show_line",
    "strip_compression",
]


#: Leading bytes of binary files a user may give instead of a text table.
_BINARY_SIGNATURES = {b"PK\x03\x04": "a zip archive (an Excel .xlsx / LibreOffice file?)",
                      b"\xd0\xcf\x11\xe0": "an old Excel .xls / Office file",
                      b"\xff\xfe": "UTF-16 text (Excel's 'Unicode Text'; save as UTF-8)",
                      b"\xfe\xff": "UTF-16 text (save it as UTF-8)",
                      b"%PDF": "a PDF", b"BAM\x01": "a BAM file (counts are made from BAMs, e.g. by featureCounts)"}


def check_text_file(path: str | Path, *, what: str, key: str) -> None:
    """Stop when a file meant to be a text table (plain or gzip) is binary: a spreadsheet, a PDF, a BAM...

    Folders and HDF5 files (kallisto's abundance.h5) are left to the readers.

    Raises
    ------
    DegflowInputError
        ``counts file 'x.xlsx' is not a text table (it looks like a zip archive ...); export ... as TSV or CSV``
    """
    path = Path(path)
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if head.startswith(b"\x89HDF"):
        return
    if head.startswith(b"\x1f\x8b"):
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(8192)
        except (EOFError, OSError, zlib.error) as exc:
            raise DegflowInputError(f"{what} '{path}' is a truncated or corrupt gzip file ({exc}); copy or "
                                    "download it again (gzip -t checks it)") from None
    kind = next((desc for sig, desc in _BINARY_SIGNATURES.items() if head.startswith(sig)), None)
    if kind is None and b"\x00" in head:
        kind = "a binary file"
    # Text in another encoding than UTF-8 (Latin-1, Windows-1252) is not binary: every byte decodes as Latin-1, so
    # no check here could flag it; the table readers stop on it with the file and line (io.sheets.read_sheet).
    if kind is not None:
        raise DegflowInputError(f"{what} '{path}' is not a text table (it looks like {kind}); {key} takes a "
                                "tab- or comma-separated text file: export spreadsheets as TSV or CSV")


def is_gzip(path: Path) -> bool:
    """True when ``path`` starts with gzip's magic bytes (whatever its name)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def open_text(path: Path, *, errors: str = "replace") -> TextIO:
    """Open a UTF-8 text file, gzip-compressed or not (judged by its magic bytes, not its name).

    Parameters
    ----------
    path
        The file.
    errors
        What to do with bytes that are not UTF-8, as :func:`open`: ``"replace"`` (the bulk count
        readers, whose messages then show the line) or ``"strict"`` (the single-cell readers).
    """
    if is_gzip(path):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors=errors, newline="")
    return open(path, encoding="utf-8", errors=errors, newline="")


def first_line(path: Path) -> str | None:
    """First non-blank line without its line ending, or ``None`` for an empty file."""
    with open_text(path) as fh:
        for line in fh:
            if line.strip():
                return line.rstrip("\r\n")
    return None


def show_line(line: str, *, limit: int = 100) -> str:
    """A line for a message: quoted, tabs shown as \\t, cut at ``limit`` characters."""
    return repr(line if len(line) <= limit else line[:limit] + "...")


def strip_compression(name: str) -> str:
    """``name`` without a trailing ``.gz``/``.bz2``/``.xz``/``.zip``."""
    for suf in (".gz", ".bz2", ".xz", ".zip"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


def guess_sep(path: Path, line: str) -> str:
    """The separator of a table: ``,`` for ``.csv``, tab for ``.tsv``/``.tab``/``.txt``, else whichever of the two
    its first ``line`` holds more of (tab on a tie)."""
    name = strip_compression(path.name).lower()
    if name.endswith(".csv"):
        return ","
    if name.endswith((".tsv", ".tab", ".txt")):
        return "\t"
    return "," if line.count(",") > line.count("\t") else "\t"


def read_table(path: Path, *, sep: str = "\t", header: int | None = 0, skiprows: int = 0,
               nrows: int | None = None) -> pd.DataFrame:
    """Read a delimited table as strings (no NA conversion), turning parser errors into input errors."""
    try:
        return pd.read_csv(path, sep=sep, header=header, skiprows=skiprows, dtype=str, keep_default_na=False,
                           compression="gzip" if is_gzip(path) else None, skip_blank_lines=True, nrows=nrows)
    except pd.errors.EmptyDataError:
        raise DegflowInputError(f"{path}: the file is empty; expected a count table") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[-1]
        raise DegflowInputError(f"{path}: cannot be parsed as a {sep!r}-separated table ({msg}); "
                                "check that every row has the same number of fields") from None


def is_number(text: str) -> bool:
    """True when ``float(text)`` parses (``"12"``, ``"1e3"``, ``"nan"``, ``"inf"``)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_exists(path: Path, *, what: str = "count file") -> None:
    """Stop with ``<path>: <what> not found; check the path`` when ``path`` does not exist."""
    if not path.exists():
        raise DegflowInputError(f"{path}: {what} not found; check the path")
