"""Config and sample-sheet validation, run before Snakemake builds the DAG.

Three layers, each stopping with one :class:`~degflow.errors.DegflowInputError` line that names the
key, file, row or column and what to do:

1. unknown keys, with the nearest valid key suggested (a typo never passes silently);
2. types and ranges from the JSON schemas in ``workflow/schemas`` (defaults filled in);
3. semantics: design variables are sheet columns, levels exist, factors have >= 2 levels, the design
   matrix is full rank, sheet and counts name the same samples (or the extra ones are in ``exclude``).
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import yaml

from degflow.errors import DegflowInputError

log = logging.getLogger("degflow")

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "workflow" / "schemas"


def load_schema(name: str, schema_dir: Path | None = None) -> dict:
    """Read ``workflow/schemas/<name>.schema.yaml``."""
    path = Path(schema_dir or SCHEMA_DIR) / f"{name}.schema.yaml"
    with open(path) as fh:
        return yaml.safe_load(fh)


# ----------------------------------------------------------------------------------------------
# 1 + 2: keys, types, defaults
# ----------------------------------------------------------------------------------------------
def _object_branch(schema: Mapping, value: Any) -> Mapping | None:
    """The object-typed sub-schema that applies to ``value`` (handles ``oneOf`` string|object)."""
    if "properties" in schema or isinstance(schema.get("additionalProperties"), Mapping):
        return schema
    alts = [alt for alt in schema.get("oneOf", []) if alt.get("type") == "object"] if isinstance(value, Mapping) else []
    for alt in alts:  # several object forms (a contrast's name / vector / list): the one whose required keys are given
        if set(alt.get("required", [])) <= set(value):
            return alt
    if len(alts) > 1:  # none matches: every form's keys, for the "did you mean" hint
        return {"additionalProperties": False,
                "properties": {k: v for alt in alts for k, v in alt.get("properties", {}).items()}}
    return alts[0] if alts else None


def _schema_file(where: str) -> str:
    """The schema file documenting a config key (the singlecell section has its own)."""
    name = "singlecell" if where.split(".", 1)[0] == "singlecell" else "config"
    return f"workflow/schemas/{name}.schema.yaml"


def resolve_refs(schema: dict, schema_dir: Path | None = None) -> dict:
    """Replace each ``$ref: <name>.schema.yaml`` under ``properties`` by that file's schema (in place).

    The node's own ``description`` is kept; the referenced schema's ``$schema`` key is dropped.
    """
    for key, prop in schema.get("properties", {}).items():
        ref = prop.get("$ref") if isinstance(prop, dict) else None
        if isinstance(ref, str) and ref.endswith(".schema.yaml"):
            sub = load_schema(ref.removesuffix(".schema.yaml"), schema_dir)
            sub.pop("$schema", None)
            schema["properties"][key] = {**sub, **({"description": prop["description"]} if "description" in prop
                                                   else {})}
            resolve_refs(schema["properties"][key], schema_dir)
    return schema


def check_unknown_keys(config: Mapping, schema: Mapping, *, prefix: str = "") -> None:
    """Reject keys the schema does not know, suggesting the nearest valid one.

    Raises
    ------
    DegflowInputError
        ``config key 'bulk.desing' is not known; did you mean 'bulk.design'? ...``
    """
    sub = _object_branch(schema, config)
    if sub is None or not isinstance(config, Mapping):
        return
    props = sub.get("properties", {})
    if sub.get("additionalProperties", True) is False:
        for key in config:
            if key not in props:
                where = f"{prefix}{key}"
                near = difflib.get_close_matches(str(key), list(props), n=1, cutoff=0.6)
                hint = f"did you mean '{prefix}{near[0]}'?" if near else f"valid keys here: {', '.join(props)}"
                raise DegflowInputError(f"config key '{where}' is not known; {hint} (see {_schema_file(where)})")
    for key, value in config.items():
        if key in props and isinstance(value, Mapping):
            check_unknown_keys(value, props[key], prefix=f"{prefix}{key}.")
    entry = sub.get("additionalProperties")
    if isinstance(entry, Mapping):  # free-named entries (bulk.contrasts, bulk.lrt): each against its schema
        for key, value in config.items():
            if key not in props and isinstance(value, Mapping):
                check_unknown_keys(value, entry, prefix=f"{prefix}{key}.")


def fill_defaults(config: dict, schema: Mapping) -> dict:
    """Fill schema defaults in place, creating sub-objects whose schema has ``default: {}``."""
    sub = _object_branch(schema, config)
    if sub is None or not isinstance(config, dict):
        return config
    for key, prop in sub.get("properties", {}).items():
        if key not in config and "default" in prop:
            config[key] = deepcopy(prop["default"])
        if isinstance(config.get(key), dict):
            fill_defaults(config[key], prop)
    return config


def check_types(config: Mapping, schema: Mapping) -> None:
    """Validate against the JSON schema; the first error becomes one readable line."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.path))))
    if errors:
        err = errors[0]
        # oneOf errors are opaque; report the most specific sub-error instead
        if err.context:
            err = max(err.context, key=lambda e: len(e.absolute_path))
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise DegflowInputError(f"config key '{where}': {err.message} (see {_schema_file(where)})")


