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
from collections.abc import Mapping
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

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "workflow" / "schemas"


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
    if "properties" in schema:
        return schema
    for alt in schema.get("oneOf", []):
        if alt.get("type") == "object" and isinstance(value, Mapping):
            return alt
    return None


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


def check_unknown_keys(config: Mapping, schema: Mapping, prefix: str = "") -> None:
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
    check_unknown_keys(cfg, schema)
    fill_defaults(cfg, schema)
    if isinstance(cfg.get("bulk", {}).get("counts"), dict):
        fill_defaults(cfg["bulk"]["counts"], schema["properties"]["bulk"]["properties"]["counts"])
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
    if not path.is_file():
        raise DegflowInputError(f"sample sheet '{path}' does not exist: check bulk.samples in the config")
    sep = "," if path.suffix.lower() == ".csv" else "\t"
    try:
        sheet = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, comment=None)
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
        nonempty = values[values != ""]
        if len(nonempty) and pd.to_numeric(nonempty, errors="coerce").notna().all():
            sheet[col] = pd.to_numeric(values.replace("", np.nan))
        else:
            sheet[col] = values
    return sheet


_TERM = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*")


def design_variables(design: str, *, section: str = "bulk") -> list[str]:
    """The sample-sheet columns a design formula uses, in order (``"~ cell + dex"`` -> ``["cell", "dex"]``).

    ``section`` is the config section named in error messages (``bulk``, ``singlecell.pseudobulk``).
    """
    rhs = design.split("~", 1)[1]
    seen: list[str] = []
    for term in re.split(r"[+*:]", rhs):
        term = term.strip()
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


@dataclass
class BulkPlan:
    """What the bulk rules need, after validation."""

    samples: list[str]
    sheet: pd.DataFrame
    factors: list[str]
    covariates: list[str]
    contrasts: dict[str, list[str]]
    excluded: list[str] = field(default_factory=list)


def check_design(
    sheet: pd.DataFrame,
    design: str,
    reference_levels: Mapping[str, str],
    contrasts: Mapping[str, list[str]],
    *,
    sheet_path: str | Path = "sample sheet",
    section: str = "bulk",
) -> tuple[list[str], list[str], pd.DataFrame]:
    """Check a design against the sample sheet.

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
    contrast_factors = {c[0] for c in contrasts.values()}
    for name, (fac, _, _) in contrasts.items():
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
        missing = col.isna() | (col.astype(str).str.strip() == "")
        if missing.any():
            raise DegflowInputError(
                f"sample sheet '{sheet_path}', sample '{col.index[missing][0]}': column '{v}' is empty; "
                + ("fill it in or list the sample under bulk.exclude" if section == "bulk" else "fill it in")
            )
        is_factor = not pd.api.types.is_numeric_dtype(col) or v in reference_levels or v in contrast_factors
        if not is_factor:
            covariates.append(v)
            meta[v] = col.astype(float)
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
            if ref not in levels:
                raise DegflowInputError(
                    f"config key '{section}.reference_levels.{v}': level '{ref}' is not in column '{v}' of "
                    f"'{sheet_path}' (levels: {', '.join(levels)})"
                )
            levels = [ref] + [lv for lv in levels if lv != ref]
        meta[v] = pd.Categorical(values, categories=levels)
    for name, (fac, test, ref) in contrasts.items():
        levels = list(meta[fac].cat.categories)
        for lv in (test, ref):
            if lv not in levels:
                raise DegflowInputError(
                    f"config key '{section}.contrasts.{name}': level '{lv}' is not in column '{fac}' of "
                    f"'{sheet_path}' (levels: {', '.join(levels)})"
                )
        if test == ref:
            raise DegflowInputError(
                f"config key '{section}.contrasts.{name}': test and reference level are both '{test}'")
    _check_full_rank(meta, design, sheet_path, section)
    return factors, covariates, meta


def _check_full_rank(meta: pd.DataFrame, design: str, sheet_path: str | Path, section: str = "bulk") -> None:
    from formulaic import model_matrix

    X = np.asarray(model_matrix(design.split("~", 1)[1], meta), dtype=float)
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
    from degflow.sc_io import _READER_COLUMNS, QC_OVERRIDE_COLUMNS, read_sample_sheet
    from degflow.single_cell import leiden_key, load_markers

    source = sc_cfg["samples"]
    sheet = read_sample_sheet(source)
    files: dict[str, list[str]] = {}
    for row, (sample, rec) in enumerate(sheet.iterrows(), start=2):
        where = f"single-cell sample sheet '{source}', row {row} (sample '{sample}')"
        path = Path(rec["path"])
        if not path.exists():
            raise DegflowInputError(f"{where}: path '{path}' does not exist; fix it (relative paths start where "
                                    "snakemake runs)")
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
