"""Significant LRT genes clustered by their z-scored expression across the levels of a factor (degPatterns style)."""
from _common import setup

setup(snakemake)
from degflow.bulk.de import lrt_clusters
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv
from degflow.pl.base import save

p = snakemake.params
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
sig = read_tsv(snakemake.input.significant, dtype={"gene_id": str, "gene_name": str})
membership, html, fig = lrt_clusters(data, counts, sf, sig, name=snakemake.wildcards.lrt, design=p.design,
                                     spec=p.spec, padj=p.padj)
write_tsv(membership, snakemake.output.clusters)
with open(snakemake.output.html, "w") as fh:
    fh.write(html)
save(fig, snakemake.output.png, snakemake.output.pdf)
