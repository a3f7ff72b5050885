# Compound study (control / disease model / model + compound): treatment rescue, pathway panels, offline
# enrichment (ORA + preranked GSEA) and qRT-PCR concordance. Included by the Snakefile when the bulk section has
# any of rescue / pathways / enrichment / qpcr. Reuses the bulk DE tables; restyling a figure re-runs no DE.


include: "compound_common.smk"


if COMPOUND.treatments:

    rule compound_rescue:
        input:
            unpack(rescue_inputs),
        output:
            genes=report(
                f"{RESULTS}/bulk/rescue/{{treatment}}/genes.tsv",
                caption="../report/rescue_genes.rst",
                category=COMPOUND_CAT,
                subcategory="Rescue",
                labels={"treatment": "{treatment}", "table": "genes"},
            ),
            summary=f"{RESULTS}/bulk/rescue/{{treatment}}/summary.tsv",
        params:
            disease=COMPOUND.disease,
            rescue=BULK["rescue"],
            thresholds=BULK["thresholds"],
            sizes=rescue_group_sizes,
            arms=rescue_arms,
        log:
            f"{RESULTS}/logs/bulk/rescue/{{treatment}}.log",
        threads: 1
        resources:
            mem_mb=scaled(1000, 40, BULK_MCELLS),
            runtime=scaled(10, 1, BULK_MCELLS),
        group:
            "compound_rescue"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_rescue.py"

    rule compound_rescue_plot:
        input:
            f"{RESULTS}/bulk/rescue/{{treatment}}/genes.tsv",
        output:
            png=report(
                f"{RESULTS}/bulk/rescue/{{treatment}}/rescue.png",
                caption="../report/rescue_plot.rst",
                category=COMPOUND_CAT,
                subcategory="Rescue",
                labels={"treatment": "{treatment}", "figure": "rescue plot"},
            ),
            pdf=f"{RESULTS}/bulk/rescue/{{treatment}}/rescue.pdf",
        params:
            thresholds=BULK["thresholds"],
            top_n=BULK["rescue"]["top_n_labels"],
            disease=COMPOUND.disease,
        log:
            f"{RESULTS}/logs/bulk/rescue/{{treatment}}.plot.log",
        threads: 1
        resources:
            mem_mb=scaled(1000),
            runtime=scaled(5),
        group:
            "compound_rescue"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_rescue_plot.py"

    rule compound_rescue_overview:
        input:
            expand(f"{RESULTS}/bulk/rescue/{{t}}/summary.tsv", t=COMPOUND.treatments),
        output:
            report(
                f"{RESULTS}/bulk/rescue/summary.tsv",
                caption="../report/rescue_summary.rst",
                category=COMPOUND_CAT,
                subcategory="Rescue",
                labels={"treatment": "all", "table": "summary"},
            ),
        log:
            f"{RESULTS}/logs/bulk/rescue/summary.log",
        threads: 1
        resources:
            mem_mb=scaled(1000),
            runtime=scaled(5),
        group:
            "compound_report"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_rescue_overview.py"


if PANELS:

    rule compound_pathway_scores:
        input:
            dataset=f"{RESULTS}/bulk/counts/dataset.h5ad",
            size_factors=f"{RESULTS}/bulk/counts/size_factors.tsv",
            results=expand(f"{RESULTS}/bulk/de/{{c}}/results.tsv", c=CONTRASTS),
            gene_sets=COMPOUND.gene_set_files,
        output:
            scores=f"{RESULTS}/bulk/pathways/scores.tsv",
            sizes=f"{RESULTS}/bulk/pathways/gene_sets.tsv",
            expression=f"{RESULTS}/bulk/pathways/panel_expression.tsv",
            tables=expand(f"{RESULTS}/bulk/pathways/{{p}}/genes.tsv", p=PANELS.values()),
        params:
            contrasts=CONTRASTS,
            panels=PANELS,
            min_genes=BULK["pathways"]["min_genes"],
        log:
            f"{RESULTS}/logs/bulk/pathways/scores.log",
        threads: 1
        resources:
            mem_mb=scaled(1000, 40, BULK_MCELLS),
            runtime=scaled(5, 0.2, BULK_MCELLS),
        group:
            "compound_pathways"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_pathway_scores.py"

    rule compound_pathway_scores_plot:
        input:
            scores=f"{RESULTS}/bulk/pathways/scores.tsv",
            samples=BULK["samples"],
        output:
            png=report(
                f"{RESULTS}/bulk/pathways/scores.png",
                caption="../report/pathway_scores.rst",
                category=COMPOUND_CAT,
                subcategory="Pathway panels",
                labels={"panel": "all", "figure": "scores"},
            ),
            pdf=f"{RESULTS}/bulk/pathways/scores.pdf",
        params:
            group_by=PATHWAY_GROUP,
        log:
            f"{RESULTS}/logs/bulk/pathways/scores.plot.log",
        threads: 1
        resources:
            mem_mb=scaled(1000),
            runtime=scaled(5),
        group:
            "compound_pathways"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_pathway_scores_plot.py"

    rule compound_panel_heatmap:
        input:
            expression=f"{RESULTS}/bulk/pathways/panel_expression.tsv",
            genes=f"{RESULTS}/bulk/pathways/{{panel}}/genes.tsv",
            samples=BULK["samples"],
        output:
            png=report(
                f"{RESULTS}/bulk/pathways/{{panel}}/heatmap.png",
                caption="../report/pathway_heatmap.rst",
                category=COMPOUND_CAT,
                subcategory="Pathway panels",
                labels={"panel": "{panel}", "figure": "heatmap"},
            ),
            pdf=f"{RESULTS}/bulk/pathways/{{panel}}/heatmap.pdf",
        params:
            group_by=PATHWAY_GROUP,
        log:
            f"{RESULTS}/logs/bulk/pathways/{{panel}}.heatmap.log",
        threads: 1
        resources:
            mem_mb=scaled(1000, 40, BULK_MCELLS),
            runtime=scaled(5),
        group:
            "compound_pathways"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_panel_heatmap.py"


