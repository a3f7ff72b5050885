"""Marker genes of every group of one clustering against all other cells (Wilcoxon by default): TSV + HTML page."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import write_tsv
from degflow.report import html_table
from degflow.singlecell.annotate import markers

t, grouping = snakemake.params.test, snakemake.wildcards.grouping
adata = ad.read_h5ad(snakemake.input[0])
table = markers(adata, grouping, method=t["method"], n_genes=t["n_genes"])
write_tsv(table, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(table, title=f"Marker genes: {grouping}"))
