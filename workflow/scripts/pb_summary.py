"""One row per tested cell type x contrast (pseudo-samples, genes tested, up, down); the DEG-count heatmap."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv, write_tsv
from degflow.pl import bulk as plots
from degflow.pseudobulk import aggregate as pseudobulk
from degflow.pseudobulk.de import summary as pb_summary
from degflow.report import html_table

p = snakemake.params
cell_types = read_tsv(snakemake.input.cell_types, dtype={"cell_type": str, "folder": str})
summary = pb_summary(cell_types, [read_tsv(path) for path in snakemake.input.results], contrasts=p.contrasts,
                     thresholds=p.thresholds)
write_tsv(summary, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(summary, title="Pseudobulk DEGs per cell type and contrast"))
skipped = cell_types.loc[~cell_types["tested"], "cell_type"].tolist()
plots.save(pseudobulk.deg_count_heatmap(summary, skipped=skipped), snakemake.output.png, snakemake.output.pdf)