if BULK.get("enrichment") is not None:

    rule compound_ora:
        input:
            results=f"{RESULTS}/bulk/de/{{contrast}}/results.tsv",
            gene_sets=COMPOUND.gene_set_files,
        output:
            report(
                f"{RESULTS}/bulk/enrichment/{{contrast}}/ora.tsv",
                caption="../report/enrichment_table.rst",
                category=COMPOUND_CAT,
                subcategory="Enrichment",
                labels={"contrast": "{contrast}", "table": "ORA"},
            ),
        params:
            enrichment=BULK["enrichment"],
        log:
            f"{RESULTS}/logs/bulk/enrichment/{{contrast}}.ora.log",
        threads: 1
        resources:
            mem_mb=scaled(1000),
            runtime=scaled(5),
        group:
            "bulk_contrast"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_ora.py"

    rule compound_gsea:
        input:
            results=f"{RESULTS}/bulk/de/{{contrast}}/results.tsv",
            gene_sets=COMPOUND.gene_set_files,
        output:
            report(
                f"{RESULTS}/bulk/enrichment/{{contrast}}/gsea.tsv",
                caption="../report/enrichment_table.rst",
                category=COMPOUND_CAT,
                subcategory="Enrichment",
                labels={"contrast": "{contrast}", "table": "GSEA"},
            ),
        params:
            enrichment=BULK["enrichment"],
        log:
            f"{RESULTS}/logs/bulk/enrichment/{{contrast}}.gsea.log",
        threads: 1
        resources:
            mem_mb=scaled(1500),
            runtime=scaled(20),
        group:
            "bulk_contrast"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_gsea.py"

    rule compound_enrichment_plot:
        input:
            unpack(enrichment_gsea_input),
            ora=f"{RESULTS}/bulk/enrichment/{{contrast}}/ora.tsv",
        output:
            png=report(
                f"{RESULTS}/bulk/enrichment/{{contrast}}/dotplot.png",
                caption="../report/enrichment_dotplot.rst",
                category=COMPOUND_CAT,
                subcategory="Enrichment",
                labels={"contrast": "{contrast}", "figure": "dot plot"},
            ),
            pdf=f"{RESULTS}/bulk/enrichment/{{contrast}}/dotplot.pdf",
        params:
            padj=BULK["enrichment"]["padj"],
        log:
            f"{RESULTS}/logs/bulk/enrichment/{{contrast}}.plot.log",
        threads: 1
        resources:
            mem_mb=scaled(1000),
            runtime=scaled(5),
        group:
            "bulk_contrast"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_enrichment_plot.py"


if COMPOUND.qpcr_contrasts:

    rule compound_qpcr:
        input:
            ct=BULK["qpcr"]["ct_table"],
            samples=BULK["samples"],
            results=expand(f"{RESULTS}/bulk/de/{{c}}/results.tsv", c=COMPOUND.qpcr_contrasts),
        output:
            fold_changes=report(
                f"{RESULTS}/bulk/qpcr/fold_changes.tsv",
                caption="../report/qpcr_table.rst",
                category=COMPOUND_CAT,
                subcategory="qRT-PCR",
                labels={"table": "fold changes"},
            ),
            pairs=f"{RESULTS}/bulk/qpcr/concordance.tsv",
            stats=f"{RESULTS}/bulk/qpcr/concordance_stats.tsv",
        params:
            contrasts={c: BULK["contrasts"][c] for c in COMPOUND.qpcr_contrasts},
            reference_genes=BULK["qpcr"]["reference_genes"],
        log:
            f"{RESULTS}/logs/bulk/qpcr/ddct.log",
        threads: 1
        resources:
            mem_mb=scaled(1000),
            runtime=scaled(5),
        group:
            "compound_qpcr"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_qpcr.py"

    rule compound_qpcr_plot:
        input:
            pairs=f"{RESULTS}/bulk/qpcr/concordance.tsv",
            stats=f"{RESULTS}/bulk/qpcr/concordance_stats.tsv",
        output:
            png=report(
                f"{RESULTS}/bulk/qpcr/concordance.png",
                caption="../report/qpcr_concordance.rst",
                category=COMPOUND_CAT,
                subcategory="qRT-PCR",
                labels={"figure": "concordance"},
            ),
            pdf=f"{RESULTS}/bulk/qpcr/concordance.pdf",
        log:
            f"{RESULTS}/logs/bulk/qpcr/plot.log",
        threads: 1
        resources:
            mem_mb=scaled(1000),
            runtime=scaled(5),
        group:
            "compound_qpcr"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_qpcr_plot.py"


if COMPOUND_OUTPUTS:

    rule compound_workbook:
        input:
            unpack(workbook_inputs),
        output:
            f"{RESULTS}/bulk/compound_tables.xlsx",
        params:
            treatments=COMPOUND.treatments,
            panels=list(PANELS.values()),
            contrasts=CONTRASTS,
        log:
            f"{RESULTS}/logs/bulk/compound_workbook.log",
        threads: 1
        resources:
            mem_mb=scaled(1000),
            runtime=scaled(5),
        group:
            "compound_report"
        conda:
            "../../envs/bulk.yaml"
        script:
            "../scripts/compound_workbook.py"
