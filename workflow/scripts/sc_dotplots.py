"""Dot plots: the top marker genes of each group of every clustering; the marker-YAML genes per annotated cluster."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import read_tsv
from degflow.pl import bulk as plots
from degflow.singlecell import process as scm

p = snakemake.params
adata = ad.read_h5ad(snakemake.input.h5ad)
for i, (grouping, path) in enumerate(zip(p.groupings, snakemake.input.tables, strict=False)):  # outputs in grouping order
    table = read_tsv(path, dtype={"group": str, "gene": str})
    top = table[table["rank"] <= p.n_genes].groupby("group", sort=False)["gene"].apply(list).to_dict()
    fig = scm.marker_dotplot_figure(adata, grouping, marker_genes=top)
    plots.save(fig, snakemake.output[i], snakemake.output.pdfs[i])
if p.annotation_key:
    fig = scm.marker_dotplot_figure(adata, p.annotation_key, marker_genes=scm.load_markers(snakemake.input.markers))
    plots.save(fig, *snakemake.output.annotation)
