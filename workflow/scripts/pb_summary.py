"""One row per tested cell type x contrast (pseudo-samples, genes tested, up, down); the DEG-count heatmap."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv, write_tsv
from degflow.pl.base import save
from degflow.pseudobulk.steps import summary

p, out = snakemake.params, snakemake.output
cell_types = read_tsv(snakemake.input.cell_types, dtype={"cell_type": str, "folder": str})
table, html, fig = summary(cell_types, [read_tsv(path) for path in snakemake.input.results], contrasts=p.contrasts,
                           thresholds=p.thresholds)
write_tsv(table, out.table)
with open(out.html, "w") as fh:
    fh.write(html)
save(fig, out.png, out.pdf)
