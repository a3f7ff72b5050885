# Single-cell (included by singlecell.smk): the plan checked before the DAG is built (degflow.plan.singlecell), the
# globals the rules read (figure and table lists, params) and input functions.
import re

from degflow.plan.singlecell import (
    goi_groupby,
    marker_groupings,
    plan_singlecell,
    process_params,
    qc_thresholds,
    reader_rows,
    sample_gb,
    singlecell_targets,
    umap_panels,
)
from degflow.singlecell.genes import read_genes_of_interest

SC = CFG["singlecell"]
SC_DIR = f"{RESULTS}/singlecell"
SC_QC = "06. Single-cell QC"
SC_CLUSTERS = "07. Single-cell clusters and cell types"
SC_MARKERS = "08. Single-cell marker genes"

try:
    SC_PLAN = plan_singlecell(SC)
except DegflowInputError as err:
    _stop(err)

#: GB of raw count files per sample and in all (directories: their files): what single-cell memory and time grow with.
SC_SAMPLE_GB = sample_gb(SC_PLAN)
SC_INPUT_GB = sum(SC_SAMPLE_GB.values())
#: singlecell.scale.on_disk: true: the heavy rules request memory for the on-disk path (measured ~10x less per GB of
#: input, benchmarks/singlecell_scale.py); with auto the in-memory requests stay (the cell count is known only later).
SC_ON_DISK = SC["scale"]["on_disk"] is True
#: singlecell.reference: labels transferred from a labelled reference (obs cell_type_reference), or None.
SC_REFERENCE = SC.get("reference")
#: obs columns with one marker table and dot plot each: every Leiden clustering, cell_type(_reference) when made.
SC_GROUPINGS = marker_groupings(SC_PLAN, reference=bool(SC_REFERENCE))
#: The annotation step (sc_annotate) runs when cells get names: from the marker YAML and/or the reference.
SC_ANNOTATED = bool(SC_PLAN.annotation_key or SC_REFERENCE)
#: UMAP figures: name -> obs columns coloured (one panel each).
SC_UMAPS = umap_panels(SC_PLAN, reference=bool(SC_REFERENCE), doublets=SC["doublets"]["method"] != "none")
#: singlecell.genes_of_interest: the genes (checked here: a list file must exist), their figures' grouping (the
#: pseudobulk cell types, else cell_type, cell_type_reference or the annotated / last clustering) and condition column.
try:
    SC_GOI = read_genes_of_interest(SC["genes_of_interest"])
except DegflowInputError as err:
    _stop(err)
SC_GOI_GROUPBY = goi_groupby(SC, SC_PLAN)
SC_GOI_CONDITION = "condition" if "condition" in SC_PLAN.metadata else None
#: The processed AnnData is the final one when there is no annotation step.
SC_PROCESSED = f"{SC_DIR}/processed.h5ad" if SC_ANNOTATED else f"{SC_DIR}/adata.h5ad"
#: Params of the rules: each sample's reader columns, degflow.singlecell.process.process's options, QC lines.
SC_READER_ROWS = reader_rows(SC_PLAN)
SC_PROCESS_PARAMS = process_params(SC)
SC_QC_THRESHOLDS = qc_thresholds(SC)


wildcard_constraints:
    sc_sample="|".join(re.escape(s) for s in SC_PLAN.samples),
    grouping="|".join(re.escape(g) for g in SC_GROUPINGS),


FINAL_OUTPUTS += singlecell_targets(
    SC_DIR,
    plan=SC_PLAN,
    groupings=SC_GROUPINGS,
    umaps=SC_UMAPS,
    genes_of_interest=bool(SC_GOI),
    reference=bool(SC_REFERENCE),
)


def sc_sample_files(wildcards):
    """The count files of one sample (a directory's files are listed, so editing one re-runs the sample)."""
    return SC_PLAN.files[wildcards.sc_sample]


def sc_all_files():
    """The count files of every sample."""
    return [f for s in SC_PLAN.samples for f in SC_PLAN.files[s]]


def sc_sample_row(wildcards):
    """One sample's sample-sheet row (its path, format, metadata and QC overrides) as a dict."""
    return {"sample": wildcards.sc_sample, **SC_PLAN.sheet.loc[wildcards.sc_sample].to_dict()}


def sc_sample_outputs(name):
    """One per-sample output of every sample (name: cells.h5ad, qc_removed.tsv, qc_cells.tsv, doublets.tsv)."""
    return [f"{SC_DIR}/samples/{s}/{name}" for s in SC_PLAN.samples]


def sc_umap_report(name):
    """A UMAP figure (PNG) as a report item."""
    return report(
        f"{SC_DIR}/umap/{name}.png",
        caption="../report/sc_umap.rst",
        category=SC_CLUSTERS,
        labels={"figure": "UMAP", "colour": name},
    )


def sc_dotplot_report(grouping):
    """A marker dot plot (PNG) as a report item."""
    return report(
        f"{SC_DIR}/markers/{grouping}_dotplot.png",
        caption="../report/sc_marker_dotplot.rst",
        category=SC_MARKERS,
        subcategory=grouping,
        labels={"clustering": grouping, "figure": "dot plot"},
    )


def sc_annotation_dotplot_outputs():
    """The dot plot of the marker-YAML genes per annotated cluster (PNG as a report item, PDF); none without markers."""
    if not SC_PLAN.annotation_key:
        return []
    png = report(
        f"{SC_DIR}/markers/annotation_dotplot.png",
        caption="../report/sc_annotation_dotplot.rst",
        category=SC_CLUSTERS,
    )
    return [png, f"{SC_DIR}/markers/annotation_dotplot.pdf"]


def sc_marker_yaml(wildcards):
    """The marker-gene YAML, when annotation is configured."""
    return {"markers": SC["markers"]} if SC_PLAN.annotation_key else {}


def sc_annotate_inputs(wildcards):
    """The marker YAML and the reference labels, whichever are configured."""
    return {
        **({"markers": SC["markers"]} if SC_PLAN.annotation_key else {}),
        **(
            {"reference": f"{SC_DIR}/reference/labels.tsv", "reference_summary": f"{SC_DIR}/reference/summary.tsv"}
            if SC_REFERENCE
            else {}
        ),
    }


def sc_annotation_tables():
    """The marker-score table (TSV, and HTML as a report item) when the marker YAML is set; none otherwise."""
    if not SC_PLAN.annotation_key:
        return []
    html = report(f"{SC_DIR}/annotation_scores.html", caption="../report/sc_annotation.rst", category=SC_CLUSTERS)
    return [f"{SC_DIR}/annotation_scores.tsv", html]
