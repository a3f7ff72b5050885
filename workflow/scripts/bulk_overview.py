"""Across contrasts: up/down bar chart, DEG-set overlap (Venn for <= 3 sets, UpSet beyond), summary page."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.pl.base import save
from degflow.pl.de import deg_counts_bar, deg_overlap
from degflow.report import html_table

summary = read_tsv(snakemake.input.summary)
save(deg_counts_bar(summary), snakemake.output.counts_png, snakemake.output.counts_pdf)
sets = {}
for name, path in zip(snakemake.params.contrasts, snakemake.input.results, strict=False):
    res = read_tsv(path, usecols=["gene_id", "regulation"])
    sets[name] = set(res.loc[res["regulation"] != "ns", "gene_id"])
save(deg_overlap(sets), snakemake.output.overlap_png, snakemake.output.overlap_pdf)
with open(snakemake.output.summary_html, "w") as fh:
    fh.write(html_table(summary, title="DEGs per contrast"))
