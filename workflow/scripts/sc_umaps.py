"""UMAPs of the cells coloured by clusters, cell type, sample, condition/donor and QC metrics, PNG + PDF each."""
from _common import setup

setup(snakemake)
from degflow.pl.base import save
from degflow.singlecell.scale import read_for_figures
from degflow.singlecell.steps import umap_figures

adata = read_for_figures(snakemake.input[0], scale=snakemake.params.scale)
for i, fig in enumerate(umap_figures(adata, snakemake.params.panels)):  # outputs in panel order, then the PDFs
    save(fig, snakemake.output[i], snakemake.output.pdfs[i])
