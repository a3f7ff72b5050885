"""Dot plot of the top marker genes of every group of one clustering (from its marker table)."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow import plots
from degflow import single_cell as scm
from degflow.io import read_tsv

grouping = snakemake.wildcards.grouping
adata = ad.read_h5ad(snakemake.input.h5ad)
table = read_tsv(snakemake.input.table, dtype={"group": str, "gene": str})
top = table[table["rank"] <= snakemake.params.n_genes].groupby("group", sort=False)["gene"].apply(list).to_dict()
fig = scm.marker_dotplot_figure(adata, grouping, marker_genes=top)
plots.save(fig, snakemake.output.png, snakemake.output.pdf)
