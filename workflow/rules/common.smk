# Shared by the rules: the config checked before the DAG (degflow.plan), the globals the rules read, input functions.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from degflow.errors import DegflowInputError
from degflow.plan.common import scaled_resource
from degflow.plan.schema import validate_config


def _stop(err):
    # One line, no traceback, nothing written: the DAG is never built.
    sys.exit(f"degflow: {err}")


try:
    CFG = validate_config(config, schema_dir=Path(workflow.basedir) / "workflow" / "schemas")
except DegflowInputError as err:
    _stop(err)

RESULTS = CFG["results"].rstrip("/")

# A run killed mid-way (SIGKILL, power cut, wall time) left its lock: remove it when no snakemake runs here, so
# the same command resumes (profiles/default/config.yaml sets rerun-incomplete for its half-written outputs).
from degflow.runstate import clear_stale_lock, record_owner

if workflow.is_main_process:  # not in cluster/subprocess jobs of a live run
    if clear_stale_lock("."):
        print(
            "degflow note: removed the lock left by an earlier run that was stopped; its unfinished jobs are " "redone",
            file=sys.stderr,
        )
    record_owner(".")

if "bulk" in CFG:
    from degflow.bulk.genes_of_interest import default_group_by
    from degflow.plan.bulk import annotation_note, plan_bulk, side_inputs

    try:
        BULK_PLAN, _counts = plan_bulk(CFG["bulk"])
    except DegflowInputError as err:
        _stop(err)
    _note = annotation_note(CFG["bulk"], counts_have_names=_counts.gene_names is not None)
    if _note:
        print(_note, file=sys.stderr)
    #: Size of the analysed count matrix in millions of cells (genes x samples): what bulk memory and time grow with.
    BULK_MCELLS = _counts.counts.shape[0] * len(BULK_PLAN.samples) / 1e6
    del _counts
    CONTRASTS = list(BULK_PLAN.contrasts)
    LRTS = list(BULK_PLAN.lrt)

    wildcard_constraints:
        contrast="|".join(CONTRASTS),
        lrt="|".join(LRTS) or "no_lrt",


def scaled(base, per_unit=0.0, units=0.0):
    """A ``resources:`` value growing with the data and the retry attempt (degflow.plan.common.scaled_resource)."""
    return scaled_resource(base, per_unit=per_unit, units=units)


# Rules that only write a small file run on the submitting machine, not as cluster jobs.
localrules:
    run_info,


def get_contrast(wildcards):
    """[factor, test level, reference level] of a contrast, or its {name | vector | list} mapping."""
    return BULK_PLAN.contrasts[wildcards.contrast]


def get_lrt(wildcards):
    """A likelihood-ratio test's settings: reduced formula, group_by, clustering options, df, coefficient."""
    return BULK_PLAN.lrt[wildcards.lrt]


def bulk_optional_inputs(wildcards):
    """Annotation / tx2gene files when configured."""
    return side_inputs(CFG["bulk"])


#: Final targets of `rule all`; each rule file extends it with its own outputs.
FINAL_OUTPUTS = [f"{RESULTS}/run_info.html"]
