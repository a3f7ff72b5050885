"""Dot plots: the top marker genes of each group of every clustering; the marker-YAML genes per annotated cluster."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow import plots
from degflow import single_cell as scm
from degflow.io import read_tsv
from degflow.singlecell import ondisk

p = snakemake.params
tables = [read_tsv(path, dtype={"group": str, "gene": str}) for path in snakemake.input.tables]
if ondisk.wanted(p.scale["on_disk"], ondisk.h5ad_cells(snakemake.input.h5ad)):  # atlas size: the plotted genes only
    genes = {g for t in tables for g in t.loc[t["rank"] <= p.n_genes, "gene"]}
    if p.annotation_key:
        genes |= {g for gs in scm.load_markers(snakemake.input.markers).values() for g in gs}
    adata = ondisk.read_light(snakemake.input.h5ad, genes=sorted(genes), chunk_cells=p.scale["chunk_cells"])
else:
    adata = ad.read_h5ad(snakemake.input.h5ad)
for i, (grouping, table) in enumerate(zip(p.groupings, tables, strict=False)):  # outputs in grouping order
    top = table[table["rank"] <= p.n_genes].groupby("group", sort=False)["gene"].apply(list).to_dict()
    fig = scm.marker_dotplot_figure(adata, grouping, marker_genes=top)
    plots.save(fig, snakemake.output[i], snakemake.output.pdfs[i])
if p.annotation_key:
    fig = scm.marker_dotplot_figure(adata, p.annotation_key, marker_genes=scm.load_markers(snakemake.input.markers))
    plots.save(fig, *snakemake.output.annotation)
