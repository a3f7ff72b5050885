# Bulk RNA-seq: counts -> dataset -> one DESeq2 fit -> per-contrast Wald tests, tables and figures.
BULK = CFG["bulk"]


rule bulk_dataset:
    input:
        unpack(bulk_optional_inputs),
        counts=bulk_count_files(),
        samples=BULK["samples"],
    output:
        f"{RESULTS}/bulk/counts/dataset.h5ad",
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
        mem_mb=2000,
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
        mem_mb=4000,
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
        mem_mb=2000,
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
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_summary.py"


rule bulk_volcano:
    input:
        f"{RESULTS}/bulk/de/{{contrast}}/results.tsv",
    output:
        png=f"{RESULTS}/bulk/plots/{{contrast}}/volcano.png",
        pdf=f"{RESULTS}/bulk/plots/{{contrast}}/volcano.pdf",
    params:
        kind="volcano",
        thresholds=BULK["thresholds"],
        plots=BULK["plots"],
    log:
        f"{RESULTS}/logs/bulk/plots/{{contrast}}.volcano.log",
    threads: 1
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_contrast_plot.py"


use rule bulk_volcano as bulk_ma with:
    output:
        png=f"{RESULTS}/bulk/plots/{{contrast}}/ma.png",
        pdf=f"{RESULTS}/bulk/plots/{{contrast}}/ma.pdf",
    params:
        kind="ma",
        thresholds=BULK["thresholds"],
        plots=BULK["plots"],
    log:
        f"{RESULTS}/logs/bulk/plots/{{contrast}}.ma.log",


rule bulk_pca:
    input:
        dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
        size_factors=f"{RESULTS}/bulk/counts/size_factors.tsv",
    output:
        table=f"{RESULTS}/bulk/qc/pca.tsv",
        png=f"{RESULTS}/bulk/qc/pca.png",
        pdf=f"{RESULTS}/bulk/qc/pca.pdf",
    params:
        color_by=BULK_PLAN.factors,
        n_top=BULK["plots"]["pca_top_genes"],
    log:
        f"{RESULTS}/logs/bulk/qc/pca.log",
    threads: 1
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/bulk_pca.py"
