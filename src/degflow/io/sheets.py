"""Sample sheets: the one reader every sheet goes through, and the bulk sample sheet.

The shared rules, whatever the sheet (bulk, single-cell):

* TSV, or CSV when the name ends in ``.csv``; UTF-8 text (a Latin-1 / Windows-1252 file, a spreadsheet or any
  binary file stops with the file and line named);
* every cell is read as text: no NA conversion, so sample names and IDs such as ``0001`` or ``NA12878`` stay as
  written; a cell is *missing* when it is empty or one of :data:`MISSING_VALUES` (:func:`is_missing`);
* a row with more fields than the header stops with the line named;
* sample names may be neither empty nor repeated (:func:`blank_row`, :func:`repeated_rows`, each caller saying
  which sheet and key).

=============================  ==========================================================================
:func:`read_sheet`             any sheet file -> its cells as text, with one-line errors for bad files
:func:`read_sample_sheet`      the bulk sample sheet, indexed by sample, numeric columns converted
:func:`read_bulk_sheet`        the bulk sample sheet with technical replicates (a ``unit`` column)
=============================  ==========================================================================

The single-cell sheet's own checks (``path``, ``format``, QC overrides) are
:func:`degflow.io.singlecell.validate_sample_sheet`, reading through :func:`read_sheet`.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError
from degflow.io.text import check_text_file

__all__ = [
    "MISSING_VALUES",
    "UNIT_COLUMN",
    "blank_row",
    "is_missing",
    "read_bulk_sheet",
    "read_sample_sheet",
    "read_sheet",
    "repeated_rows",
    "separator",
]

log = logging.getLogger("degflow")

#: Cell values that mean "missing" in a sample sheet (R's and spreadsheets' spellings), besides an empty cell.
MISSING_VALUES = frozenset({"NA", "N/A", "n/a", "na", "NaN", "nan", "#N/A", "NULL", "null"})

#: Sample-sheet column naming technical replicates (several rows, one per unit, for one sample).
UNIT_COLUMN = "unit"


def is_missing(values: pd.Series) -> pd.Series:
    """True where a sample-sheet value is missing: NaN, an empty cell, or one of :data:`MISSING_VALUES`."""
    text = values.astype(str).str.strip()
    return values.isna() | (text == "") | text.isin(MISSING_VALUES)


def separator(path: str | Path) -> str:
    """The field separator of a sheet: ``,`` when its name ends in ``.csv``, else a tab."""
    return "," if Path(path).suffix.lower() == ".csv" else "\t"


def blank_row(values: pd.Series) -> int | None:
    """The sheet row (the header is row 1) of the first empty value, or None when every value is given."""
    empty = np.flatnonzero(values == "")
    return int(empty[0]) + 2 if empty.size else None


def repeated_rows(values: pd.Series) -> tuple[str, list[int]] | None:
    """The first value given twice and every sheet row holding it (the header is row 1), or None."""
    dup = values[values.duplicated()]
    if not len(dup):
        return None
    return dup.iloc[0], [int(i) + 2 for i in np.flatnonzero(values == dup.iloc[0])]


def read_sheet(path: str | Path, *, what: str, key: str, not_found: str, empty: str,
               comment: str | None = None) -> pd.DataFrame:
    """A sheet's cells as text (``pandas.read_csv``, no NA conversion), with one-line errors for bad files.

    Parameters
    ----------
    path
        The sheet: TSV, or CSV by extension (:func:`separator`); plain or gzip.
    what
        The sheet as messages name it (``sample sheet``, ``single-cell sample sheet``).
    key
        The config key that names the sheet (``bulk.samples``), for the binary-file message.
    not_found, empty
        The messages when the file does not exist, and when it holds no header.
    comment
        Lines starting with this character are skipped (``#`` for the single-cell sheet).

    Returns
    -------
    pandas.DataFrame
        The header as columns, every cell a ``str`` (empty cells ``""``).

    Raises
    ------
    DegflowInputError
        The file does not exist or is empty; it is not text (a spreadsheet, a binary file); it is not UTF-8
        (e.g. Latin-1 / Windows-1252 from Excel; the line is named); a row has more fields than the header
        (the line is named).
    """
    path = Path(path)
    if not path.is_file():
        raise DegflowInputError(not_found)
    check_text_file(path, what=what, key=key)
    sep = separator(path)
    kind = "CSV" if sep == "," else "TSV"
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, comment=comment)
    except pd.errors.EmptyDataError:
        raise DegflowInputError(empty) from None
    except UnicodeDecodeError as exc:
        data, line = path.read_bytes(), ""
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            if not data.startswith(b"\x1f\x8b"):  # a gzip file's byte offsets are not the text's
                line = f", line {data[: err.start].count(10) + 1}"  # 10: the newline byte
        raise DegflowInputError(
            f"{what} '{path}'{line}: the file is not UTF-8 text (Latin-1 or Windows-1252, as Excel saves it? byte "
            f"{exc.object[exc.start:exc.start + 1]!r}); save the sheet as UTF-8 {kind}") from None
    except pd.errors.ParserError as exc:
        found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        detail = (f", line {found.group(2)}: {found.group(3)} fields where the header has {found.group(1)}"
                  if found else f": {str(exc).strip().splitlines()[0] if str(exc).strip() else 'unreadable'}")
        raise DegflowInputError(
            f"{what} '{path}'{detail} (a stray {'comma' if sep == ',' else 'tab'} or an unquoted value with one?); "
            f"fix that row and save the sheet as UTF-8 {kind}") from None


def _read_bulk_table(path: Path) -> pd.DataFrame:
    """The bulk sample sheet's cells as text (:func:`read_sheet` with the ``bulk.samples`` messages)."""
    if path.is_dir():
        raise DegflowInputError(f"sample sheet '{path}' is a folder: bulk.samples names the sheet file (TSV/CSV) "
                                "inside it")
    return read_sheet(path, what="sample sheet", key="bulk.samples",
                      not_found=f"sample sheet '{path}' does not exist: check bulk.samples in the config",
                      empty=f"sample sheet '{path}' is empty: it needs a header and one row per sample")


def _sample_sheet(sheet: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The checks and conversions of :func:`read_sample_sheet` on the sheet's text cells."""
    if sheet.shape[1] < 1 or sheet.columns[0] not in ("sample", "sample_id"):
        first = sheet.columns[0] if sheet.shape[1] else ""
        raise DegflowInputError(
            f"sample sheet '{path}': the first column is '{first}', it must be named 'sample' or 'sample_id'"
            + (" (is the file tab-separated? use .csv for comma-separated sheets)" if "," in first else "")
        )
    if sheet.empty:
        raise DegflowInputError(f"sample sheet '{path}' has a header but no samples")
    name_col = sheet.columns[0]
    names = sheet[name_col].str.strip()
    row = blank_row(names)
    if row is not None:
        raise DegflowInputError(f"sample sheet '{path}', row {row}: the sample name is empty")
    again = repeated_rows(names)
    if again is not None:
        raise DegflowInputError(
            f"sample sheet '{path}': sample name '{again[0]}' appears more than once (rows {again[1]}); names must be "
            "unique"
        )
    sheet = sheet.set_index(names.rename("sample")).drop(columns=[name_col])
    for col in sheet.columns:
        values = sheet[col].str.strip()
        nonempty = values[~is_missing(values)]
        if len(nonempty) and pd.to_numeric(nonempty, errors="coerce").notna().all():
            sheet[col] = pd.to_numeric(values.where(~is_missing(values), np.nan))
        else:
            sheet[col] = values
    return sheet


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read a bulk sample sheet (TSV, or CSV by extension) indexed by sample name.

    The first column must be ``sample`` or ``sample_id``. Columns whose every non-missing value is a
    number become numeric (continuous covariates; missing values NaN); the rest stay strings.

    Raises
    ------
    DegflowInputError
        Missing or empty file, wrong first column, empty or duplicate sample names (and every
        :func:`read_sheet` error).
    """
    path = Path(path)
    return _sample_sheet(_read_bulk_table(path), path)


def read_bulk_sheet(path: str | Path, *, single_file: bool = False) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Read the bulk sample sheet, with technical replicates when it has a ``unit`` column.

    Parameters
    ----------
    path
        Sample sheet (TSV, or CSV by extension); first column ``sample`` or ``sample_id``.
    single_file
        The counts are one file for all samples (``bulk.counts.path``): each ``unit`` then names
        a column of that file. Otherwise each unit row gives its own ``counts_path``.

    Returns
    -------
    sheet, units
        Without a ``unit`` column: :func:`read_sample_sheet` and ``None``. With one: one row per
        sample (``unit`` and ``counts_path`` removed; numeric columns converted, an empty cell
        only counting as missing), and the units (index: the count column, or
        ``"<sample>/<unit>"`` for per-unit files; columns ``sample``, ``unit`` [, ``counts_path``]).

    Raises
    ------
    DegflowInputError
        Empty sample or unit names, a (sample, unit) pair given twice, units of one sample that
        disagree in another column, a unit without ``counts_path`` (and every :func:`read_sample_sheet`
        error).
    """
    path = Path(path)
    raw = _read_bulk_table(path)
    if UNIT_COLUMN not in raw.columns or raw.columns[0] not in ("sample", "sample_id") or raw.empty:
        return _sample_sheet(raw, path), None
    name_col = raw.columns[0]
    raw = raw.apply(lambda col: col.str.strip())
    for col, what in ((name_col, "sample name"), (UNIT_COLUMN, "unit")):
        row = blank_row(raw[col])
        if row is not None:
            raise DegflowInputError(f"sample sheet '{path}', row {row}: the {what} is empty")
    dup = raw.duplicated([name_col, UNIT_COLUMN], keep=False)
    if dup.any():
        rows = [int(i) + 2 for i in np.flatnonzero(dup)][:2]
        first = raw.loc[dup].iloc[0]
        raise DegflowInputError(f"sample sheet '{path}': sample '{first[name_col]}', unit '{first[UNIT_COLUMN]}' "
                                f"appears more than once (rows {rows}); each unit of a sample needs its own name")
    per_unit = [name_col, UNIT_COLUMN, "counts_path"]
    for col in [c for c in raw.columns if c not in per_unit]:
        n_values = raw.groupby(name_col, sort=False)[col].nunique()
        if (n_values > 1).any():
            sample = n_values.index[n_values > 1][0]
            values = sorted(raw.loc[raw[name_col] == sample, col].unique())[:3]
            raise DegflowInputError(
                f"sample sheet '{path}', sample '{sample}': column '{col}' differs between its units "
                f"({', '.join(map(repr, values))}); technical replicates (rows sharing a sample name) must agree in "
                "every column but unit and counts_path - give biological replicates their own sample names")
    units = pd.DataFrame({"sample": raw[name_col].to_numpy(), "unit": raw[UNIT_COLUMN].to_numpy()})
    if single_file:
        units.index = pd.Index(units["unit"].to_numpy())
        again = units.index.duplicated(keep=False)
        if again.any():
            raise DegflowInputError(
                f"sample sheet '{path}': unit '{units.index[again][0]}' is given for several samples; with one counts "
                "file for all samples (bulk.counts.path) each unit names one column of that file")
    else:
        if "counts_path" not in raw.columns:
            raise DegflowInputError(
                f"sample sheet '{path}' has a unit column but no counts_path column, and bulk.counts.path is empty: "
                "give each unit's count file in a counts_path column (or one file for all in bulk.counts.path)")
        units["counts_path"] = raw["counts_path"].to_numpy()
        units.index = pd.Index([f"{s}/{u}" for s, u in zip(units["sample"], units["unit"], strict=True)])
    sheet = raw.drop_duplicates(name_col).drop(columns=[c for c in per_unit[1:] if c in raw.columns])
    sheet = sheet.set_index(pd.Index(sheet[name_col], name="sample")).drop(columns=[name_col])
    for col in sheet.columns:  # as read_sample_sheet, but only an empty cell counts as missing here
        nonempty = sheet[col][sheet[col] != ""]
        if len(nonempty) and pd.to_numeric(nonempty, errors="coerce").notna().all():
            sheet[col] = pd.to_numeric(sheet[col].replace("", np.nan))
    units.index.name = "unit_id"
    log.info("sample sheet %s: %d units of %d samples (technical replicates are summed)", path, len(units),
             sheet.shape[0])
    return sheet, units
