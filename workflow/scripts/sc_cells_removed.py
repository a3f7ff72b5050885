"""Cells removed per sample by each QC rule and by doublet removal, in one table (samples in sheet order)."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv, write_tsv
from degflow.singlecell.steps import cells_removed

table, html = cells_removed([read_tsv(f) for f in snakemake.input.qc], [read_tsv(f) for f in snakemake.input.doublets])
write_tsv(table, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html)
