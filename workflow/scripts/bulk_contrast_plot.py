"""One figure of one contrast (volcano or MA), PNG + PDF; genes of interest ringed and labelled."""
from _common import setup

setup(snakemake)
from degflow.bulk.genes_of_interest import NOT_FOUND, match_genes
from degflow.io.tables import read_tsv
from degflow.pl.base import save
from degflow.pl.de import ma, volcano

p, th = snakemake.params, snakemake.params.thresholds
res = read_tsv(snakemake.input[0], dtype={"gene_name": str}).set_index("gene_id")
title = snakemake.wildcards.contrast
lookup = match_genes(p.genes_of_interest, res.index, res["gene_name"] if "gene_name" in res.columns else None)
highlight = list(lookup.loc[lookup["matched_by"] != NOT_FOUND, "gene_id"])
if p.kind == "volcano":
    fig = volcano(res, lfc=th["lfc"], padj=th["padj"], top_n=p.plots["top_n_labels"], title=title,
                  highlight=highlight)
else:
    fig = ma(res, lfc=th["lfc"], padj=th["padj"], title=title, highlight=highlight)
save(fig, snakemake.output.png, snakemake.output.pdf)
