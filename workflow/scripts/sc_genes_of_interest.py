"""Genes of interest: UMAP feature plots, dot plot and violins by cell type x condition; which genes were found."""
from _common import setup

setup(snakemake)
from degflow.io.tables import write_tsv
from degflow.pl.base import save
from degflow.singlecell.scale import genes_of_interest_cells
from degflow.singlecell.steps import genes_of_interest

p = snakemake.params
adata = genes_of_interest_cells(snakemake.input[0], p.genes, scale=p.scale)
table, figs = genes_of_interest(adata, p.genes, groupby=p.groupby, condition=p.condition)
write_tsv(table, snakemake.output.genes)
for i, name in enumerate(("umap", "dotplot", "violin")):
    save(figs[name], snakemake.output[name], snakemake.output.pdfs[i])
