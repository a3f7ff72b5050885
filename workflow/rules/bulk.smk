# Bulk RNA-seq: counts -> dataset -> one DESeq2 fit -> per-contrast Wald tests, tables and figures.
BULK = CFG["bulk"]
QC = "01. Bulk sample QC"
DE = "02. Bulk differential expression"
OVERVIEW = "03. Bulk contrasts compared"

FINAL_OUTPUTS += [
    f"{RESULTS}/bulk/counts/size_factors.tsv",
    f"{RESULTS}/bulk/counts/normalized_counts.tsv",
    f"{RESULTS}/bulk/de/summary.tsv",
    f"{RESULTS}/bulk/de/summary.html",
    f"{RESULTS}/bulk/de/deg_tables.xlsx",
    f"{RESULTS}/bulk/qc/pca.tsv",
    f"{RESULTS}/bulk/qc/pca.png",
    f"{RESULTS}/bulk/qc/outliers.tsv",
    f"{RESULTS}/bulk/qc/sample_qc.tsv",
    f"{RESULTS}/bulk/qc/sample_qc.png",
    f"{RESULTS}/bulk/qc/distance_heatmap.png",
    f"{RESULTS}/bulk/qc/sample_distances.tsv",
    f"{RESULTS}/bulk/plots/deg_counts.png",
    f"{RESULTS}/bulk/plots/deg_overlap.png",
]
for c in CONTRASTS:
    FINAL_OUTPUTS += [
        f"{RESULTS}/bulk/de/{c}/results.tsv",
        f"{RESULTS}/bulk/de/{c}/deg.tsv",
        f"{RESULTS}/bulk/de/{c}/deg.html",
        f"{RESULTS}/bulk/plots/{c}/volcano.png",
        f"{RESULTS}/bulk/plots/{c}/ma.png",
        f"{RESULTS}/bulk/plots/{c}/deg_heatmap.png",
    ]


# Batch-corrected sample QC (bulk.batch): PCA and distances with the batch removed, beside the measured ones.
BATCH_QC = {
    "pca_table": f"{RESULTS}/bulk/qc/pca_batch_corrected.tsv",
    "pca_png": f"{RESULTS}/bulk/qc/pca_batch_corrected.png",
    "pca_pdf": f"{RESULTS}/bulk/qc/pca_batch_corrected.pdf",
    "distances": f"{RESULTS}/bulk/qc/sample_distances_batch_corrected.tsv",
    "dist_png": f"{RESULTS}/bulk/qc/distance_heatmap_batch_corrected.png",
    "dist_pdf": f"{RESULTS}/bulk/qc/distance_heatmap_batch_corrected.pdf",
}
if BULK_PLAN.batch:
    FINAL_OUTPUTS += list(BATCH_QC.values())

# Genes of interest (bulk.genes_of_interest): every test whose results table they are looked up in, by name.
# A test is any degflow results.tsv (gene_id + log2FoldChange/lfcSE/stat/pvalue/padj/regulation, whichever it has):
# the Wald contrasts and the likelihood-ratio tests (named lrt_<name>; their log2FoldChange is only the last
# coefficient's, so the count plots print their padj alone).
GOI_TESTS = {c: f"{RESULTS}/bulk/de/{c}/results.tsv" for c in CONTRASTS}
GOI_TESTS.update({f"lrt_{t}": f"{RESULTS}/bulk/lrt/{t}/results.tsv" for t in LRTS})
GOI_DIR = f"{RESULTS}/bulk/genes_of_interest"
GOI_GROUP_BY = default_group_by(
    BULK_PLAN.contrasts, BULK_PLAN.factors, BULK_PLAN.batch, covariates=BULK_PLAN.covariates
)
GOI_WORKBOOK = [f"{GOI_DIR}/results.tsv", f"{GOI_DIR}/lookup.tsv"] if BULK_PLAN.genes_of_interest else []
if BULK_PLAN.genes_of_interest:
    FINAL_OUTPUTS += [
        f"{GOI_DIR}/results.tsv",
        f"{GOI_DIR}/results.html",
        f"{GOI_DIR}/lookup.tsv",
        f"{GOI_DIR}/not_found.tsv",
        f"{GOI_DIR}/heatmap.png",
        f"{GOI_DIR}/counts",
    ]


