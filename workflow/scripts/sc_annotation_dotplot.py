"""Dot plot of the marker-YAML genes per cluster of the annotated clustering: the evidence behind each name."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow import plots
from degflow import single_cell as scm

adata = ad.read_h5ad(snakemake.input.h5ad)
genes = scm.load_markers(snakemake.input.markers)
fig = scm.marker_dotplot_figure(adata, snakemake.params.groupby, marker_genes=genes)
plots.save(fig, snakemake.output.png, snakemake.output.pdf)
