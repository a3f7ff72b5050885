"""One figure of one contrast (volcano or MA), PNG + PDF."""
from _common import setup

setup(snakemake)
from degflow import plots
from degflow.io import read_tsv

p, th = snakemake.params, snakemake.params.thresholds
res = read_tsv(snakemake.input[0], dtype={"gene_name": str}).set_index("gene_id")
title = snakemake.wildcards.contrast
if p.kind == "volcano":
    fig = plots.volcano(res, lfc=th["lfc"], padj=th["padj"], top_n=p.plots["top_n_labels"], title=title)
else:
    fig = plots.ma(res, lfc=th["lfc"], padj=th["padj"], title=title)
plots.save(fig, snakemake.output.png, snakemake.output.pdf)
