"""Cells per cluster (and per sample) for every clustering and the cell types."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import write_tsv
from degflow.report import html_table
from degflow.singlecell.annotate import cluster_sizes

adata = ad.read_h5ad(snakemake.input[0], backed="r")
sizes = cluster_sizes(adata, keys=snakemake.params.groupings)
write_tsv(sizes, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(sizes, title="Cells per cluster"))
