"""PCA of samples on variance-stabilised counts (top variable genes), outlier flags, figure."""
from _common import setup

setup(snakemake)
from degflow.bulk import qc
from degflow.bulk.vst import variance_stabilised
from degflow.io.tables import read_bulk_dataset, write_tsv
from degflow.pl import bulk as plots
from degflow.pl.base import save

data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
coords, ratio = qc.pca(variance_stabilised(counts, sf), n_top=snakemake.params.n_top)
table = coords.join(data.obs[snakemake.params.color_by].astype(str))
table.index.name = "sample"
write_tsv(table, snakemake.output.table, index=True)
outliers = qc.outlier_flags(coords)
outliers.index.name = "sample"
write_tsv(outliers, snakemake.output.outliers, index=True)
fig = plots.pca(coords, ratio, data.obs, color_by=snakemake.params.color_by)
save(fig, snakemake.output.png, snakemake.output.pdf)
