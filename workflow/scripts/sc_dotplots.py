"""Dot plots: the top marker genes of each group of every clustering; the marker-YAML genes per annotated cluster."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.pl import singlecell as pl_sc
from degflow.pl.base import save
from degflow.singlecell import annotate as sc_annotate
from degflow.singlecell.scale import dotplot_cells
from degflow.singlecell.steps import dotplot_figures

p = snakemake.params
tables = [read_tsv(path, dtype={"group": str, "gene": str}) for path in snakemake.input.tables]
markers = sc_annotate.load_markers(snakemake.input.markers) if p.annotation_key else None
adata = dotplot_cells(snakemake.input.h5ad, tables, n_genes=p.n_genes, markers=markers, scale=p.scale)
for i, fig in enumerate(dotplot_figures(adata, tables, groupings=p.groupings, n_genes=p.n_genes)):
    save(fig, snakemake.output[i], snakemake.output.pdfs[i])  # outputs in grouping order
if p.annotation_key:
    save(pl_sc.marker_dotplot_figure(adata, p.annotation_key, marker_genes=markers), *snakemake.output.annotation)
