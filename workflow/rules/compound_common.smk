# Plain Python for workflow/rules/compound.smk: the compound-study plan (checked before the DAG is built),
# wildcard constraints and input/param helpers. Included by compound.smk.
from degflow.compound.rescue import pathway_group_by, plan_compound

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
    factor, treated, model = BULK_PLAN.contrasts[wildcards.treatment]
    control = BULK_PLAN.contrasts[COMPOUND.disease][2]
    return {"factor": factor, "control": str(control), "model": str(model), "treated": str(treated)}


def rescue_group_sizes(wildcards):
    """Samples in the model (reference) and treated groups of a treatment contrast."""
    factor, treated, model = BULK_PLAN.contrasts[wildcards.treatment]
    levels = BULK_PLAN.sheet[factor].astype(str)
    return {"n_reference": int((levels == str(model)).sum()), "n_treated": int((levels == str(treated)).sum())}


def compound_outputs():
    """Every final output of the compound-study rules (for rule all)."""
    out = []
    if COMPOUND.treatments:
        out.append(f"{RESULTS}/bulk/rescue/summary.tsv")
        for t in COMPOUND.treatments:
            out += [
                f"{RESULTS}/bulk/rescue/{t}/genes.tsv",
                f"{RESULTS}/bulk/rescue/{t}/summary.tsv",
                f"{RESULTS}/bulk/rescue/{t}/rescue.png",
            ]
    if PANELS:
        out += [f"{RESULTS}/bulk/pathways/scores.tsv", f"{RESULTS}/bulk/pathways/scores.png"]
        for p in PANELS.values():
            out += [f"{RESULTS}/bulk/pathways/{p}/genes.tsv", f"{RESULTS}/bulk/pathways/{p}/heatmap.png"]
    if BULK.get("enrichment") is not None:
        for c in CONTRASTS:
            out += [f"{RESULTS}/bulk/enrichment/{c}/ora.tsv", f"{RESULTS}/bulk/enrichment/{c}/dotplot.png"]
            if BULK["enrichment"]["gsea"]:
                out.append(f"{RESULTS}/bulk/enrichment/{c}/gsea.tsv")
    if COMPOUND.qpcr_contrasts:
        out += [
            f"{RESULTS}/bulk/qpcr/fold_changes.tsv",
            f"{RESULTS}/bulk/qpcr/concordance.tsv",
            f"{RESULTS}/bulk/qpcr/concordance.png",
        ]
    if out:
        out.append(f"{RESULTS}/bulk/compound_tables.xlsx")
    return out


FINAL_OUTPUTS += compound_outputs()


def enrichment_gsea_input(wildcards):
    """GSEA table of a contrast when GSEA is on (the dot plot draws it)."""
    if BULK["enrichment"]["gsea"]:
        return {"gsea": f"{RESULTS}/bulk/enrichment/{wildcards.contrast}/gsea.tsv"}
    return {}


def workbook_inputs(wildcards):
    """Tables gathered into compound_tables.xlsx."""
    out = {}
    if COMPOUND.treatments:
        out["rescue_summary"] = f"{RESULTS}/bulk/rescue/summary.tsv"
        out["rescue_genes"] = expand(f"{RESULTS}/bulk/rescue/{{t}}/genes.tsv", t=COMPOUND.treatments)
    if PANELS:
        out["scores"] = f"{RESULTS}/bulk/pathways/scores.tsv"
        out["set_sizes"] = f"{RESULTS}/bulk/pathways/gene_sets.tsv"
        out["panel_genes"] = expand(f"{RESULTS}/bulk/pathways/{{p}}/genes.tsv", p=PANELS.values())
    if BULK.get("enrichment") is not None:
        out["ora"] = expand(f"{RESULTS}/bulk/enrichment/{{c}}/ora.tsv", c=CONTRASTS)
        if BULK["enrichment"]["gsea"]:
            out["gsea"] = expand(f"{RESULTS}/bulk/enrichment/{{c}}/gsea.tsv", c=CONTRASTS)
    if COMPOUND.qpcr_contrasts:
        out["qpcr"] = f"{RESULTS}/bulk/qpcr/fold_changes.tsv"
        out["qpcr_pairs"] = f"{RESULTS}/bulk/qpcr/concordance.tsv"
        out["qpcr_stats"] = f"{RESULTS}/bulk/qpcr/concordance_stats.tsv"
    return out