def validate_config(config: Mapping, schema_dir: Path | None = None) -> dict:
    """Check keys and types of a whole config and return a copy with defaults filled in.

    Parameters
    ----------
    config
        The config as Snakemake loaded it (``--configfile`` and ``--config`` merged).
    schema_dir
        Folder of the schemas (default: the repository's ``workflow/schemas``).

    Returns
    -------
    dict
        A deep copy with every default of the schema filled in.
    """
    if not config:
        raise DegflowInputError(
            "the config is empty: run with --configfile config/config.yaml, or copy it and edit the copy"
        )
    schema = resolve_refs(load_schema("config", schema_dir), schema_dir)
    cfg = deepcopy(dict(config))
    for key, value in cfg.items():
        if value is None and key in ("bulk", "singlecell"):
            what = "counts, samples, design and contrasts" if key == "bulk" else "samples (and the keys you change)"
            raise DegflowInputError(f"config section '{key}' is empty: give its {what} (as in config/config.yaml), "
                                    "or delete the line")
    check_unknown_keys(cfg, schema)
    fill_defaults(cfg, schema)
    if isinstance(cfg.get("bulk", {}).get("counts"), dict):
        fill_defaults(cfg["bulk"]["counts"], schema["properties"]["bulk"]["properties"]["counts"])
    results = Path(str(cfg.get("results", "results")))
    if results.exists() and not results.is_dir():
        raise DegflowInputError(f"config key 'results': '{results}' is a file; it must name a folder (created if "
                                "missing) that every output goes under")
    check_types(cfg, schema)
    if "bulk" not in cfg and "singlecell" not in cfg:
        raise DegflowInputError("the config has neither a 'bulk' nor a 'singlecell' section: add at least one")
    if "bulk" in cfg:
        c = cfg["bulk"]["counts"]
        cfg["bulk"]["counts"] = c if isinstance(c, dict) else {**_counts_defaults(schema), "path": c, "format": "matrix"}
    return cfg


def _counts_defaults(schema: Mapping) -> dict:
    counts_obj = schema["properties"]["bulk"]["properties"]["counts"]["oneOf"][1]
    return {k: deepcopy(v.get("default")) for k, v in counts_obj["properties"].items()}


# ----------------------------------------------------------------------------------------------
# 3: sample sheet and design
# ----------------------------------------------------------------------------------------------
def read_sheet_table(path: str | Path, *, sep: str, what: str, comment: str | None = None) -> pd.DataFrame:
    """A sample sheet's cells as text (``pandas.read_csv``, no NA conversion), with one-line errors for bad files.

    Raises
    ------
    DegflowInputError
        The file is not UTF-8 (e.g. Latin-1 / Windows-1252 from Excel; the line is named) or a row has more
        fields than the header (the line is named). ``pandas.errors.EmptyDataError`` is left to the caller.
    """
    path = Path(path)
    kind = "CSV" if sep == "," else "TSV"
    try:
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, comment=comment)
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


