"""Marker genes of every group of one clustering against all other cells (Wilcoxon by default): TSV + HTML page."""
from _common import setup

setup(snakemake)
from degflow.io.tables import write_tsv
from degflow.report import html_table
from degflow.singlecell.scale import markers

p, grouping = snakemake.params, snakemake.wildcards.grouping
table = markers(snakemake.input[0], grouping, test=p.test, scale=p.scale, seed=p.seed)
write_tsv(table, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(table, title=f"Marker genes: {grouping}"))