# STAR counts: the per-sample strandedness evidence (which ReadsPerGene column, and why) is a result too.
BULK_STRANDEDNESS = {"strandedness": f"{RESULTS}/bulk/qc/strandedness.tsv"} if BULK_PLAN.count_format == "star" else {}
FINAL_OUTPUTS += list(BULK_STRANDEDNESS.values())


rule bulk_dataset:
    input:
        unpack(bulk_optional_inputs),
        counts=BULK_PLAN.count_files,
        samples=BULK["samples"],
    output:
        **BULK_STRANDEDNESS,
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        quantifier_qc=f"{RESULTS}/bulk/qc/quantifier_qc.tsv",
    params:
        counts=BULK["counts"],
        design=BULK["design"],
        reference_levels=BULK["reference_levels"],
        contrasts=BULK["contrasts"],
        exclude=BULK["exclude"],
        filter=BULK["filter"],
    log:
        f"{RESULTS}/logs/bulk/dataset.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.5, BULK_MCELLS),
    group:
        "bulk_model"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_dataset.py"


rule bulk_fit:
    input:
        f"{RESULTS}/bulk/counts/dataset.h5ad",
    output:
        model=f"{RESULTS}/bulk/de/model.pkl",
        size_factors=f"{RESULTS}/bulk/counts/size_factors.tsv",
        normalized=f"{RESULTS}/bulk/counts/normalized_counts.tsv",
    params:
        design=BULK["design"],
        reference_levels=BULK["reference_levels"],
        de=BULK["de"],
    log:
        f"{RESULTS}/logs/bulk/fit.log",
    threads: 2
    resources:
        mem_mb=scaled(2000, 120, BULK_MCELLS),
        runtime=scaled(10, 1, BULK_MCELLS),
    group:
        "bulk_model"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_fit.py"


rule bulk_contrast:
    input:
        f"{RESULTS}/bulk/de/model.pkl",
    output:
        results=f"{RESULTS}/bulk/de/{{contrast}}/results.tsv",
        deg=f"{RESULTS}/bulk/de/{{contrast}}/deg.tsv",
    params:
        contrast=get_contrast,
        de=BULK["de"],
        thresholds=BULK["thresholds"],
    log:
        f"{RESULTS}/logs/bulk/de/{{contrast}}.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.2, BULK_MCELLS),
    group:
        "bulk_contrast"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_contrast.py"


rule bulk_summary:
    input:
        expand(f"{RESULTS}/bulk/de/{{contrast}}/results.tsv", contrast=CONTRASTS),
    output:
        f"{RESULTS}/bulk/de/summary.tsv",
    params:
        contrasts=BULK["contrasts"],
        thresholds=BULK["thresholds"],
    log:
        f"{RESULTS}/logs/bulk/summary.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 5, BULK_MCELLS),
        runtime=scaled(5),
    group:
        "bulk_report"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_summary.py"


rule bulk_volcano:
    input:
        f"{RESULTS}/bulk/de/{{contrast}}/results.tsv",
    output:
        png=report(
            f"{RESULTS}/bulk/plots/{{contrast}}/volcano.png",
            caption="../report/volcano.rst",
            category=DE,
            subcategory="{contrast}",
            labels={"contrast": "{contrast}", "figure": "volcano"},
        ),
        pdf=f"{RESULTS}/bulk/plots/{{contrast}}/volcano.pdf",
    params:
        kind="volcano",
        thresholds=BULK["thresholds"],
        plots=BULK["plots"],
        genes_of_interest=BULK_PLAN.genes_of_interest,
    log:
        f"{RESULTS}/logs/bulk/plots/{{contrast}}.volcano.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 5, BULK_MCELLS),
        runtime=scaled(5),
    group:
        "bulk_contrast"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_contrast_plot.py"


