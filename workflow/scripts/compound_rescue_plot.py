"""Rescue plot of one treatment (disease log2FC against treatment log2FC), PNG + PDF."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.pl import compound as compound_plots
from degflow.pl.base import save

p = snakemake.params
genes = read_tsv(snakemake.input[0], dtype={"gene_id": str, "gene_name": str})
t = snakemake.wildcards.treatment
fig = compound_plots.rescue(genes, lfc=p.thresholds["lfc"], top_n=p.top_n, title=f"Rescue by {t}",
                            disease_label=f"disease log2 fold change ({p.disease})",
                            treatment_label=f"treatment log2 fold change ({t})")
save(fig, snakemake.output.png, snakemake.output.pdf)
