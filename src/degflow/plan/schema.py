"""The config's keys, types and defaults, from the JSON schemas in ``workflow/schemas`` (run before the DAG).

Two layers of :func:`validate_config`, each stopping with one :class:`~degflow.errors.DegflowInputError` line
that names the key and what to do:

1. unknown keys, with the nearest valid key suggested (a typo never passes silently);
2. types and ranges (defaults filled in).

The schemas share blocks through ``$ref``: ``singlecell.schema.yaml`` is the ``singlecell`` section of
``config.schema.yaml``, and ``defs.schema.yaml`` holds ``$defs`` used by both (the ``de`` settings); see
:func:`resolve_refs`. The checks across keys and against the sample sheets are the other modules of
:mod:`degflow.plan`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from copy import deepcopy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from degflow.errors import DegflowInputError

SCHEMA_DIR = Path(__file__).resolve().parents[3] / "workflow" / "schemas"


def load_schema(name: str, *, schema_dir: Path | None = None) -> dict:
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


def resolve_refs(schema: dict, *, schema_dir: Path | None = None) -> dict:
    """Replace each ``$ref`` to another schema file by what it points to (in place, at any depth).

    ``$ref: <name>.schema.yaml`` is that file's whole schema (its ``$schema`` key dropped);
    ``$ref: <name>.schema.yaml#/$defs/<block>`` one block of its ``$defs``. Keys beside the ``$ref`` are kept
    over the referenced ones (a ``description``); a ``properties`` beside it overrides single properties of the
    block key by key (the pseudobulk ``de.size_factors`` default). The result holds no ``$ref`` to a file, so
    :func:`fill_defaults`, :func:`check_unknown_keys` and jsonschema read it directly.
    """
    for key, prop in list(schema.get("properties", {}).items()):
        ref = prop.get("$ref") if isinstance(prop, dict) else None
        if isinstance(ref, str) and ".schema.yaml" in ref:
            name, _, pointer = ref.partition("#")
            sub = load_schema(name.removesuffix(".schema.yaml"), schema_dir=schema_dir)
            sub.pop("$schema", None)
            for part in (p for p in pointer.split("/") if p):
                sub = sub[part]
            own = {k: v for k, v in prop.items() if k not in ("$ref", "properties")}
            merged = {**sub, **own}
            if "properties" in prop:
                merged["properties"] = {**sub.get("properties", {}),
                                        **{k: {**sub.get("properties", {}).get(k, {}), **v}
                                           for k, v in prop["properties"].items()}}
            schema["properties"][key] = prop = merged
        if isinstance(prop, dict):
            resolve_refs(prop, schema_dir=schema_dir)
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


def validate_config(config: Mapping, *, schema_dir: Path | None = None) -> dict:
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
    schema = resolve_refs(load_schema("config", schema_dir=schema_dir), schema_dir=schema_dir)
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