use rule bulk_volcano as bulk_ma with:
    output:
        png=report(
            f"{RESULTS}/bulk/plots/{{contrast}}/ma.png",
            caption="../report/ma.rst",
            category=DE,
            subcategory="{contrast}",
            labels={"contrast": "{contrast}", "figure": "MA plot"},
        ),
        pdf=f"{RESULTS}/bulk/plots/{{contrast}}/ma.pdf",
    params:
        kind="ma",
        thresholds=BULK["thresholds"],
        plots=BULK["plots"],
        genes_of_interest=BULK_PLAN.genes_of_interest,
    log:
        f"{RESULTS}/logs/bulk/plots/{{contrast}}.ma.log",


rule bulk_pca:
    input:
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        size_factors=f"{RESULTS}/bulk/counts/size_factors.tsv",
    output:
        table=f"{RESULTS}/bulk/qc/pca.tsv",
        outliers=report(f"{RESULTS}/bulk/qc/outliers.tsv", caption="../report/outliers.rst", category=QC),
        png=report(f"{RESULTS}/bulk/qc/pca.png", caption="../report/pca.rst", category=QC),
        pdf=f"{RESULTS}/bulk/qc/pca.pdf",
    params:
        color_by=BULK_PLAN.factors,
        n_top=BULK["plots"]["pca_top_genes"],
    log:
        f"{RESULTS}/logs/bulk/qc/pca.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.2, BULK_MCELLS),
    group:
        "bulk_qc"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_pca.py"


rule bulk_sample_qc:
    input:
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        quantifier_qc=f"{RESULTS}/bulk/qc/quantifier_qc.tsv",
    output:
        table=f"{RESULTS}/bulk/qc/sample_qc.tsv",
        html=report(f"{RESULTS}/bulk/qc/sample_qc.html", caption="../report/sample_qc_table.rst", category=QC),
        png=report(f"{RESULTS}/bulk/qc/sample_qc.png", caption="../report/sample_qc.rst", category=QC),
        pdf=f"{RESULTS}/bulk/qc/sample_qc.pdf",
    log:
        f"{RESULTS}/logs/bulk/qc/sample_qc.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.2, BULK_MCELLS),
    group:
        "bulk_qc"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_sample_qc.py"


rule bulk_distances:
    input:
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        size_factors=f"{RESULTS}/bulk/counts/size_factors.tsv",
    output:
        table=f"{RESULTS}/bulk/qc/sample_distances.tsv",
        png=report(f"{RESULTS}/bulk/qc/distance_heatmap.png", caption="../report/distance_heatmap.rst", category=QC),
        pdf=f"{RESULTS}/bulk/qc/distance_heatmap.pdf",
    params:
        annotate_by=BULK_PLAN.factors,
    log:
        f"{RESULTS}/logs/bulk/qc/distances.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.2, BULK_MCELLS),
    group:
        "bulk_qc"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_distances.py"


rule bulk_deg_heatmap:
    input:
        results=f"{RESULTS}/bulk/de/{{contrast}}/results.tsv",
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        size_factors=f"{RESULTS}/bulk/counts/size_factors.tsv",
    output:
        png=report(
            f"{RESULTS}/bulk/plots/{{contrast}}/deg_heatmap.png",
            caption="../report/deg_heatmap.rst",
            category=DE,
            subcategory="{contrast}",
            labels={"contrast": "{contrast}", "figure": "DEG heatmap"},
        ),
        pdf=f"{RESULTS}/bulk/plots/{{contrast}}/deg_heatmap.pdf",
    params:
        annotate_by=BULK_PLAN.factors,
        thresholds=BULK["thresholds"],
        n_top=BULK["plots"]["heatmap_top_genes"],
        contrast=get_contrast,
        design=BULK["design"],
        batch=BULK_PLAN.batch,
    log:
        f"{RESULTS}/logs/bulk/plots/{{contrast}}.deg_heatmap.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.2, BULK_MCELLS),
    group:
        "bulk_contrast"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_deg_heatmap.py"


