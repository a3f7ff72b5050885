"""Pathway panels: per-sample scores, set sizes, panel genes' expression (VST) and their log2FC/padj tables."""
from _common import setup

setup(snakemake)

from degflow.bulk.vst import variance_stabilised
from degflow.compound import pathways
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv

p = snakemake.params
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
sets = pathways.read_gene_sets(snakemake.input.gene_sets)
panels = {name: sets[name] for name in p.panels}
results = {c: read_tsv(f, dtype={"gene_id": str, "gene_name": str}) for c, f in zip(p.contrasts, snakemake.input.results, strict=False)}
names = data.var["gene_name"].astype(str)
vst = variance_stabilised(counts, sf)
scores, sizes = pathways.panel_scores(vst, panels, names, min_genes=p.min_genes)
members = sorted({g for genes in panels.values() for g in pathways.set_members(genes, names)})
write_tsv(scores, snakemake.output.scores, index=True)
write_tsv(sizes, snakemake.output.sizes)
write_tsv(vst.loc[members].rename_axis("gene_id"), snakemake.output.expression, index=True)
for genes, path in zip(panels.values(), snakemake.output.tables, strict=False):
    write_tsv(pathways.panel_table(genes, results), path)