def read_sample_sheet(path: str | Path) -> pd.DataFrame:
    """Read a sample sheet (TSV, or CSV by extension) indexed by sample name.

    The first column must be ``sample`` or ``sample_id``. Columns whose every non-empty value is a
    number become numeric (continuous covariates); the rest stay strings.

    Raises
    ------
    DegflowInputError
        Missing or empty file, wrong first column, empty or duplicate sample names.
    """
    path = Path(path)
    if path.is_dir():
        raise DegflowInputError(f"sample sheet '{path}' is a folder: bulk.samples names the sheet file (TSV/CSV) "
                                "inside it")
    if not path.is_file():
        raise DegflowInputError(f"sample sheet '{path}' does not exist: check bulk.samples in the config")
    from degflow.io.counts import check_text_file

    check_text_file(path, what="sample sheet", key="bulk.samples")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        sheet = read_sheet_table(path, sep=sep, what="sample sheet", comment=None)
    except pd.errors.EmptyDataError:
        raise DegflowInputError(f"sample sheet '{path}' is empty: it needs a header and one row per sample") from None
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
    if (names == "").any():
        row = int(np.flatnonzero(names == "")[0]) + 2
        raise DegflowInputError(f"sample sheet '{path}', row {row}: the sample name is empty")
    dup = names[names.duplicated()]
    if len(dup):
        rows = [int(i) + 2 for i in np.flatnonzero(names == dup.iloc[0])]
        raise DegflowInputError(
            f"sample sheet '{path}': sample name '{dup.iloc[0]}' appears more than once (rows {rows}); names must be unique"
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


#: Cell values that mean "missing" in a sample sheet (R's and spreadsheets' spellings), besides an empty cell.
MISSING_VALUES = frozenset({"NA", "N/A", "n/a", "na", "NaN", "nan", "#N/A", "NULL", "null"})


def is_missing(values: pd.Series) -> pd.Series:
    """True where a sample-sheet value is missing: NaN, an empty cell, or one of :data:`MISSING_VALUES`."""
    text = values.astype(str).str.strip()
    return values.isna() | (text == "") | text.isin(MISSING_VALUES)


_TERM = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")


def design_variables(design: str, *, section: str = "bulk") -> list[str]:
    """The sample-sheet columns a design formula uses, in order (``"~ cell + dex"`` -> ``["cell", "dex"]``).

    ``section`` is the config section named in error messages (``bulk``, ``singlecell.pseudobulk``).
    """
    rhs = design.split("~", 1)[1]
    seen: list[str] = []
    terms = re.split(r"[+*:]", rhs)
    for term in terms:
        term = term.strip()
        if term == "" and len(terms) > 1:
            raise DegflowInputError(
                f"config key '{section}.design': '{design}' has an operator (+ * :) with no column on one side; "
                "write e.g. '~ cell + dex'"
            )
        if term in ("", "1", "0", "-1"):
            continue
        m = _TERM.fullmatch(term)
        if m is None:
            raise DegflowInputError(
                f"config key '{section}.design': term '{term}' is not a plain column name; "
                "use sample-sheet columns joined by + (interactions with :)"
            )
        if term not in seen:
            seen.append(term)
    return seen


def batch_design_terms(design: str, batch: Sequence[str], *, section: str = "bulk") -> list[str]:
    """The design's terms once the batch columns are taken out (``"~ cell + dex"``, ``[cell]`` -> ``["dex"]``).

    Checks ``{section}.batch``: every batch column must be a variable of the design, and none may be part of an
    interaction with another variable (its effect would then differ by condition: there is no one batch effect
    to remove). Used before the DAG is built and by :func:`degflow.bulk.batch.batch_corrected`.

    Raises
    ------
    DegflowInputError
        One line naming the key, the column and the fix.
    """
    from formulaic import Formula

    variables = design_variables(design, section=section)
    for b in batch:
        if b not in variables:
            raise DegflowInputError(
                f"config key '{section}.batch': '{b}' is not a variable of the design '{design}'; batches must be "
                f"in the design (e.g. design: \"~ {b} + {variables[-1] if variables else 'condition'}\") so the "
                "tests account for them, or remove it from batch"
            )
    kept = []
    for term in Formula(design.split("~", 1)[1]):
        names = [str(f) for f in term.factors]
        in_batch = [n for n in names if n in batch]
        if not in_batch:
            if names != ["1"]:
                kept.append(str(term))
            continue
        if len(names) > 1:
            raise DegflowInputError(
                f"config key '{section}.batch': '{in_batch[0]}' is part of the interaction '{term}' of the design "
                f"'{design}', so its effect differs by condition and cannot be removed as one batch effect; "
                "remove it from batch (or the interaction from the design)"
            )
    return kept


@dataclass
class BulkPlan:
    """What the bulk rules need, after validation."""

    samples: list[str]
    sheet: pd.DataFrame
    factors: list[str]
    covariates: list[str]
    contrasts: dict[str, list[str] | dict]
    excluded: list[str] = field(default_factory=list)


def check_design(
    sheet: pd.DataFrame,
    design: str,
    reference_levels: Mapping[str, str],
    contrasts: Mapping[str, list[str]],
    *,
    sheet_path: str | Path = "sample sheet",
    section: str = "bulk",
    excluded: pd.DataFrame | None = None,
) -> tuple[list[str], list[str], pd.DataFrame]:
    """Check a design against the sample sheet.

    ``excluded`` (optional): the sheet rows of the samples left out (``bulk.exclude``), so that a level held
    only by them is reported as such.

    Returns
    -------
    factors, covariates, metadata
        Categorical design variables, continuous ones, and the sheet restricted to the design
        variables with factor levels ordered reference-first.

    Raises
    ------
    DegflowInputError
        Missing column, empty value, unknown reference/contrast level, factor with one level,
        design matrix not of full rank.
    """
    variables = design_variables(design, section=section)
    if not variables:
        raise DegflowInputError(f"config key '{section}.design' names no variable: write e.g. '~ condition'")
    for v in variables:
        if v not in sheet.columns:
            near = difflib.get_close_matches(v, [str(c) for c in sheet.columns], n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else f"; its columns are: {', '.join(map(str, sheet.columns))}"
            raise DegflowInputError(
                f"config key '{section}.design': variable '{v}' is not a column of the sample sheet '{sheet_path}'{hint}"
            )
    levels_contrasts = {k: v for k, v in contrasts.items() if not isinstance(v, Mapping)}
    contrast_factors = {c[0] for c in levels_contrasts.values()}
    for name, (fac, _, _) in levels_contrasts.items():
        if fac not in variables:
            raise DegflowInputError(
                f"config key '{section}.contrasts.{name}': factor '{fac}' is not in the design '{design}'"
            )
    for fac in reference_levels:
        if fac not in variables:
            raise DegflowInputError(
                f"config key '{section}.reference_levels.{fac}': '{fac}' is not a variable of the design '{design}'"
            )
    meta = pd.DataFrame(index=sheet.index)
    factors, covariates = [], []
    for v in variables:
        col = sheet[v]
        missing = is_missing(col)
        if missing.any():
            sample = col.index[missing][0]
            shown = "empty" if pd.isna(col[sample]) or str(col[sample]).strip() == "" else f"'{col[sample]}'"
            raise DegflowInputError(
                f"sample sheet '{sheet_path}', row of sample '{sample}': column '{v}' of the design is missing "
                f"({shown}; {int(missing.sum())} sample(s)); DESeq2 takes no missing values in design variables: "
                + ("fill it in, or leave the sample out with bulk.exclude: [" + str(sample) + "]"
                   if section == "bulk" else "fill it in")
            )
        is_factor = not pd.api.types.is_numeric_dtype(col) or v in reference_levels or v in contrast_factors
        if not is_factor:
            covariates.append(v)
            meta[v] = col.astype(float)
            distinct = sorted(pd.unique(meta[v]))
            if len(distinct) <= FEW_NUMERIC_VALUES:
                shown = ", ".join(f"{x:g}" for x in distinct)
                log.warning(
                    "%s.design: column '%s' of '%s' is numeric with only %d distinct values (%s), so it enters the "
                    "model as ONE numeric covariate (a slope), as in R; if it is a batch or group code, make it a "
                    "factor: give it a reference level (%s.reference_levels: {%s: '%g'}) or write its values as "
                    "text (e.g. b1, b2)", section, v, sheet_path, len(distinct), shown, section, v, distinct[0])
            if abs(float(meta[v].mean())) > 5 or float(meta[v].std()) > 5:  # DESeq2 says the same
                log.warning("%s.design: numeric column '%s' has mean %.3g and standard deviation %.3g (> 5): as DESeq2 "
                            "advises, centre and scale it in the sample sheet for a better-conditioned fit", section,
                            v, float(meta[v].mean()), float(meta[v].std()))
            continue
        factors.append(v)
        values = col.astype(str)
        levels = sorted(values.unique())
        if len(levels) < 2:
            raise DegflowInputError(
                f"sample sheet '{sheet_path}', column '{v}': the factor has one level ('{levels[0]}') among the "
                f"analysed samples; a factor needs >= 2 levels: remove it from {section}.design"
            )
        ref = reference_levels.get(v)
        if ref is not None:
            if ref not in levels and _only_excluded(excluded, v, ref):
                raise DegflowInputError(
                    f"config key '{section}.reference_levels.{v}': level '{ref}' of column '{v}' is held only by "
                    f"excluded samples ({_only_excluded(excluded, v, ref)}); remove them from {section}.exclude or "
                    "choose another reference level"
                )
            if ref not in levels:
                raise DegflowInputError(
                    f"config key '{section}.reference_levels.{v}': level '{ref}' is not in column '{v}' of "
                    f"'{sheet_path}' (levels: {', '.join(levels)})"
                )
            levels = [ref] + [lv for lv in levels if lv != ref]
        meta[v] = pd.Categorical(values, categories=levels)
    for name, (fac, test, ref) in levels_contrasts.items():
        levels = list(meta[fac].cat.categories)
        for lv in (test, ref):
            if lv not in levels and _only_excluded(excluded, fac, lv):
                raise DegflowInputError(
                    f"config key '{section}.contrasts.{name}': level '{lv}' of column '{fac}' is held only by "
                    f"excluded samples ({_only_excluded(excluded, fac, lv)}); remove them from {section}.exclude "
                    "or drop the contrast"
                )
            if lv not in levels:
                raise DegflowInputError(
                    f"config key '{section}.contrasts.{name}': level '{lv}' is not in column '{fac}' of "
                    f"'{sheet_path}' (levels: {', '.join(levels)})"
                )
        if test == ref:
            raise DegflowInputError(
                f"config key '{section}.contrasts.{name}': test and reference level are both '{test}'")
    _check_full_rank(meta, design, sheet_path, section)
    if len(levels_contrasts) < len(contrasts):
        names = results_names(design, meta)
        for name, spec in contrasts.items():
            if isinstance(spec, Mapping):
                contrast_vector(spec, names, key=f"{section}.contrasts.{name}")
    return factors, covariates, meta


#: A numeric design column with at most this many distinct values draws a "did you mean a factor?" warning.
FEW_NUMERIC_VALUES = 4


def _r_make_name(name: str) -> str:
    """R's ``make.names`` for one name: invalid characters become ``.``, an invalid start gets ``X``."""
    out = re.sub(r"[^0-9A-Za-z._]", ".", name)
    if not out or not re.match(r"[A-Za-z]|\.(?![0-9])", out):
        out = "X" + out
    return out


def design_columns(design: str, meta: pd.DataFrame, *, variables: list[list[str]] | None = None
                   ) -> tuple[list[str], list[str], np.ndarray]:
    """The design matrix's columns named as DESeq2's ``resultsNames``, in R's order.

    pydeseq2 builds the design matrix with formulaic; its columns are those of R's
    ``model.matrix`` (the same coding of factors, contrasts and interactions) but named
    ``group[T.model]`` and, inside an interaction term, possibly in another order. This maps
    each column to DESeq2's name: ``Intercept``; main effects of factors ``group_model_vs_control``
    (``renameModelMatrixColumns``, designs with an intercept); numeric covariates by their
    column name; interactions ``dextrt.avgLength`` (``make.names`` of R's ``dextrt:avgLength``,
    the variables in formula order, the first varying fastest).

    Parameters
    ----------
    design
        The formula, e.g. ``"~ dex + avgLength + dex:avgLength"``.
    meta
        The design variables (factors categorical, reference level first; covariates float).

    variables
        Optional list, filled (in R's order) with each coefficient's design variables (``[]`` for the
        intercept, two for an interaction).

    Returns
    -------
    names, columns, order
        R names in R's order; formulaic's column names in formulaic's order; ``order[k]`` is the
        formulaic column of R coefficient ``k``.
    """
    from formulaic import model_matrix

    rhs = design.split("~", 1)[1]
    columns = [str(c) for c in model_matrix(rhs, meta).columns]
    var_order: dict[str, int] = {}
    for v in _TERM.findall(rhs):  # R orders an interaction's variables by their first place in the formula
        var_order.setdefault(v, len(var_order))
    piece = re.compile(r"^(?P<var>.+?)\[(?P<t>T\.)?(?P<level>.*)\]$")
    has_intercept = "Intercept" in columns
    parsed = []
    for col in columns:
        if col == "Intercept":
            parsed.append(("Intercept", (), ()))
            continue
        parts = []
        for bit in col.split(":"):
            m = piece.match(bit)
            if m and m.group("var") in meta.columns and isinstance(meta[m.group("var")].dtype, pd.CategoricalDtype):
                var, level = m.group("var"), m.group("level")
                cats = [str(c) for c in meta[var].cat.categories]
                parts.append((var, level, cats.index(level) if level in cats else 0, bool(m.group("t"))))
            else:
                parts.append((bit, "", 0, False))
        parts.sort(key=lambda t: var_order.get(t[0], len(var_order)))
        name = ":".join(f"{v}{lv}" for v, lv, _, _ in parts)
        if has_intercept and len(parts) == 1 and parts[0][3]:  # a factor's main effect: group_model_vs_control
            var, level = parts[0][0], parts[0][1]
            name = f"{var}_{level}_vs_{meta[var].cat.categories[0]}"
        parsed.append((_r_make_name(name), tuple(v for v, *_ in parts), tuple(i for _, _, i, _ in reversed(parts))))
    # R's order: terms as formulaic gives them (by degree, then formula order); inside a term, the first
    # variable varies fastest (sort on the level indices from the last variable to the first)
    term_first: dict[tuple, int] = {}
    for k, (_, term, _) in enumerate(parsed):
        term_first.setdefault(term, k)
    order = sorted(range(len(columns)), key=lambda k: (term_first[parsed[k][1]], parsed[k][2]))
    if variables is not None:
        variables.extend(list(parsed[k][1]) for k in order)
    return [parsed[k][0] for k in order], columns, np.asarray(order, dtype=int)


def results_names(design: str, meta: pd.DataFrame) -> list[str]:
    """DESeq2's ``resultsNames(dds)`` for a design over these samples (see :func:`design_columns`)."""
    return design_columns(design, meta)[0]


def contrast_batch_variables(spec: Sequence[str] | Mapping[str, Any], batch: Sequence[str], *, design: str,
                             meta: pd.DataFrame) -> list[str]:
    """The ``bulk.batch`` columns a contrast tests: removing them from a figure would remove what is tested.

    Parameters
    ----------
    spec
        ``[factor, test, reference]``, or a ``name`` / ``vector`` / ``list`` mapping over ``resultsNames``.
    batch
        The batch columns (``bulk.batch``).
    design, meta
        The design formula and its variables (factors categorical, reference level first), as in
        :func:`results_names`.

    Returns
    -------
    list[str]
        The batch columns of ``[factor, ...]``'s factor, or of any coefficient a mapping weights (nonzero), in the
        order of ``batch``; empty when the contrast tests no batch column (then the batch may be removed).
    """
    if not batch:
        return []
    if not isinstance(spec, Mapping):
        return [b for b in batch if b == spec[0]]
    per_coef: list[list[str]] = []
    names = design_columns(design, meta, variables=per_coef)[0]
    weights = contrast_vector(spec, names, key="bulk.contrasts")
    tested = {v for w, vs in zip(weights, per_coef, strict=True) if w != 0 for v in vs}
    return [b for b in batch if b in tested]


def contrast_vector(spec: Mapping[str, Any], names: list[str], *, key: str) -> np.ndarray:
    """A ``name`` / ``vector`` / ``list`` contrast as a numeric vector over ``resultsNames`` (R order).

    Parameters
    ----------
    spec
        ``{name: coef}``, ``{vector: [...]}`` or ``{list: [[numerator names], [denominator names]],
        list_values: [1, -1]}`` (DESeq2's ``results(name=)``, numeric ``contrast=`` and list
        ``contrast=`` with ``listValues``).
    names
        ``resultsNames`` of the design (:func:`results_names`).
    key
        Config key named in error messages.

    Raises
    ------
    DegflowInputError
        An unknown coefficient name (the valid ones are listed), a vector of the wrong length or all
        zeros, a list naming unknown coefficients, a coefficient in both parts, or list_values whose
        first value is not > 0 or second not < 0.
    """
    valid = ", ".join(names)
    given = [k for k in ("name", "vector", "list") if k in spec]
    if len(given) != 1:
        raise DegflowInputError(f"config key '{key}': give exactly one of name, vector or list (got "
                                f"{', '.join(given) or 'none'})")
    c = np.zeros(len(names))
    if "name" in spec:
        if spec["name"] not in names:
            near = difflib.get_close_matches(str(spec["name"]), names, n=1)
            raise DegflowInputError(f"config key '{key}.name': '{spec['name']}' is not a coefficient of the design"
                                    + (f" (did you mean '{near[0]}'?)" if near else "")
                                    + f"; resultsNames: {valid}")
        c[names.index(spec["name"])] = 1.0
        return c
    if "vector" in spec:
        vec = [float(x) for x in spec["vector"]]
        if len(vec) != len(names):
            raise DegflowInputError(f"config key '{key}.vector' has {len(vec)} numbers but the design has "
                                    f"{len(names)} coefficients; give one per resultsName, in order: {valid}")
        if not any(vec):
            raise DegflowInputError(f"config key '{key}.vector' is all zeros; weight at least one of: {valid}")
        return np.asarray(vec, dtype=float)
    parts = list(spec["list"])
    if len(parts) == 1:
        parts.append([])
    if len(parts) != 2:
        raise DegflowInputError(f"config key '{key}.list' must be [[numerator coefficients], [denominator "
                                f"coefficients]] (DESeq2's list contrast); got {len(parts)} parts")
    parts = [[p] if isinstance(p, str) else list(p) for p in parts]
    for p in parts[0] + parts[1]:
        if p not in names:
            raise DegflowInputError(f"config key '{key}.list': '{p}' is not a coefficient of the design; "
                                    f"resultsNames: {valid}")
    both = set(parts[0]) & set(parts[1])
    if both:
        raise DegflowInputError(f"config key '{key}.list': '{sorted(both)[0]}' is in both the numerator and the "
                                "denominator; name each coefficient once")
    if not parts[0] and not parts[1]:
        raise DegflowInputError(f"config key '{key}.list' names no coefficient; resultsNames: {valid}")
    lv = [float(x) for x in spec.get("list_values", [1.0, -1.0])]
    if len(lv) != 2 or not (lv[0] > 0 and lv[1] < 0):
        raise DegflowInputError(f"config key '{key}.list_values' must be two numbers, the first > 0 and the "
                                f"second < 0 (DESeq2's listValues), got {lv}")
    for p in parts[0]:
        c[names.index(p)] = lv[0]
    for p in parts[1]:
        c[names.index(p)] = lv[1]
    return c


def check_lrt(design: str, reduced: str, meta: pd.DataFrame, *, key: str) -> tuple[int, str]:
    """Check an LRT's reduced formula against the full design (DESeq2 ``checkLRT`` and more).

    Returns
    -------
    df, coefficient
        The chi-squared degrees of freedom (``p_full - p_reduced``) and the full model's last
        ``resultsName``, whose log2 fold change the LRT table reports (as R's ``results()``).

    Raises
    ------
    DegflowInputError
        A reduced formula that is not a formula, names a variable the design lacks, is not
        nested in the design (its columns outside the full model's column space), or leaves no
        degree of freedom.
    """
    from formulaic import model_matrix

    if "~" not in str(reduced):
        raise DegflowInputError(f"config key '{key}': '{reduced}' is not a formula; write e.g. '~ 1' or '~ batch'")
    rhs = reduced.split("~", 1)[1].strip()
    full_vars = design_variables(design)
    red_vars = [] if rhs in ("1", "") else design_variables(reduced)
    extra = [v for v in red_vars if v not in full_vars]
    if extra:
        raise DegflowInputError(f"config key '{key}': the reduced formula '{reduced}' is not nested in the design "
                                f"'{design}': variable '{extra[0]}' is not in the design; the reduced model must be "
                                "the design with terms removed, e.g. '~ 1' or '~ batch'")
    X_full = np.asarray(model_matrix(design.split("~", 1)[1], meta), dtype=float)
    X_red = np.asarray(model_matrix(rhs or "1", meta), dtype=float)
    if np.linalg.matrix_rank(X_red) < X_red.shape[1]:
        raise DegflowInputError(f"config key '{key}': the reduced formula '{reduced}' is not of full rank for these "
                                "samples; simplify it")
    if np.linalg.matrix_rank(np.hstack([X_full, X_red])) > np.linalg.matrix_rank(X_full):
        raise DegflowInputError(f"config key '{key}': the reduced formula '{reduced}' is not nested in the design "
                                f"'{design}' (its model is not a special case of the full one, e.g. an interaction "
                                "without its main effects in the design); remove terms from the design instead")
    df = X_full.shape[1] - X_red.shape[1]
    if df < 1:
        raise DegflowInputError(f"config key '{key}': the reduced formula '{reduced}' has as many coefficients as "
                                f"the design '{design}' ({X_full.shape[1]}): nothing is tested; drop a term from it")
    return df, results_names(design, meta)[-1]


def _only_excluded(excluded: pd.DataFrame | None, column: str, level: str) -> str:
    """The excluded samples (comma-separated) whose ``column`` is ``level``; "" when none or not known."""
    if excluded is None or column not in excluded.columns:
        return ""
    hit = excluded.index[excluded[column].astype(str) == str(level)]
    return ", ".join(map(str, hit[:5]))


def _check_full_rank(meta: pd.DataFrame, design: str, sheet_path: str | Path, section: str = "bulk") -> None:
    from formulaic import model_matrix

    try:
        X = np.asarray(model_matrix(design.split("~", 1)[1], meta), dtype=float)
    except Exception as exc:  # noqa: BLE001 - formulaic's syntax errors have several types
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DegflowInputError(f"config key '{section}.design': '{design}' is not a valid formula ({reason}); "
                                "write sample-sheet columns joined by + (interactions with :), e.g. '~ cell + dex'"
                                ) from None
    rank = np.linalg.matrix_rank(X)
    if rank < X.shape[1]:
        variables = design_variables(design, section=section)
        culprit = ""
        # name the pair of variables that are confounded, when there is one
        for i, a in enumerate(variables):
            for b in variables[i + 1 :]:
                sub = np.asarray(model_matrix(f"{a} + {b}", meta), dtype=float)
                if np.linalg.matrix_rank(sub) < sub.shape[1]:
                    culprit = f": '{a}' and '{b}' are confounded (one determines the other)"
                    break
            if culprit:
                break
        raise DegflowInputError(
            f"config key '{section}.design': '{design}' is not of full rank for the samples in '{sheet_path}'{culprit}; "
            "remove a variable or add samples that separate them"
        )
    if X.shape[0] <= X.shape[1]:
        raise DegflowInputError(
            f"config key '{section}.design': '{design}' has {X.shape[1]} coefficients for {X.shape[0]} samples, which "
            "leaves no residual degrees of freedom to estimate dispersions (DESeq2 refuses such a design); use a "
            "simpler design (e.g. drop an interaction) or add replicates"
        )


def check_samples_match(
    sheet_samples: list[str], count_samples: list[str], exclude: list[str], *, sheet_path: str, counts_path: str
) -> list[str]:
    """Every analysed sample must be in both the sheet and the counts; returns the analysed samples (sheet order)."""
    unknown_ex = [s for s in exclude if s not in sheet_samples and s not in count_samples]
    if unknown_ex:
        raise DegflowInputError(
            f"config key 'bulk.exclude': sample '{unknown_ex[0]}' is neither in '{sheet_path}' nor in '{counts_path}'"
        )
    missing = [s for s in sheet_samples if s not in count_samples and s not in exclude]
    if missing:
        raise DegflowInputError(
            f"sample '{missing[0]}' is in the sample sheet '{sheet_path}' but not in the counts '{counts_path}'"
            f"{f' ({len(missing)} such samples)' if len(missing) > 1 else ''}; fix the name or add it to bulk.exclude"
        )
    extra = [s for s in count_samples if s not in sheet_samples and s not in exclude]
    if extra:
        raise DegflowInputError(
            f"sample '{extra[0]}' is in the counts '{counts_path}' but not in the sample sheet '{sheet_path}'"
            f"{f' ({len(extra)} such samples)' if len(extra) > 1 else ''}; add it to the sheet or to bulk.exclude"
        )
    return [s for s in sheet_samples if s not in exclude]


# ----------------------------------------------------------------------------------------------
# single-cell: the sample sheet and the checks across keys of the section
# ----------------------------------------------------------------------------------------------
#: obs columns a single-cell run always has (QC metrics, doublet scores) besides the sheet's metadata.
SC_OBS_METRICS = ("n_genes_by_counts", "total_counts", "log1p_n_genes_by_counts", "log1p_total_counts",
                  "total_counts_mt", "pct_counts_mt", "total_counts_ribo", "pct_counts_ribo", "total_counts_hb",
                  "pct_counts_hb", "doublet_score")


def _check_sc_path(path: Path, fmt: str, where: str) -> None:
    """Stop when a single-cell count path does not fit its declared format, or is an unreadable HDF5 file.

    ``10x_mtx`` takes the folder (or its ``matrix.mtx[.gz]``), ``bd_rhapsody`` a folder or CSV, ``10x_h5`` and
    ``h5ad`` a file; an ``.h5``/``.h5ad`` file (or one declared so) must open as HDF5.
    """
    import h5py

    name = path.name.lower()
    if path.is_dir() and fmt in ("10x_h5", "h5ad"):
        raise DegflowInputError(f"{where}: format {fmt} takes a file but '{path}' is a folder; set format to "
                                "10x_mtx (a folder with matrix.mtx) or auto, or give the .h5 file")
    if path.is_file() and fmt == "10x_mtx" and not name.endswith((".mtx", ".mtx.gz")):
        looks = " (an HDF5 file: use format 10x_h5 or h5ad)" if h5py.is_hdf5(path) else ""
        raise DegflowInputError(f"{where}: format 10x_mtx takes the folder holding matrix.mtx, features.tsv and "
                                f"barcodes.tsv, but '{path}' is a file{looks}; fix the path or the format")
    h5_like = fmt in ("10x_h5", "h5ad") or (fmt == "auto" and name.endswith((".h5", ".h5ad", ".hdf5")))
    if path.is_file() and h5_like:
        try:
            with h5py.File(path, "r") as f:
                list(f.keys())
                for key in ("matrix", "X", "obs"):
                    if key in f:
                        f[key]  # noqa: B018 - opening the group reads its header
        except (OSError, KeyError, RuntimeError) as exc:
            reason = str(exc).split(";")[0].split("(")[0].strip() or type(exc).__name__
            raise DegflowInputError(f"{where}: '{path}' is not a readable HDF5 file ({reason}): a truncated or "
                                    "corrupt copy? copy it again (its size should match the source)") from None


@dataclass
class SingleCellPlan:
    """What the single-cell rules need, after validation."""

    samples: list[str]
    sheet: pd.DataFrame
    files: dict[str, list[str]]
    metadata: dict[str, list[str]]
    clusterings: list[str]
    annotation_key: str | None
    reference: bool = False


def plan_singlecell(sc_cfg: Mapping) -> SingleCellPlan:
    """Check the single-cell section beyond types (run at parse time, before the DAG).

    Parameters
    ----------
    sc_cfg
        ``CFG["singlecell"]`` after :func:`validate_config` (defaults filled in).

    Returns
    -------
    SingleCellPlan
        ``samples`` (sheet order); ``sheet`` (validated, indexed by sample, strings); ``files``: the input
        files of each sample (a directory's files, so editing one re-runs that sample); ``metadata``: obs
        column -> categories in sheet order (``sample`` and every metadata column such as ``condition``);
        ``clusterings``: the ``leiden_<resolution>`` columns; ``annotation_key``: the clustering named from
        the marker YAML (None without ``markers``).

    Raises
    ------
    DegflowInputError
        Missing or malformed sheet (duplicate or empty sample names, unknown format, non-numeric QC
        override), a path that does not exist, a missing marker YAML, an annotation resolution not among
        ``leiden_resolutions``, an HVG flavour that needs ``n_top_genes`` without it, a ``batch_key`` or
        ``pca.regress_out`` column that will not exist, Harmony without harmonypy.
    """
    from degflow.io.singlecell import _READER_COLUMNS, QC_OVERRIDE_COLUMNS, read_sample_sheet
    from degflow.singlecell.annotate import load_markers
    from degflow.singlecell.process import leiden_key

    source = sc_cfg["samples"]
    sheet = read_sample_sheet(source)
    files: dict[str, list[str]] = {}
    for row, (sample, rec) in enumerate(sheet.iterrows(), start=2):
        where = f"single-cell sample sheet '{source}', row {row} (sample '{sample}')"
        path = Path(rec["path"])
        if not path.exists():
            raise DegflowInputError(f"{where}: path '{path}' does not exist; fix it (relative paths start where "
                                    "snakemake runs)")
        _check_sc_path(path, str(rec.get("format", "auto") or "auto"), where)
        found = sorted(str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith(".")) \
            if path.is_dir() else [str(path)]
        tags = rec.get("bd_sample_tags", "")
        if tags:
            if not Path(tags).is_file():
                raise DegflowInputError(f"{where}: bd_sample_tags file '{tags}' does not exist; fix or empty it")
            found.append(str(tags))
        files[str(sample)] = found
    meta_cols = [c for c in sheet.columns if c not in _READER_COLUMNS and c not in QC_OVERRIDE_COLUMNS]
    metadata = {"sample": [str(s) for s in sheet.index]}
    metadata.update({c: list(dict.fromkeys(sheet[c].astype(str))) for c in meta_cols})

    hvg = sc_cfg["hvg"]
    if hvg["flavor"] in ("seurat_v3", "pearson_residuals") and hvg["n_top_genes"] is None:
        raise DegflowInputError(f"config key 'singlecell.hvg.n_top_genes': flavor {hvg['flavor']} needs a number "
                                "(e.g. 2000); null is only for flavor seurat or cell_ranger")
    batch = sc_cfg["batch_key"]
    if batch is not None and batch not in metadata:
        raise DegflowInputError(f"config key 'singlecell.batch_key': '{batch}' is not 'sample' nor a column of "
                                f"'{source}' (columns: {', '.join(metadata)})")
    if sc_cfg["integration"] == "harmony":
        import importlib.util

        if batch is None or len(set(metadata[batch])) < 2:
            raise DegflowInputError("config key 'singlecell.integration': harmony needs singlecell.batch_key with "
                                    f"at least two batches (batch_key: {batch}); set integration to none")
        if importlib.util.find_spec("harmonypy") is None:
            raise DegflowInputError("config key 'singlecell.integration': harmony needs the harmonypy package "
                                    "(pip install harmonypy==2.1.0), or set it to none")
    for col in sc_cfg["pca"]["regress_out"]:
        if col not in SC_OBS_METRICS and col not in metadata:
            near = difflib.get_close_matches(col, [*SC_OBS_METRICS, *metadata], n=1)
            raise DegflowInputError(f"config key 'singlecell.pca.regress_out': '{col}' is not an obs column"
                                    + (f"; did you mean '{near[0]}'?" if near else
                                       f" (QC metrics: {', '.join(SC_OBS_METRICS)})"))

    n_pcs, n_comps = sc_cfg["neighbors"].get("n_pcs"), sc_cfg["pca"].get("n_comps")
    if n_pcs is not None and n_comps is not None and int(n_pcs) > int(n_comps):
        raise DegflowInputError(f"config key 'singlecell.neighbors.n_pcs': {n_pcs} is more than the "
                                f"{n_comps} components computed (singlecell.pca.n_comps); lower n_pcs to at most "
                                f"{n_comps} or raise pca.n_comps")
    resolutions = [float(r) for r in sc_cfg["leiden_resolutions"]]
    clusterings = [leiden_key(r) for r in resolutions]
    annotation_key = None
    if sc_cfg["markers"]:
        load_markers(sc_cfg["markers"])
        res = sc_cfg["annotation"]["resolution"]
        if res is not None and float(res) not in resolutions:
            raise DegflowInputError(f"config key 'singlecell.annotation.resolution': {res} is not one of "
                                    f"singlecell.leiden_resolutions {resolutions}")
        annotation_key = leiden_key(max(resolutions) if res is None else float(res))
    reference = sc_cfg.get("reference")
    if reference:
        check_reference(reference["path"], reference["label_key"])
    return SingleCellPlan(samples=metadata["sample"], sheet=sheet, files=files, metadata=metadata,
                          clusterings=clusterings, annotation_key=annotation_key, reference=bool(reference))


def check_reference(path: str, label_key: str) -> None:
    """The reference of ``singlecell.reference`` exists, is an .h5ad and has ``obs[label_key]`` (reads only obs).

    Raises
    ------
    DegflowInputError
        Missing file, not an h5ad, ``label_key`` not an obs column or without any label.
    """
    import anndata as ad
    import h5py

    key = "config key 'singlecell.reference"
    if not Path(path).is_file():
        raise DegflowInputError(f"{key}.path': '{path}' does not exist; give a labelled .h5ad with raw counts "
                                "(relative paths start where snakemake runs)")
    try:
        with h5py.File(path, "r") as fh:
            obs = ad.io.read_elem(fh["obs"])
    except (OSError, KeyError) as e:
        raise DegflowInputError(f"{key}.path': '{path}' is not an .h5ad AnnData file ({e})") from None
    if label_key not in obs.columns:
        raise DegflowInputError(f"{key}.label_key': '{label_key}' is not an obs column of '{path}' (columns: "
                                f"{', '.join(map(str, obs.columns))})")
    if obs[label_key].isna().all():
        raise DegflowInputError(f"{key}.label_key': obs['{label_key}'] of '{path}' holds no label")
