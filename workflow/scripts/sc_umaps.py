"""UMAPs of the cells coloured by clusters, cell type, sample, condition/donor and QC metrics, PNG + PDF each."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.pl.base import save
from degflow.pl.singlecell import umap_figure

adata = ad.read_h5ad(snakemake.input[0])
for i, (name, color) in enumerate(snakemake.params.panels.items()):  # outputs in panel order, then the PDFs
    fig = umap_figure(adata, list(color), ncols=min(2, len(color)), legend_on_data=name == "clusters")
    save(fig, snakemake.output[i], snakemake.output.pdfs[i])
