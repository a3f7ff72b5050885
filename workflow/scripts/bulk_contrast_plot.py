"""One figure of one contrast (volcano or MA), PNG + PDF; genes of interest ringed and labelled."""
from _common import setup

setup(snakemake)
from degflow.bulk.figures import contrast_figure
from degflow.io.tables import read_tsv
from degflow.pl.base import save

p = snakemake.params
res = read_tsv(snakemake.input[0], dtype={"gene_name": str}).set_index("gene_id")
fig = contrast_figure(res, kind=p.kind, title=snakemake.wildcards.contrast, thresholds=p.thresholds,
                      genes_of_interest=p.genes_of_interest, top_n=p.plots["top_n_labels"])
save(fig, snakemake.output.png, snakemake.output.pdf)
