"""qRT-PCR against RNA-seq log2 fold changes, PNG + PDF."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.pl import compound as compound_plots
from degflow.pl.base import save

fig = compound_plots.qpcr_concordance(read_tsv(snakemake.input.pairs), read_tsv(snakemake.input.stats),
                                      title="qRT-PCR vs RNA-seq")
save(fig, snakemake.output.png, snakemake.output.pdf)
