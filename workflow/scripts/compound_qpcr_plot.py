"""qRT-PCR against RNA-seq log2 fold changes, PNG + PDF."""
from _common import setup

setup(snakemake)
from degflow import compound_plots, plots
from degflow.io import read_tsv

fig = compound_plots.qpcr_concordance(read_tsv(snakemake.input.pairs), read_tsv(snakemake.input.stats),
                                      title="qRT-PCR vs RNA-seq")
plots.save(fig, snakemake.output.png, snakemake.output.pdf)
