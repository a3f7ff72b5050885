"""Heatmap of one pathway panel's genes across samples (z-scored VST expression, arms annotated)."""
from _common import setup

setup(snakemake)
from degflow.io.sheets import read_sample_sheet
from degflow.io.tables import read_tsv
from degflow.pl import bulk as plots
from degflow.pl.base import save

expr = read_tsv(snakemake.input.expression, dtype={"gene_id": str}).set_index("gene_id")
genes = read_tsv(snakemake.input.genes, dtype={"gene_id": str, "gene_name": str}).set_index("gene_id")
sheet = read_sample_sheet(snakemake.input.samples)
keep = [g for g in genes.index if g in expr.index and expr.loc[g].std() > 0]
fig = plots.deg_heatmap(expr, keep, sheet, annotate_by=[snakemake.params.group_by], cluster_samples=False,
                        gene_names=genes["gene_name"].fillna(""), title=snakemake.wildcards.panel)
save(fig, snakemake.output.png, snakemake.output.pdf)
