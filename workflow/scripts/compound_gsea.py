"""Preranked GSEA of a contrast on the Wald statistic (gseapy prerank, offline)."""
from _common import setup

threads = setup(snakemake)
from degflow.compound import pathways
from degflow.compound.steps import gsea
from degflow.io.tables import read_tsv, write_tsv

e = snakemake.params.enrichment
res = read_tsv(snakemake.input.results, dtype={"gene_id": str, "gene_name": str})
sets = pathways.read_gene_sets(snakemake.input.gene_sets)
table = gsea(res, sets, permutations=e["permutations"], seed=e["seed"], min_size=e["min_size"],
             max_size=e["max_size"], threads=threads)
write_tsv(table, snakemake.output[0])
