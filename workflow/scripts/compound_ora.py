"""Over-representation of a contrast's up and down DEGs in each gene set (hypergeometric, BH)."""
from _common import setup

setup(snakemake)
from degflow.compound import pathways
from degflow.compound.steps import ora
from degflow.io.tables import read_tsv, write_tsv

e = snakemake.params.enrichment
res = read_tsv(snakemake.input.results, dtype={"gene_id": str, "gene_name": str})
sets = pathways.read_gene_sets(snakemake.input.gene_sets)
write_tsv(ora(res, sets, min_size=e["min_size"], max_size=e["max_size"]), snakemake.output[0])
