"""Genes of interest: a plotCounts-style figure per gene (every test's log2FC and padj) and one heatmap."""
from pathlib import Path

from _common import setup

setup(snakemake)
from degflow.bulk.figures import genes_of_interest_count_figures, genes_of_interest_heatmap
from degflow.io.tables import read_bulk_dataset, read_tsv
from degflow.pl.base import save

p = snakemake.params
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
table = read_tsv(snakemake.input.table, dtype={"gene_name": str, "gene_id": str, "query": str})
out_dir = Path(snakemake.output.counts)
out_dir.mkdir(parents=True, exist_ok=True)
for stem, fig in genes_of_interest_count_figures(data, sf, table, tests=p.tests, group_by=p.group_by, batch=p.batch):
    save(fig, f"{out_dir / stem}.png", f"{out_dir / stem}.pdf")
save(genes_of_interest_heatmap(data, counts, sf, table, design=p.design, batch=p.batch, annotate_by=p.annotate_by),
     snakemake.output.png, snakemake.output.pdf)
