"""Heatmap of one pathway panel's genes across samples (z-scored VST expression, arms annotated)."""
from _common import setup

setup(snakemake)
from degflow.compound.steps import panel_heatmap
from degflow.io.sheets import read_sample_sheet
from degflow.io.tables import read_tsv
from degflow.pl.base import save

expr = read_tsv(snakemake.input.expression, dtype={"gene_id": str}).set_index("gene_id")
genes = read_tsv(snakemake.input.genes, dtype={"gene_id": str, "gene_name": str}).set_index("gene_id")
fig = panel_heatmap(expr, genes, read_sample_sheet(snakemake.input.samples), group_by=snakemake.params.group_by,
                    title=snakemake.wildcards.panel)
save(fig, snakemake.output.png, snakemake.output.pdf)
