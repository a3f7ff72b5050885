# Single-cell RNA-seq: the genes detected in >= min_cells cells (all samples, before cell QC, as the tutorials), then
# per sample read + QC + doublets, one merge, processing (normalise, HVG, PCA, kNN, Leiden, UMAP), cell-type
# annotation, marker genes, and the figures and tables of the report.
# Restyling a figure re-runs no computation: every figure rule reads the finished AnnData or a table.


include: "singlecell_common.smk"


rule sc_genes:
    input:
        sc_all_files(),
    output:
        f"{SC_DIR}/qc/genes.tsv",
    params:
        rows=SC_READER_ROWS,
        sheet=SC["samples"],
        min_cells=SC["qc"]["min_cells"],
    log:
        f"{RESULTS}/logs/singlecell/genes.log",
    threads: 1
    resources:
        mem_mb=scaled(2000, 6000, max(SC_SAMPLE_GB.values(), default=0)),  # one sample at a time
        runtime=scaled(10, 20, SC_INPUT_GB),
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
        mem_mb=scaled(2000, 8000, lambda wc: SC_SAMPLE_GB[wc.sc_sample]),
        runtime=scaled(10, 30, lambda wc: SC_SAMPLE_GB[wc.sc_sample]),
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
        scale=SC["scale"],
    log:
        f"{RESULTS}/logs/singlecell/merge.log",
    threads: 1
    resources:
        mem_mb=scaled(3000, 1000 if SC_ON_DISK else 10000, SC_INPUT_GB),
        runtime=scaled(10, 20, SC_INPUT_GB),
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
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(5),
    group:
        "sc_figures"
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_cells_removed.py"


rule sc_qc_plots:
    input:
        cells=sc_sample_outputs("qc_cells.tsv"),
        merged=f"{SC_DIR}/merged.h5ad",
    output:
        violin_before=report(
            f"{SC_DIR}/qc/violin_before.png",
            caption="../report/sc_qc_violin.rst",
            category=SC_QC,
            labels={"figure": "QC violins", "cells": "before QC"},
        ),
        violin_after=report(
            f"{SC_DIR}/qc/violin_after.png",
            caption="../report/sc_qc_violin.rst",
            category=SC_QC,
            labels={"figure": "QC violins", "cells": "after QC"},
        ),
        scatter_before=report(
            f"{SC_DIR}/qc/scatter_before.png",
            caption="../report/sc_qc_scatter.rst",
            category=SC_QC,
            labels={"figure": "QC scatter", "cells": "before QC"},
        ),
        scatter_after=report(
            f"{SC_DIR}/qc/scatter_after.png",
            caption="../report/sc_qc_scatter.rst",
            category=SC_QC,
            labels={"figure": "QC scatter", "cells": "after QC"},
        ),
        pdfs=expand(f"{SC_DIR}/qc/{{kind}}_{{stage}}.pdf", kind=["violin", "scatter"], stage=["before", "after"]),
    params:
        samples=SC_PLAN.samples,
        thresholds=SC_QC_THRESHOLDS,
    log:
        f"{RESULTS}/logs/singlecell/qc_plots.log",
    threads: 1
    resources:
        mem_mb=scaled(2000, 6000, SC_INPUT_GB),
        runtime=scaled(10, 10, SC_INPUT_GB),
    group:
        "sc_figures"
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
        process=SC_PROCESS_PARAMS,
        scale=SC["scale"],
    log:
        f"{RESULTS}/logs/singlecell/process.log",
    threads: 2
    resources:
        mem_mb=scaled(4000, 3000 if SC_ON_DISK else 16000, SC_INPUT_GB),
        runtime=scaled(20, 60, SC_INPUT_GB),
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_process.py"


if SC_REFERENCE:

    rule sc_reference:
        input:
            h5ad=f"{SC_DIR}/processed.h5ad",
            reference=SC_REFERENCE["path"],
        output:
            labels=f"{SC_DIR}/reference/labels.tsv",
            summary=f"{SC_DIR}/reference/summary.tsv",
            html=report(f"{SC_DIR}/reference/summary.html", caption="../report/sc_reference.rst", category=SC_CLUSTERS),
        params:
            reference={k: v for k, v in SC_REFERENCE.items() if k != "path"},
            target_sum=SC["normalize"]["target_sum"],  # the reference is normalised as the query
            seed=SC["seed"],
        log:
            f"{RESULTS}/logs/singlecell/reference.log",
        threads: 1
        resources:
            mem_mb=scaled(3000, 10000, SC_INPUT_GB),
            runtime=scaled(10, 20, SC_INPUT_GB),
        conda:
            "../../envs/singlecell.yaml"
        script:
            "../scripts/sc_reference.py"


