# Single-cell plan and helpers (plain Python, included by singlecell.smk): the sample sheet checked before the
# DAG is built, the figure and table lists, input/params functions.
import re

from degflow.config import plan_singlecell
from degflow.single_cell import read_genes_of_interest
from degflow.singlecell.ondisk import check_config as check_on_disk

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
SC_SAMPLE_GB = {
    s: sum(Path(f).stat().st_size for f in SC_PLAN.files[s] if Path(f).is_file()) / 1e9 for s in SC_PLAN.samples
}
SC_INPUT_GB = sum(SC_SAMPLE_GB.values())
#: singlecell.scale.on_disk: true: the heavy rules request memory for the on-disk path (measured ~10x less per GB of
#: input, benchmarks/singlecell_scale.py); with auto the in-memory requests stay (the cell count is known only later).
SC_ON_DISK = SC["scale"]["on_disk"] is True
try:
    check_on_disk(SC)
except DegflowInputError as err:
    _stop(err)

#: obs columns with one marker table and dot plot each: every Leiden clustering, and cell_type when annotated.
SC_GROUPINGS = SC_PLAN.clusterings + (["cell_type"] if SC_PLAN.annotation_key else [])
#: singlecell.reference: labels transferred from a labelled reference (obs cell_type_reference), or None.
SC_REFERENCE = SC.get("reference")
#: The annotation step (sc_annotate) runs when cells get names: from the marker YAML and/or the reference.
SC_ANNOTATED = bool(SC_PLAN.annotation_key or SC_REFERENCE)
if SC_REFERENCE:
    SC_GROUPINGS = SC_GROUPINGS + ["cell_type_reference"]
#: UMAP figures: name -> obs columns coloured (one panel each).
SC_UMAPS = {"clusters": SC_PLAN.clusterings}
if SC_PLAN.annotation_key:
    SC_UMAPS["cell_type"] = ["cell_type"]
if SC_REFERENCE:
    SC_UMAPS["cell_type_reference"] = ["cell_type_reference", "cell_type_reference_confidence"]
SC_UMAPS["sample"] = ["sample"]
for _col in ("condition", "donor", "batch"):
    if _col in SC_PLAN.metadata:
        SC_UMAPS[_col] = [_col]
SC_UMAPS["qc"] = ["n_genes_by_counts", "total_counts", "pct_counts_mt"] + (
    ["doublet_score"] if SC["doublets"]["method"] != "none" else []
)
#: singlecell.genes_of_interest: the genes (checked here: a list file must exist), their figures' grouping (the
#: pseudobulk cell types, else cell_type, cell_type_reference or the annotated / last clustering) and condition column.
try:
    SC_GOI = read_genes_of_interest(SC["genes_of_interest"])
except DegflowInputError as err:
    _stop(err)
SC_GOI_GROUPBY = (
    SC["pseudobulk"]["groupby"]
    if SC.get("pseudobulk")
    else "cell_type" if SC_PLAN.annotation_key else "cell_type_reference" if SC_REFERENCE else SC_PLAN.clusterings[-1]
)
SC_GOI_CONDITION = "condition" if "condition" in SC_PLAN.metadata else None
#: The processed AnnData is the final one when there is no annotation step.
SC_PROCESSED = f"{SC_DIR}/processed.h5ad" if SC_ANNOTATED else f"{SC_DIR}/adata.h5ad"


wildcard_constraints:
    sc_sample="|".join(re.escape(s) for s in SC_PLAN.samples),
    grouping="|".join(re.escape(g) for g in SC_GROUPINGS),


FINAL_OUTPUTS += [
    f"{SC_DIR}/adata.h5ad",
    f"{SC_DIR}/qc/genes.tsv",
    f"{SC_DIR}/cluster_sizes.tsv",
    f"{SC_DIR}/cluster_sizes.html",
    f"{SC_DIR}/qc/cells_removed.tsv",
    f"{SC_DIR}/qc/cells_removed.html",
]
FINAL_OUTPUTS += expand(f"{SC_DIR}/qc/{{kind}}_{{stage}}.png", kind=["violin", "scatter"], stage=["before", "after"])
FINAL_OUTPUTS += expand(f"{SC_DIR}/umap/{{umap}}.png", umap=list(SC_UMAPS))
FINAL_OUTPUTS += expand(
    f"{SC_DIR}/markers/{{grouping}}{{ext}}", grouping=SC_GROUPINGS, ext=[".tsv", ".html", "_dotplot.png"]
)
if SC_PLAN.annotation_key:
    FINAL_OUTPUTS += [
        f"{SC_DIR}/annotation_scores.tsv",
        f"{SC_DIR}/annotation_scores.html",
        f"{SC_DIR}/markers/annotation_dotplot.png",
    ]
if SC_GOI:
    FINAL_OUTPUTS += [f"{SC_DIR}/genes_of_interest/{name}.png" for name in ("umap", "dotplot", "violin")]
    FINAL_OUTPUTS += [f"{SC_DIR}/genes_of_interest/genes.tsv"]
if SC_REFERENCE:
    FINAL_OUTPUTS += [
        f"{SC_DIR}/reference/labels.tsv",
        f"{SC_DIR}/reference/summary.tsv",
        f"{SC_DIR}/reference/summary.html",
    ]


def sc_sample_files(wildcards):
    """The count files of one sample (a directory's files are listed, so editing one re-runs the sample)."""
    return SC_PLAN.files[wildcards.sc_sample]


def sc_all_files():
    """The count files of every sample."""
    return [f for s in SC_PLAN.samples for f in SC_PLAN.files[s]]


def sc_reader_rows():
    """Every sample's name and reader columns (path, format, BD/10x options) as dicts, sheet order.

    Metadata and QC-override columns are left out, so editing them does not re-run the gene filter.
    """
    cols = [c for c in ("path", "format", "bd_counts", "bd_sample_tags", "genome") if c in SC_PLAN.sheet.columns]
    return [{"sample": s, **SC_PLAN.sheet.loc[s, cols].to_dict()} for s in SC_PLAN.samples]


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


def sc_process_params():
    """Keyword arguments of degflow.single_cell.process from the config."""
    hvg, pca, nn = SC["hvg"], SC["pca"], SC["neighbors"]
    return {
        "target_sum": SC["normalize"]["target_sum"],
        "hvg_flavor": hvg["flavor"],
        "n_top_genes": hvg["n_top_genes"],
        "min_mean": hvg["min_mean"],
        "max_mean": hvg["max_mean"],
        "min_disp": hvg["min_disp"],
        "hvg_span": hvg["span"],
        "batch_key": SC["batch_key"],
        "integration": SC["integration"],
        "regress_out": pca["regress_out"],
        "scale_max": pca["scale_max"],
        "n_comps": pca["n_comps"],
        "n_neighbors": nn["n_neighbors"],
        "n_pcs": nn["n_pcs"],
        "knn": nn["knn"],
        "resolutions": SC["leiden_resolutions"],
        "seed": SC["seed"],
    }


def sc_qc_thresholds():
    """QC threshold lines drawn on the violins ({metric: [values]})."""
    qc = SC["qc"]
    return {"n_genes_by_counts": [qc["min_genes"], qc["max_genes"]], "pct_counts_mt": [qc["max_pct_mt"]]}


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