rule bulk_deg_html:
    input:
        f"{RESULTS}/bulk/de/{{contrast}}/deg.tsv",
    output:
        report(
            f"{RESULTS}/bulk/de/{{contrast}}/deg.html",
            caption="../report/deg_table.rst",
            category=DE,
            subcategory="{contrast}",
            labels={"contrast": "{contrast}", "figure": "DEG table"},
        ),
    params:
        thresholds=BULK["thresholds"],
    log:
        f"{RESULTS}/logs/bulk/de/{{contrast}}.html.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 5, BULK_MCELLS),
        runtime=scaled(5),
    group:
        "bulk_contrast"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_deg_html.py"


rule bulk_overview:
    input:
        summary=f"{RESULTS}/bulk/de/summary.tsv",
        results=expand(f"{RESULTS}/bulk/de/{{contrast}}/results.tsv", contrast=CONTRASTS),
    output:
        counts_png=report(f"{RESULTS}/bulk/plots/deg_counts.png", caption="../report/deg_counts.rst", category=OVERVIEW),
        counts_pdf=f"{RESULTS}/bulk/plots/deg_counts.pdf",
        overlap_png=report(
            f"{RESULTS}/bulk/plots/deg_overlap.png", caption="../report/deg_overlap.rst", category=OVERVIEW
        ),
        overlap_pdf=f"{RESULTS}/bulk/plots/deg_overlap.pdf",
        summary_html=report(f"{RESULTS}/bulk/de/summary.html", caption="../report/summary_table.rst", category=OVERVIEW),
    params:
        contrasts=CONTRASTS,
    log:
        f"{RESULTS}/logs/bulk/overview.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 5, BULK_MCELLS),
        runtime=scaled(5),
    group:
        "bulk_report"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_overview.py"


rule bulk_workbook:
    input:
        summary=f"{RESULTS}/bulk/de/summary.tsv",
        deg=expand(f"{RESULTS}/bulk/de/{{contrast}}/deg.tsv", contrast=CONTRASTS),
        lrt=expand(f"{RESULTS}/bulk/lrt/{{lrt}}/significant.tsv", lrt=LRTS),
        goi=GOI_WORKBOOK,
    output:
        f"{RESULTS}/bulk/de/deg_tables.xlsx",
    params:
        contrasts=CONTRASTS,
        lrts=LRTS,
    log:
        f"{RESULTS}/logs/bulk/workbook.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 5, BULK_MCELLS),
        runtime=scaled(5),
    group:
        "bulk_report"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_workbook.py"


# Likelihood-ratio tests (bulk.lrt): the full design against a reduced formula, from the same fit.
LRT = "04. Bulk likelihood-ratio tests"
for t in LRTS:
    FINAL_OUTPUTS += [
        f"{RESULTS}/bulk/lrt/{t}/results.tsv",
        f"{RESULTS}/bulk/lrt/{t}/significant.tsv",
        f"{RESULTS}/bulk/lrt/{t}/clusters.tsv",
        f"{RESULTS}/bulk/lrt/{t}/patterns.png",
        f"{RESULTS}/bulk/lrt/{t}/significant.html",
        f"{RESULTS}/bulk/lrt/{t}/clusters.html",
    ]


rule bulk_lrt:
    input:
        f"{RESULTS}/bulk/de/model.pkl",
    output:
        results=f"{RESULTS}/bulk/lrt/{{lrt}}/results.tsv",
        significant=f"{RESULTS}/bulk/lrt/{{lrt}}/significant.tsv",
        html=report(
            f"{RESULTS}/bulk/lrt/{{lrt}}/significant.html",
            caption="../report/lrt_table.rst",
            category=LRT,
            subcategory="{lrt}",
            labels={"test": "{lrt}", "figure": "significant genes"},
        ),
    params:
        spec=get_lrt,
        de=BULK["de"],
        thresholds=BULK["thresholds"],
    log:
        f"{RESULTS}/logs/bulk/lrt/{{lrt}}.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.5, BULK_MCELLS),
    group:
        "bulk_contrast"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_lrt.py"


