"""Over-representation of a contrast's up and down DEGs in each gene set (hypergeometric, BH)."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow.compound import pathways
from degflow.io.tables import read_tsv, write_tsv

e = snakemake.params.enrichment
res = read_tsv(snakemake.input.results, dtype={"gene_id": str, "gene_name": str})
sets = pathways.read_gene_sets(snakemake.input.gene_sets)
tested = res[res["padj"].notna() & res["gene_name"].fillna("").ne("")]
tables = [pathways.ora(tested.loc[tested["regulation"] == d, "gene_name"], tested["gene_name"], sets, direction=d,
                       min_size=e["min_size"], max_size=e["max_size"]) for d in ("up", "down")]
write_tsv(pd.concat(tables, ignore_index=True), snakemake.output[0])
