# Single-cell RNA-seq: the genes detected in >= min_cells cells (all samples, before cell QC, as the tutorials), then
# per sample read + QC + doublets, one merge, processing (normalise, HVG, PCA, kNN, Leiden, UMAP), cell-type
# annotation, marker genes, and the figures and tables of the report.
# Restyling a figure re-runs no computation: every figure rule reads the finished AnnData or a table.
import re

from degflow.config import plan_singlecell

SC = CFG["singlecell"]
SC_DIR = f"{RESULTS}/singlecell"
SC_QC = "5. Single-cell QC"
SC_CLUSTERS = "6. Single-cell clusters and cell types"
SC_MARKERS = "7. Single-cell marker genes"

try:
    SC_PLAN = plan_singlecell(SC)
except DegflowInputError as err:
    _stop(err)

#: obs columns with one marker table and dot plot each: every Leiden clustering, and cell_type when annotated.
SC_GROUPINGS = SC_PLAN.clusterings + (["cell_type"] if SC_PLAN.annotation_key else [])
#: UMAP figures: name -> obs columns coloured (one panel each).
SC_UMAPS = {"clusters": SC_PLAN.clusterings}
if SC_PLAN.annotation_key:
    SC_UMAPS["cell_type"] = ["cell_type"]
SC_UMAPS["sample"] = ["sample"]
for _col in ("condition", "donor", "batch"):
    if _col in SC_PLAN.metadata:
        SC_UMAPS[_col] = [_col]
SC_UMAPS["qc"] = ["n_genes_by_counts", "total_counts", "pct_counts_mt"] + (
    ["doublet_score"] if SC["doublets"]["method"] != "none" else []
)
#: The processed AnnData is the final one when there is no annotation step.
SC_PROCESSED = f"{SC_DIR}/processed.h5ad" if SC_PLAN.annotation_key else f"{SC_DIR}/adata.h5ad"


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
FINAL_OUTPUTS += expand(f"{SC_DIR}/markers/{{grouping}}{{ext}}", grouping=SC_GROUPINGS,
                        ext=[".tsv", ".html", "_dotplot.png"])
if SC_PLAN.annotation_key:
    FINAL_OUTPUTS += [f"{SC_DIR}/annotation_scores.tsv", f"{SC_DIR}/annotation_scores.html",
                      f"{SC_DIR}/markers/annotation_dotplot.png"]


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
    return report(f"{SC_DIR}/umap/{name}.png", caption="../report/sc_umap.rst", category=SC_CLUSTERS,
                  labels={"figure": "UMAP", "colour": name})


def sc_dotplot_report(grouping):
    """A marker dot plot (PNG) as a report item."""
    return report(f"{SC_DIR}/markers/{grouping}_dotplot.png", caption="../report/sc_marker_dotplot.rst",
                  category=SC_MARKERS, subcategory=grouping, labels={"clustering": grouping, "figure": "dot plot"})


def sc_annotation_dotplot_outputs():
    """The dot plot of the marker-YAML genes per annotated cluster (PNG as a report item, PDF); none without markers."""
    if not SC_PLAN.annotation_key:
        return []
    return [report(f"{SC_DIR}/markers/annotation_dotplot.png", caption="../report/sc_annotation_dotplot.rst",
                   category=SC_CLUSTERS), f"{SC_DIR}/markers/annotation_dotplot.pdf"]


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


rule sc_genes:
    input:
        sc_all_files(),
    output:
        f"{SC_DIR}/qc/genes.tsv",
    params:
        rows=sc_reader_rows(),
        sheet=SC["samples"],
        min_cells=SC["qc"]["min_cells"],
    log:
        f"{RESULTS}/logs/singlecell/genes.log",
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_genes.py"


rule sc_sample:
    input:
        counts=sc_sample_files,
        genes=f"{SC_DIR}/qc/genes.tsv",
    output:
        cells=f"{SC_DIR}/samples/{{sc_sample}}/cells.h5ad",
        qc_removed=f"{SC_DIR}/samples/{{sc_sample}}/qc_removed.tsv",
        qc_cells=f"{SC_DIR}/samples/{{sc_sample}}/qc_cells.tsv",
        doublets=f"{SC_DIR}/samples/{{sc_sample}}/doublets.tsv",
    params:
        row=sc_sample_row,
        sheet=SC["samples"],
        qc={k: SC["qc"][k] for k in ("min_genes", "max_genes", "max_pct_mt", "nmads")},
        doublets=SC["doublets"],
        seed=SC["seed"],
    log:
        f"{RESULTS}/logs/singlecell/samples/{{sc_sample}}.log",
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_sample.py"


rule sc_merge:
    input:
        cells=sc_sample_outputs("cells.h5ad"),
        genes=f"{SC_DIR}/qc/genes.tsv",
    output:
        f"{SC_DIR}/merged.h5ad",
    params:
        categories=SC_PLAN.metadata,
        min_cells=SC["qc"]["min_cells"],
    log:
        f"{RESULTS}/logs/singlecell/merge.log",
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_merge.py"


