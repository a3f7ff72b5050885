"""UMAPs of the cells coloured by clusters, cell type, sample, condition/donor and QC metrics, PNG + PDF each."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.pl.base import save
from degflow.singlecell.steps import umap_figures

adata = ad.read_h5ad(snakemake.input[0])
for i, fig in enumerate(umap_figures(adata, snakemake.params.panels)):  # outputs in panel order, then the PDFs
    save(fig, snakemake.output[i], snakemake.output.pdfs[i])
