# Plain Python shared by the rules: config validation (before the DAG), paths and small helpers.
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from degflow.errors import DegflowInputError
from degflow.plan.config import validate_config


def _stop(err):
    # One line, no traceback, nothing written: the DAG is never built.
    sys.exit(f"degflow: {err}")


try:
    CFG = validate_config(config, Path(workflow.basedir) / "workflow" / "schemas")
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
    from degflow.bulk.dataset import plan_bulk
    from degflow.bulk.genes_of_interest import default_group_by

    try:
        BULK_PLAN, _counts = plan_bulk(CFG["bulk"])
    except DegflowInputError as err:
        _stop(err)
    if _counts.gene_names is not None and CFG["bulk"].get("annotation"):
        print(
            f"degflow note: the counts have their own gene-name column and bulk.annotation is set: names come "
            f"from {CFG['bulk']['annotation']}, the counts' names fill only the genes it lacks",
            file=sys.stderr,
        )
    #: Size of the analysed count matrix in millions of cells (genes x samples): what bulk memory and time grow with.
    BULK_MCELLS = _counts.counts.shape[0] * len(BULK_PLAN.samples) / 1e6
    del _counts
    CONTRASTS = list(BULK_PLAN.contrasts)
    LRTS = list(BULK_PLAN.lrt)

    wildcard_constraints:
        contrast="|".join(CONTRASTS),
        lrt="|".join(LRTS) or "no_lrt",


def scaled(base, per_unit=0.0, units=0.0):
    """A ``resources:`` value (``mem_mb`` in MB or ``runtime`` in minutes) for a cluster request.

    ``ceil((base + per_unit * units) * attempt)``: it grows with the data (``units``: millions of
    count-matrix cells for bulk rules, GB of raw input for single-cell rules, both known when the
    workflow is parsed; or a function of the job's wildcards, e.g. one sample's input) and with the retry attempt (the SLURM profile retries once), so a job killed
    for memory or walltime is resubmitted with twice the request.
    """

    def resource(wildcards, attempt):
        amount = units(wildcards) if callable(units) else units
        return int(math.ceil((base + per_unit * amount) * attempt))

    return resource


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
    extra = {}
    if CFG["bulk"].get("annotation"):
        extra["annotation"] = CFG["bulk"]["annotation"]
    if CFG["bulk"]["counts"].get("tx2gene"):
        extra["tx2gene"] = CFG["bulk"]["counts"]["tx2gene"]
    return extra


#: Final targets of `rule all`; each rule file extends it with its own outputs.
FINAL_OUTPUTS = [f"{RESULTS}/run_info.html"]
