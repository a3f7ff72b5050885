"""Design formulas and contrasts: the checks of a design against the sample sheet, and DESeq2's names.

Used before the DAG (:mod:`degflow.plan.bulk`, :mod:`degflow.plan.pseudobulk`, :mod:`degflow.plan.composition`)
and by the fit (:mod:`degflow.de.results` names coefficients and builds contrast vectors with these).

=================================  ==================================================================
:func:`design_variables`           the sheet columns a formula uses
:func:`batch_design_terms`         ``bulk.batch`` checked against the design; the terms left
:func:`check_design`               variables, levels, reference levels, contrasts, full rank
:func:`design_columns`             the design matrix's columns named as DESeq2's ``resultsNames``
:func:`results_names`              DESeq2's ``resultsNames(dds)``
:func:`contrast_vector`            a ``name`` / ``vector`` / ``list`` contrast as a numeric vector
:func:`contrast_batch_variables`   the batch columns a contrast tests
:func:`check_lrt`                  an LRT's reduced formula against the design
=================================  ==================================================================
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from degflow.errors import DegflowInputError
from degflow.io.sheets import is_missing

log = logging.getLogger("degflow")

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
