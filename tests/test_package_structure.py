"""The shape of the library's public API, as scanpy's tests/test_package_structure.py checks its own.

Every public function, class and method of every ``degflow`` module (a name without a leading underscore, defined in
that module) has a docstring, and a public function's options (its parameters with a default) are keyword-only.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import degflow

#: Public functions whose options can still be given by position: made before the rule, called so by
#: workflow/scripts and the tests. Each is to become keyword-only (issue 19); a new function must not join them.
POSITIONAL_OPTIONS = {
    "degflow.pl.compound.enrichment_dotplot": ["gsea_table"],
    "degflow.de.fit.fit_deseq": ["design", "reference_levels"],
    "degflow.bulk.genes_of_interest.default_group_by": ["batch"],
    "degflow.bulk.genes_of_interest.match_genes": ["gene_names"],
    "degflow.io.tables.read_bulk_dataset": ["size_factors"],
    "degflow.singlecell.make_reference.main": ["argv"],
    "degflow.pl.base.save": ["path_pdf", "dpi"],
    "degflow.bulk.degs.top_genes": ["n"],
    "degflow.bulk.vst.variance_stabilised": ["size_factors"],
    "degflow.runstate.clear_stale_lock": ["workdir"],
    "degflow.runstate.lock_host": ["workdir"],
    "degflow.runstate.record_owner": ["workdir"],
}


def _public():
    """(qualified name, object) of each public function, class and method (properties included) of degflow."""
    out = []
    for info in pkgutil.walk_packages(degflow.__path__, prefix="degflow."):
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != mod.__name__:
                continue
            if inspect.isfunction(obj):
                out.append((f"{mod.__name__}.{name}", obj))
            elif inspect.isclass(obj):
                out.append((f"{mod.__name__}.{name}", obj))
                for attr, member in vars(obj).items():
                    func = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
                    if not attr.startswith("_") and inspect.isfunction(func):
                        out.append((f"{mod.__name__}.{name}.{attr}", func))
    return out


def test_the_package_has_public_functions():
    names = {q for q, _ in _public()}
    assert len(names) > 150 and "degflow.de.fit.fit_deseq" in names and "degflow.kernels.sparse.mean_var" in names


def test_public_api_has_docstrings():
    missing = [q for q, obj in _public() if not (obj.__doc__ or "").strip()]
    assert not missing, f"public without a docstring: {missing}"


def test_public_function_options_are_keyword_only():
    P = inspect.Parameter
    found = {}
    for q, obj in _public():
        if inspect.isfunction(obj) and "." not in obj.__qualname__:  # module-level functions
            params = inspect.signature(obj).parameters.values()
            positional = [p.name for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)
                          and p.default is not P.empty]
            if positional:
                found[q] = positional
    new = {q: v for q, v in found.items() if POSITIONAL_OPTIONS.get(q) != v}
    assert not new, f"options that can be given by position (put them after `*`): {new}"
    fixed = sorted(set(POSITIONAL_OPTIONS) - set(found))
    assert not fixed, f"now keyword-only: remove from POSITIONAL_OPTIONS: {fixed}"


MAX_MODULE_LINES = 800


def test_no_module_is_over_800_lines():
    # issue 19: a module a newcomer reads in one sitting; split by what a reader looks for, not by size alone
    src = Path(degflow.__file__).parent
    long = {str(p.relative_to(src)): n for p in src.rglob("*.py") if (n := len(p.read_text().splitlines())) >
            MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them): {long}"


def test_every_subpackage_lists_its_modules():
    # each subpackage's docstring is its map: one line per module, named first
    src = Path(degflow.__file__).parent
    for init in src.glob("*/__init__.py"):
        doc = importlib.import_module(f"degflow.{init.parent.name}").__doc__ or ""
        lines = {line.split()[0].strip("`-").strip(":").strip("`") for line in doc.splitlines() if line.split()}
        modules = {p.stem for p in init.parent.glob("*.py") if p.stem != "__init__"}
        missing = sorted(modules - lines)
        assert not missing, f"degflow.{init.parent.name}'s docstring does not list: {missing}"
