"""Enrichment dot plot of one contrast (ORA up/down, and GSEA when run), PNG + PDF."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.pl import compound as compound_plots
from degflow.pl.base import save

ora = read_tsv(snakemake.input.ora)
gsea = read_tsv(snakemake.input.gsea) if "gsea" in snakemake.input.keys() else None
fig = compound_plots.enrichment_dotplot(ora, gsea, padj=snakemake.params.padj, title=snakemake.wildcards.contrast)
save(fig, snakemake.output.png, snakemake.output.pdf)
