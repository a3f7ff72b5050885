"""UMAPs of the cells coloured by clusters, cell type, sample, condition/donor and QC metrics, PNG + PDF each."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow import plots
from degflow import single_cell as scm
from degflow.singlecell import ondisk

scale = snakemake.params.scale
if ondisk.wanted(scale["on_disk"], ondisk.h5ad_cells(snakemake.input[0])):  # atlas size: obs and obsm only
    adata = ondisk.read_light(snakemake.input[0], chunk_cells=scale["chunk_cells"])
else:
    adata = ad.read_h5ad(snakemake.input[0])
for i, (name, color) in enumerate(snakemake.params.panels.items()):  # outputs in panel order, then the PDFs
    fig = scm.umap_figure(adata, list(color), ncols=min(2, len(color)), legend_on_data=name == "clusters")
    plots.save(fig, snakemake.output[i], snakemake.output.pdfs[i])
