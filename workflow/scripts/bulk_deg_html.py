"""A contrast's DEG table as a searchable, sortable HTML page for the report."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.report import html_table

th = snakemake.params.thresholds
deg = read_tsv(snakemake.input[0], dtype={"gene_name": str})
caption = (f"Genes with |log2 fold change| > {th['lfc']} and adjusted p-value < {th['padj']}, "
           "sorted by adjusted p-value. Click a column header to sort; type in the box to filter.")
with open(snakemake.output[0], "w") as fh:
    fh.write(html_table(deg, title=f"DEGs: {snakemake.wildcards.contrast}", caption=caption))
