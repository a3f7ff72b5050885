# Plain Python shared by the rules: config validation (before the DAG), paths and small helpers.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from degflow.errors import DegflowInputError
from degflow.config import validate_config


def _stop(err):
    # One line, no traceback, nothing written: the DAG is never built.
    sys.exit(f"degflow: {err}")


try:
    CFG = validate_config(config, Path(workflow.basedir) / "workflow" / "schemas")
except DegflowInputError as err:
    _stop(err)

RESULTS = CFG["results"].rstrip("/")

if "bulk" in CFG:
    from degflow.bulk import count_inputs, plan_bulk

    try:
        BULK_PLAN, _counts = plan_bulk(CFG["bulk"])
    except DegflowInputError as err:
        _stop(err)
    del _counts
    CONTRASTS = list(BULK_PLAN.contrasts)

    wildcard_constraints:
        contrast="|".join(CONTRASTS),


def bulk_count_files():
    """The counts file(s) a bulk run reads (declared as inputs, so editing them re-runs the analysis)."""
    paths = count_inputs(CFG["bulk"]["counts"], BULK_PLAN.sheet)
    files = [paths] if isinstance(paths, str) else list(paths.values())
    return [f for f in files if Path(f).is_file()]


def get_contrast(wildcards):
    """[factor, test level, reference level] of a contrast."""
    return BULK_PLAN.contrasts[wildcards.contrast]


def bulk_optional_inputs(wildcards):
    """Annotation / tx2gene files when configured."""
    extra = {}
    if CFG["bulk"].get("annotation"):
        extra["annotation"] = CFG["bulk"]["annotation"]
    if CFG["bulk"]["counts"].get("tx2gene"):
        extra["tx2gene"] = CFG["bulk"]["counts"]["tx2gene"]
    return extra


#: Final targets of `rule all`; each rule file extends it with its own outputs.
FINAL_OUTPUTS = [f"{RESULTS}/run_info.html"]
