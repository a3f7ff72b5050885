"""Dot plots: the top marker genes of each group of every clustering; the marker-YAML genes per annotated cluster."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import read_tsv
from degflow.pl.base import save
from degflow.pl.singlecell import marker_dotplot_figure
from degflow.singlecell.annotate import load_markers

p = snakemake.params
adata = ad.read_h5ad(snakemake.input.h5ad)
for i, (grouping, path) in enumerate(zip(p.groupings, snakemake.input.tables, strict=False)):  # outputs in grouping order
    table = read_tsv(path, dtype={"group": str, "gene": str})
    top = table[table["rank"] <= p.n_genes].groupby("group", sort=False)["gene"].apply(list).to_dict()
    fig = marker_dotplot_figure(adata, grouping, marker_genes=top)
    save(fig, snakemake.output[i], snakemake.output.pdfs[i])
if p.annotation_key:
    fig = marker_dotplot_figure(adata, p.annotation_key, marker_genes=load_markers(snakemake.input.markers))
    save(fig, *snakemake.output.annotation)