rule sc_cells_removed:
    input:
        qc=sc_sample_outputs("qc_removed.tsv"),
        doublets=sc_sample_outputs("doublets.tsv"),
    output:
        table=f"{SC_DIR}/qc/cells_removed.tsv",
        html=report(f"{SC_DIR}/qc/cells_removed.html", caption="../report/sc_cells_removed.rst", category=SC_QC),
    log:
        f"{RESULTS}/logs/singlecell/cells_removed.log",
    threads: 1
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_cells_removed.py"


rule sc_qc_plots:
    input:
        cells=sc_sample_outputs("qc_cells.tsv"),
        merged=f"{SC_DIR}/merged.h5ad",
    output:
        violin_before=report(f"{SC_DIR}/qc/violin_before.png", caption="../report/sc_qc_violin.rst", category=SC_QC,
                             labels={"figure": "QC violins", "cells": "before QC"}),
        violin_after=report(f"{SC_DIR}/qc/violin_after.png", caption="../report/sc_qc_violin.rst", category=SC_QC,
                            labels={"figure": "QC violins", "cells": "after QC"}),
        scatter_before=report(f"{SC_DIR}/qc/scatter_before.png", caption="../report/sc_qc_scatter.rst",
                              category=SC_QC, labels={"figure": "QC scatter", "cells": "before QC"}),
        scatter_after=report(f"{SC_DIR}/qc/scatter_after.png", caption="../report/sc_qc_scatter.rst",
                             category=SC_QC, labels={"figure": "QC scatter", "cells": "after QC"}),
        pdfs=expand(f"{SC_DIR}/qc/{{kind}}_{{stage}}.pdf", kind=["violin", "scatter"], stage=["before", "after"]),
    params:
        samples=SC_PLAN.samples,
        thresholds=sc_qc_thresholds(),
    log:
        f"{RESULTS}/logs/singlecell/qc_plots.log",
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_qc_plots.py"


rule sc_process:
    input:
        f"{SC_DIR}/merged.h5ad",
    output:
        SC_PROCESSED,
    params:
        process=sc_process_params(),
    log:
        f"{RESULTS}/logs/singlecell/process.log",
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_process.py"


if SC_PLAN.annotation_key:

    rule sc_annotate:
        input:
            h5ad=f"{SC_DIR}/processed.h5ad",
            markers=SC["markers"],
        output:
            h5ad=f"{SC_DIR}/adata.h5ad",
            scores=f"{SC_DIR}/annotation_scores.tsv",
            html=report(f"{SC_DIR}/annotation_scores.html", caption="../report/sc_annotation.rst",
                        category=SC_CLUSTERS),
        params:
            groupby=SC_PLAN.annotation_key,
            min_score=SC["annotation"]["min_score"],
        log:
            f"{RESULTS}/logs/singlecell/annotate.log",
        threads: 1
        resources:
            mem_mb=8000,
        conda:
            "../../envs/singlecell.yaml"
        script:
            "../scripts/sc_annotate.py"


rule sc_cluster_sizes:
    input:
        f"{SC_DIR}/adata.h5ad",
    output:
        table=f"{SC_DIR}/cluster_sizes.tsv",
        html=report(f"{SC_DIR}/cluster_sizes.html", caption="../report/sc_cluster_sizes.rst", category=SC_CLUSTERS),
    params:
        groupings=SC_GROUPINGS,
    log:
        f"{RESULTS}/logs/singlecell/cluster_sizes.log",
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_cluster_sizes.py"


rule sc_umaps:
    input:
        f"{SC_DIR}/adata.h5ad",
    output:
        *[sc_umap_report(name) for name in SC_UMAPS],
        pdfs=expand(f"{SC_DIR}/umap/{{name}}.pdf", name=list(SC_UMAPS)),
    params:
        panels=SC_UMAPS,
    log:
        f"{RESULTS}/logs/singlecell/umaps.log",
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_umaps.py"


rule sc_markers:
    input:
        f"{SC_DIR}/adata.h5ad",
    output:
        table=f"{SC_DIR}/markers/{{grouping}}.tsv",
        html=report(f"{SC_DIR}/markers/{{grouping}}.html", caption="../report/sc_markers_table.rst",
                    category=SC_MARKERS, subcategory="{grouping}",
                    labels={"clustering": "{grouping}", "figure": "marker table"}),
    params:
        test=SC["marker_test"],
    log:
        f"{RESULTS}/logs/singlecell/markers/{{grouping}}.log",
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_markers.py"


rule sc_dotplots:
    input:
        unpack(sc_marker_yaml),
        h5ad=f"{SC_DIR}/adata.h5ad",
        tables=expand(f"{SC_DIR}/markers/{{grouping}}.tsv", grouping=SC_GROUPINGS),
    output:
        *[sc_dotplot_report(g) for g in SC_GROUPINGS],
        pdfs=expand(f"{SC_DIR}/markers/{{grouping}}_dotplot.pdf", grouping=SC_GROUPINGS),
        annotation=sc_annotation_dotplot_outputs(),
    params:
        groupings=SC_GROUPINGS,
        annotation_key=SC_PLAN.annotation_key,
        n_genes=SC["marker_test"]["dotplot_genes"],
    log:
        f"{RESULTS}/logs/singlecell/dotplots.log",
    threads: 1
    resources:
        mem_mb=8000,
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_dotplots.py"
