# Pseudobulk (included by pseudobulk.smk): the design checked against the sample sheet before the DAG is built
# (degflow.plan.pseudobulk), and the input functions that read the pb_aggregate checkpoint.
from degflow.plan.pseudobulk import plan_pseudobulk, pseudobulk_targets, tested_cell_types

PB = SC["pseudobulk"]
PB_DIR = f"{RESULTS}/pseudobulk"
PB_CAT = "09. Pseudobulk differential expression"

try:
    PB_PLAN = plan_pseudobulk(
        PB,
        SC_PLAN.sheet,
        clusterings=SC_PLAN.clusterings,
        annotated=bool(SC_PLAN.annotation_key),
        source=SC["samples"],
        reference=SC_PLAN.reference,
    )
except DegflowInputError as err:
    _stop(err)

PB_CONTRASTS = list(PB_PLAN.contrasts)


wildcard_constraints:
    celltype="[A-Za-z0-9][A-Za-z0-9._-]*",
    pb_contrast="|".join(re.escape(c) for c in PB_CONTRASTS),


FINAL_OUTPUTS += pseudobulk_targets(PB_DIR, genes_of_interest=bool(SC_GOI))


def pb_tested():
    """{folder: cell type} of the cell types with enough replicates (read after the pb_aggregate checkpoint)."""
    return tested_cell_types(checkpoints.pb_aggregate.get().output.cell_types)


def pb_cell_type(wildcards):
    """The cell-type name behind a folder wildcard."""
    return pb_tested()[wildcards.celltype]


def pb_results(wildcards):
    """results.tsv of every tested cell type and contrast (cell types in table order, contrasts in config order)."""
    return [f"{PB_DIR}/{ct}/{c}/results.tsv" for ct in pb_tested() for c in PB_CONTRASTS]


def pb_report_targets(wildcards):
    """Volcano plots and DEG pages of every tested cell type (targets of rule all)."""
    return [
        f"{PB_DIR}/{ct}/{c}/{name}" for ct in pb_tested() for c in PB_CONTRASTS for name in ("volcano.png", "deg.html")
    ]


def pb_volcano_report(contrast):
    """One contrast's volcano (PNG) of a cell type, as a report item."""
    return report(
        f"{PB_DIR}/{{celltype}}/{contrast}/volcano.png",
        caption="../report/pb_volcano.rst",
        category=PB_CAT,
        subcategory="{celltype}",
        labels={"cell type": "{celltype}", "contrast": contrast, "figure": "volcano"},
    )


def pb_deg_report(contrast):
    """One contrast's DEG page of a cell type, as a report item."""
    return report(
        f"{PB_DIR}/{{celltype}}/{contrast}/deg.html",
        caption="../report/pb_deg_table.rst",
        category=PB_CAT,
        subcategory="{celltype}",
        labels={"cell type": "{celltype}", "contrast": contrast, "figure": "DEG table"},
    )


FINAL_OUTPUTS.append(pb_report_targets)
