"""Across contrasts: up/down bar chart, DEG-set overlap (Venn for <= 3 sets, UpSet beyond), summary page."""
from _common import setup

setup(snakemake)
from degflow.bulk.figures import overview
from degflow.io.tables import read_tsv
from degflow.pl.base import save

results = {name: read_tsv(path, usecols=["gene_id", "regulation"])
           for name, path in zip(snakemake.params.contrasts, snakemake.input.results, strict=False)}
counts_fig, overlap_fig, html = overview(read_tsv(snakemake.input.summary), results)
save(counts_fig, snakemake.output.counts_png, snakemake.output.counts_pdf)
save(overlap_fig, snakemake.output.overlap_png, snakemake.output.overlap_pdf)
with open(snakemake.output.summary_html, "w") as fh:
    fh.write(html)
