"""Sample-to-sample distances on variance-stabilised counts, clustered heatmap."""
from _common import setup

setup(snakemake)
from degflow.bulk.figures import distances_qc
from degflow.io.tables import read_bulk_dataset, write_tsv
from degflow.pl.base import save

table, fig = distances_qc(*read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors),
                          annotate_by=snakemake.params.annotate_by)
write_tsv(table, snakemake.output.table, index=True)
save(fig, snakemake.output.png, snakemake.output.pdf)
