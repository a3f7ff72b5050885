# Pseudobulk differential expression per cell type: raw counts of results/singlecell/adata.h5ad summed per sample x
# cell type (checkpoint: which cell types have enough replicates is known only then), one DESeq2 fit per cell type
# with the bulk engine, the bulk tables, volcano plots, a DEG-count heatmap and cell-type proportions.


include: "pseudobulk_common.smk"


checkpoint pb_aggregate:
    input:
        f"{SC_DIR}/adata.h5ad",
    output:
        h5ad=f"{PB_DIR}/pseudobulk.h5ad",
        cell_types=f"{PB_DIR}/cell_types.tsv",
        skipped=f"{PB_DIR}/skipped.tsv",
        skipped_html=report(
            f"{PB_DIR}/skipped.html", caption="../report/pb_skipped.rst", category=PB_CAT, subcategory="0. overview"
        ),
    params:
        groupby=PB["groupby"],
        sample_key=PB["sample_key"],
        min_cells=PB["min_cells"],
        min_counts=PB["min_counts"],
        min_replicates=PB["min_replicates"],
        design=PB["design"],
        contrasts=PB["contrasts"],
        scale=SC["scale"],
    log:
        f"{RESULTS}/logs/pseudobulk/aggregate.log",
    threads: 1
    resources:
        mem_mb=scaled(3000, 1000 if SC_ON_DISK else 10000, SC_INPUT_GB),
        runtime=scaled(10, 10, SC_INPUT_GB),
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/pb_aggregate.py"


rule pb_de:
    input:
        f"{PB_DIR}/pseudobulk.h5ad",
    output:
        results=[f"{PB_DIR}/{{celltype}}/{c}/results.tsv" for c in PB_CONTRASTS],
        deg=[f"{PB_DIR}/{{celltype}}/{c}/deg.tsv" for c in PB_CONTRASTS],
    params:
        cell_type=pb_cell_type,
        groupby=PB["groupby"],
        design=PB["design"],
        reference_levels=PB["reference_levels"],
        contrasts=PB["contrasts"],
        filter=PB["filter"],
        de=PB["de"],
        thresholds=PB["thresholds"],
    log:
        f"{RESULTS}/logs/pseudobulk/{{celltype}}.de.log",
    threads: 2
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(15),
    group:
        "pb_celltype"
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/pb_de.py"


rule pb_figures:
    input:
        [f"{PB_DIR}/{{celltype}}/{c}/results.tsv" for c in PB_CONTRASTS],
    output:
        *[pb_volcano_report(c) for c in PB_CONTRASTS],
        *[pb_deg_report(c) for c in PB_CONTRASTS],
        pdfs=[f"{PB_DIR}/{{celltype}}/{c}/volcano.pdf" for c in PB_CONTRASTS],
    params:
        cell_type=pb_cell_type,
        contrasts=PB_CONTRASTS,
        thresholds=PB["thresholds"],
        plots=PB["plots"],
    log:
        f"{RESULTS}/logs/pseudobulk/{{celltype}}.figures.log",
    threads: 1
    resources:
        mem_mb=scaled(2000),
        runtime=scaled(10),
    group:
        "pb_celltype"
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/pb_figures.py"


rule pb_summary:
    input:
        cell_types=f"{PB_DIR}/cell_types.tsv",
        results=pb_results,
    output:
        table=f"{PB_DIR}/summary.tsv",
        html=report(
            f"{PB_DIR}/summary.html", caption="../report/pb_summary.rst", category=PB_CAT, subcategory="0. overview"
        ),
        png=report(
            f"{PB_DIR}/deg_counts.png",
            caption="../report/pb_deg_counts.rst",
            category=PB_CAT,
            subcategory="0. overview",
        ),
        pdf=f"{PB_DIR}/deg_counts.pdf",
    params:
        contrasts=PB["contrasts"],
        thresholds=PB["thresholds"],
    log:
        f"{RESULTS}/logs/pseudobulk/summary.log",
    threads: 1
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(5),
    group:
        "pb_report"
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/pb_summary.py"


rule pb_proportions:
    input:
        f"{SC_DIR}/adata.h5ad",
    output:
        table=f"{PB_DIR}/proportions.tsv",
        html=report(
            f"{PB_DIR}/proportions.html",
            caption="../report/pb_proportions_table.rst",
            category=PB_CAT,
            subcategory="0. overview",
        ),
        png=report(
            f"{PB_DIR}/proportions.png",
            caption="../report/pb_proportions.rst",
            category=PB_CAT,
            subcategory="0. overview",
        ),
        pdf=f"{PB_DIR}/proportions.pdf",
    params:
        groupby=PB["groupby"],
        sample_key=PB["sample_key"],
        by=PB_PLAN.factors[-1] if PB_PLAN.factors else None,
    log:
        f"{RESULTS}/logs/pseudobulk/proportions.log",
    threads: 1
    resources:
        mem_mb=scaled(1000),
        runtime=scaled(5),
    group:
        "pb_report"
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/pb_proportions.py"


if SC_GOI:

    rule pb_genes_of_interest:
        input:
            cell_types=f"{PB_DIR}/cell_types.tsv",
            results=pb_results,
            genes=f"{SC_DIR}/genes_of_interest/genes.tsv",
        output:
            table=f"{PB_DIR}/genes_of_interest.tsv",
            html=report(
                f"{PB_DIR}/genes_of_interest.html",
                caption="../report/pb_genes_of_interest.rst",
                category=PB_CAT,
                subcategory="0. overview",
            ),
        params:
            contrasts=PB["contrasts"],
        log:
            f"{RESULTS}/logs/pseudobulk/genes_of_interest.log",
        threads: 1
        resources:
            mem_mb=scaled(1000),
            runtime=scaled(5),
        group:
            "pb_report"
        conda:
            "../../envs/singlecell.yaml"
        script:
            "../scripts/pb_genes_of_interest.py"