if SC_ANNOTATED:

    rule sc_annotate:
        input:
            unpack(sc_annotate_inputs),
            h5ad=f"{SC_DIR}/processed.h5ad",
        output:
            *sc_annotation_tables(),
            h5ad=f"{SC_DIR}/adata.h5ad",
        params:
            groupby=SC_PLAN.annotation_key,
            min_score=SC["annotation"]["min_score"],
            min_margin=SC["annotation"]["min_margin"],
            scale=SC["scale"],
        log:
            f"{RESULTS}/logs/singlecell/annotate.log",
        threads: 1
        resources:
            mem_mb=scaled(3000, 1000 if SC_ON_DISK else 10000, SC_INPUT_GB),
            runtime=scaled(10, 20, SC_INPUT_GB),
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
        mem_mb=scaled(2000, 6000, SC_INPUT_GB),
        runtime=scaled(5, 5, SC_INPUT_GB),
    group:
        "sc_figures"
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
        scale=SC["scale"],
    log:
        f"{RESULTS}/logs/singlecell/umaps.log",
    threads: 1
    resources:
        mem_mb=scaled(2000, 6000, SC_INPUT_GB),
        runtime=scaled(10, 10, SC_INPUT_GB),
    group:
        "sc_figures"
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_umaps.py"


rule sc_markers:
    input:
        f"{SC_DIR}/adata.h5ad",
    output:
        table=f"{SC_DIR}/markers/{{grouping}}.tsv",
        html=report(
            f"{SC_DIR}/markers/{{grouping}}.html",
            caption="../report/sc_markers_table.rst",
            category=SC_MARKERS,
            subcategory="{grouping}",
            labels={"clustering": "{grouping}", "figure": "marker table"},
        ),
    params:
        test=SC["marker_test"],
        scale=SC["scale"],
        seed=SC["seed"],
    log:
        f"{RESULTS}/logs/singlecell/markers/{{grouping}}.log",
    threads: 1
    resources:
        mem_mb=scaled(3000, 1000 if SC_ON_DISK else 10000, SC_INPUT_GB),
        runtime=scaled(10, 30, SC_INPUT_GB),
    group:
        "sc_figures"
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
        scale=SC["scale"],
    log:
        f"{RESULTS}/logs/singlecell/dotplots.log",
    threads: 1
    resources:
        mem_mb=scaled(3000, 10000, SC_INPUT_GB),
        runtime=scaled(10, 10, SC_INPUT_GB),
    group:
        "sc_figures"
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_dotplots.py"


if SC_GOI:

    rule sc_genes_of_interest:
        input:
            f"{SC_DIR}/adata.h5ad",
        output:
            umap=report(
                f"{SC_DIR}/genes_of_interest/umap.png",
                caption="../report/sc_genes_of_interest.rst",
                category=SC_CLUSTERS,
                labels={"figure": "genes of interest", "plot": "UMAP"},
            ),
            dotplot=report(
                f"{SC_DIR}/genes_of_interest/dotplot.png",
                caption="../report/sc_genes_of_interest.rst",
                category=SC_CLUSTERS,
                labels={"figure": "genes of interest", "plot": "dot plot"},
            ),
            violin=report(
                f"{SC_DIR}/genes_of_interest/violin.png",
                caption="../report/sc_genes_of_interest.rst",
                category=SC_CLUSTERS,
                labels={"figure": "genes of interest", "plot": "violins"},
            ),
            pdfs=expand(f"{SC_DIR}/genes_of_interest/{{name}}.pdf", name=["umap", "dotplot", "violin"]),
            genes=f"{SC_DIR}/genes_of_interest/genes.tsv",
        params:
            genes=SC_GOI,
            groupby=SC_GOI_GROUPBY,
            condition=SC_GOI_CONDITION,
            scale=SC["scale"],
        log:
            f"{RESULTS}/logs/singlecell/genes_of_interest.log",
        threads: 1
        resources:
            mem_mb=scaled(2000, 6000, SC_INPUT_GB),
            runtime=scaled(10, 10, SC_INPUT_GB),
        group:
            "sc_figures"
        conda:
            "../../envs/singlecell.yaml"
        script:
            "../scripts/sc_genes_of_interest.py"
