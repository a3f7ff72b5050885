"""UMAP of the cells coloured by clusters, cell type, sample, condition or QC metrics, PNG + PDF."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow import plots
from degflow import single_cell as scm

adata = ad.read_h5ad(snakemake.input[0])
color = list(snakemake.params.color)
fig = scm.umap_figure(adata, color, ncols=min(2, len(color)), legend_on_data=snakemake.wildcards.umap == "clusters")
plots.save(fig, snakemake.output.png, snakemake.output.pdf)
