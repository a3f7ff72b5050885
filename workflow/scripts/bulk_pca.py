"""PCA of samples on variance-stabilised counts (top variable genes), outlier flags, figure."""
from _common import setup

setup(snakemake)
from degflow.bulk.figures import pca_qc
from degflow.io.tables import read_bulk_dataset, write_tsv
from degflow.pl.base import save

table, outliers, fig = pca_qc(*read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors),
                              n_top=snakemake.params.n_top, color_by=snakemake.params.color_by)
write_tsv(table, snakemake.output.table, index=True)
write_tsv(outliers, snakemake.output.outliers, index=True)
save(fig, snakemake.output.png, snakemake.output.pdf)
