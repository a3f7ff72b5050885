# Compound study (included by compound.smk): the plan checked before the DAG is built (degflow.plan.compound),
# wildcard constraints, the globals the rules read and input functions.
from degflow.plan.compound import (
    arm_sizes,
    compound_targets,
    pathway_group_by,
    plan_compound,
    treatment_arms,
    workbook_tables,
)

COMPOUND_CAT = "05. Compound study"

try:
    COMPOUND = plan_compound(BULK, bundled_dir=Path(workflow.basedir) / "resources" / "genesets")
    PATHWAY_GROUP = pathway_group_by(BULK, BULK_PLAN.factors)
except DegflowInputError as err:
    _stop(err)

PANELS = COMPOUND.panels  # gene-set name -> file-safe name

if COMPOUND.treatments:

    wildcard_constraints:
        treatment="|".join(COMPOUND.treatments),


if PANELS:

    wildcard_constraints:
        panel="|".join(PANELS.values()),


def rescue_inputs(wildcards):
    """The disease and treatment results tables of one treatment, and the normalised counts and sample sheet
    of the sample-label permutation test."""
    return {
        "disease": f"{RESULTS}/bulk/de/{COMPOUND.disease}/results.tsv",
        "treatment": f"{RESULTS}/bulk/de/{wildcards.treatment}/results.tsv",
        "dataset": f"{RESULTS}/bulk/counts/dataset.h5ad",
        "size_factors": f"{RESULTS}/bulk/counts/size_factors.tsv",
        "samples": BULK["samples"],
    }


def rescue_arms(wildcards):
    """The factor and the control / model / treated levels of a treatment (checked by plan_compound)."""
    return treatment_arms(BULK_PLAN.contrasts, treatment=wildcards.treatment, disease=COMPOUND.disease)


def rescue_group_sizes(wildcards):
    """Samples in the model (reference) and treated groups of a treatment contrast."""
    return arm_sizes(BULK_PLAN.sheet, BULK_PLAN.contrasts[wildcards.treatment])


#: Every final output of the compound-study rules (for rule all); the tables of compound_tables.xlsx.
COMPOUND_OUTPUTS = compound_targets(RESULTS, plan=COMPOUND, bulk_cfg=BULK, contrasts=CONTRASTS)
COMPOUND_WORKBOOK = workbook_tables(RESULTS, plan=COMPOUND, bulk_cfg=BULK, contrasts=CONTRASTS)
FINAL_OUTPUTS += COMPOUND_OUTPUTS


def enrichment_gsea_input(wildcards):
    """GSEA table of a contrast when GSEA is on (the dot plot draws it)."""
    if BULK["enrichment"]["gsea"]:
        return {"gsea": f"{RESULTS}/bulk/enrichment/{wildcards.contrast}/gsea.tsv"}
    return {}


def workbook_inputs(wildcards):
    """Tables gathered into compound_tables.xlsx."""
    return COMPOUND_WORKBOOK
