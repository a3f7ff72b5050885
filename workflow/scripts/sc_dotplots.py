"""Dot plots: the top marker genes of each group of every clustering; the marker-YAML genes per annotated cluster."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import read_tsv
from degflow.pl import singlecell as pl_sc
from degflow.pl.base import save
from degflow.singlecell import annotate as sc_annotate
from degflow.singlecell.steps import dotplot_figures

p = snakemake.params
adata = ad.read_h5ad(snakemake.input.h5ad)
tables = [read_tsv(path, dtype={"group": str, "gene": str}) for path in snakemake.input.tables]
for i, fig in enumerate(dotplot_figures(adata, tables, groupings=p.groupings, n_genes=p.n_genes)):
    save(fig, snakemake.output[i], snakemake.output.pdfs[i])  # outputs in grouping order
if p.annotation_key:
    fig = pl_sc.marker_dotplot_figure(adata, p.annotation_key, marker_genes=sc_annotate.load_markers(snakemake.input.markers))
    save(fig, *snakemake.output.annotation)
