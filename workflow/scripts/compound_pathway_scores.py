"""Pathway panels: per-sample scores, set sizes, panel genes' expression (VST) and their log2FC/padj tables."""
from _common import setup

setup(snakemake)
from degflow.compound import pathways
from degflow.compound.steps import pathway_scores
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv

p, out = snakemake.params, snakemake.output
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
sets = pathways.read_gene_sets(snakemake.input.gene_sets)
results = {c: read_tsv(f, dtype={"gene_id": str, "gene_name": str})
           for c, f in zip(p.contrasts, snakemake.input.results, strict=False)}
tables = pathway_scores(counts, sf, data.var["gene_name"], sets, results, panels=p.panels, min_genes=p.min_genes)
write_tsv(tables.scores, out.scores, index=True)
write_tsv(tables.sizes, out.sizes)
write_tsv(tables.expression, out.expression, index=True)
for table, path in zip(tables.panel_tables, out.tables, strict=False):
    write_tsv(table, path)
