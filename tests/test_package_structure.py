"""The shape of the library's public API, as scanpy's tests/test_package_structure.py checks its own.

Every public function, class and method of every ``degflow`` module (a name without a leading underscore, defined in
that module) has a docstring, and a public function's options (its parameters with a default) are keyword-only.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import degflow

#: Public functions whose options can still be given by position: made before the rule, called so by
#: workflow/scripts and the tests. Each is to become keyword-only (issue 19); a new function must not join them.
POSITIONAL_OPTIONS = {
    "degflow.bulk.dataset.count_inputs": ["units"],
    "degflow.bulk.dataset.load_counts": ["sheet", "units"],
    "degflow.pl.compound.enrichment_dotplot": ["gsea_table"],
    "degflow.plan.config.load_schema": ["schema_dir"],
    "degflow.plan.config.resolve_refs": ["schema_dir"],
    "degflow.plan.config.validate_config": ["schema_dir"],
    "degflow.de.deseq.fit_deseq": ["design", "reference_levels"],
    "degflow.bulk.genes_of_interest.default_group_by": ["batch"],
    "degflow.bulk.genes_of_interest.match_genes": ["gene_names"],
    "degflow.io.tables.read_bulk_dataset": ["size_factors"],
    "degflow.singlecell.make_reference.main": ["argv"],
    "degflow.pl.bulk.save": ["path_pdf", "dpi"],
    "degflow.bulk.qc.top_genes": ["n"],
    "degflow.bulk.qc.variance_stabilised": ["size_factors"],
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
    assert len(names) > 150 and "degflow.de.deseq.fit_deseq" in names and "degflow.kernels.sparse.mean_var" in names


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
