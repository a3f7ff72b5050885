"""Genes of interest: UMAP feature plots, dot plot and violins by cell type x condition; which genes were found."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import write_tsv
from degflow.pl.base import save
from degflow.singlecell.steps import genes_of_interest

p = snakemake.params
table, figs = genes_of_interest(ad.read_h5ad(snakemake.input[0]), p.genes, groupby=p.groupby, condition=p.condition)
write_tsv(table, snakemake.output.genes)
for i, name in enumerate(("umap", "dotplot", "violin")):
    save(figs[name], snakemake.output[name], snakemake.output.pdfs[i])