rule bulk_lrt_patterns:
    input:
        significant=f"{RESULTS}/bulk/lrt/{{lrt}}/significant.tsv",
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        size_factors=f"{RESULTS}/bulk/counts/size_factors.tsv",
    output:
        clusters=f"{RESULTS}/bulk/lrt/{{lrt}}/clusters.tsv",
        html=report(
            f"{RESULTS}/bulk/lrt/{{lrt}}/clusters.html",
            caption="../report/lrt_clusters.rst",
            category=LRT,
            subcategory="{lrt}",
            labels={"test": "{lrt}", "figure": "cluster membership"},
        ),
        png=report(
            f"{RESULTS}/bulk/lrt/{{lrt}}/patterns.png",
            caption="../report/lrt_patterns.rst",
            category=LRT,
            subcategory="{lrt}",
            labels={"test": "{lrt}", "figure": "expression patterns"},
        ),
        pdf=f"{RESULTS}/bulk/lrt/{{lrt}}/patterns.pdf",
    params:
        spec=get_lrt,
        design=BULK["design"],
        padj=BULK["thresholds"]["padj"],
    log:
        f"{RESULTS}/logs/bulk/lrt/{{lrt}}.patterns.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.2, BULK_MCELLS),
    group:
        "bulk_contrast"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_lrt_patterns.py"


rule bulk_batch_corrected_qc:
    input:
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        size_factors=f"{RESULTS}/bulk/counts/size_factors.tsv",
    output:
        pca_table=BATCH_QC["pca_table"],
        pca_png=report(BATCH_QC["pca_png"], caption="../report/pca_batch_corrected.rst", category=QC),
        pca_pdf=BATCH_QC["pca_pdf"],
        distances=BATCH_QC["distances"],
        dist_png=report(BATCH_QC["dist_png"], caption="../report/distance_heatmap_batch_corrected.rst", category=QC),
        dist_pdf=BATCH_QC["dist_pdf"],
    params:
        design=BULK["design"],
        batch=BULK_PLAN.batch,
        color_by=BULK_PLAN.factors,
        n_top=BULK["plots"]["pca_top_genes"],
    log:
        f"{RESULTS}/logs/bulk/qc/batch_corrected.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.2, BULK_MCELLS),
    group:
        "bulk_qc"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_batch_corrected.py"


rule bulk_genes_of_interest:
    input:
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        results=list(GOI_TESTS.values()),
    output:
        table=f"{GOI_DIR}/results.tsv",
        html=report(
            f"{GOI_DIR}/results.html",
            caption="../report/goi_table.rst",
            category=OVERVIEW,
            subcategory="Genes of interest",
            labels={"figure": "table"},
        ),
        lookup=f"{GOI_DIR}/lookup.tsv",
        not_found=f"{GOI_DIR}/not_found.tsv",
    params:
        genes=BULK_PLAN.genes_of_interest,
        tests=list(GOI_TESTS),
    log:
        f"{RESULTS}/logs/bulk/genes_of_interest.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5),
    group:
        "bulk_report"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_genes_of_interest.py"


rule bulk_genes_of_interest_plots:
    input:
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        size_factors=f"{RESULTS}/bulk/counts/size_factors.tsv",
        table=f"{GOI_DIR}/results.tsv",
    output:
        png=report(
            f"{GOI_DIR}/heatmap.png",
            caption="../report/goi_heatmap.rst",
            category=OVERVIEW,
            subcategory="Genes of interest",
            labels={"figure": "heatmap"},
        ),
        pdf=f"{GOI_DIR}/heatmap.pdf",
        counts=report(
            directory(f"{GOI_DIR}/counts"),
            patterns=["{gene}.png"],
            caption="../report/goi_counts.rst",
            category=OVERVIEW,
            subcategory="Genes of interest",
            labels={"figure": "counts: {gene}"},
        ),
    params:
        tests=list(GOI_TESTS),
        group_by=GOI_GROUP_BY,
        annotate_by=BULK_PLAN.factors,
        design=BULK["design"],
        batch=BULK_PLAN.batch,
    log:
        f"{RESULTS}/logs/bulk/genes_of_interest_plots.log",
    threads: 1
    resources:
        mem_mb=scaled(1000, 40, BULK_MCELLS),
        runtime=scaled(5, 0.2, BULK_MCELLS),
    group:
        "bulk_report"
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_genes_of_interest_plots.py"
