"""Genes of interest: find them, gather their results in every test (Wald contrasts, LRT) into one table."""
from _common import setup

setup(snakemake)
from degflow.bulk.genes_of_interest import gather
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv

p, out = snakemake.params, snakemake.output
data, _ = read_bulk_dataset(snakemake.input.dataset)
results = {name: read_tsv(path, dtype={"gene_name": str})
           for name, path in zip(p.tests, snakemake.input.results, strict=False)}
lookup, missing, table, html = gather(p.genes, data, results, lookup_file=out.lookup, not_found_file=out.not_found)
write_tsv(lookup, out.lookup)
write_tsv(missing, out.not_found)
write_tsv(table, out.table)
with open(out.html, "w") as fh:
    fh.write(html)
