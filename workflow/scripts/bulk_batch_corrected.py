"""Sample QC with the batch removed (limma removeBatchEffect on the VST): PCA and distance heatmap, tables."""
from _common import setup

setup(snakemake)
from degflow.bulk.figures import batch_corrected_qc
from degflow.io.tables import read_bulk_dataset, write_tsv
from degflow.pl.base import save

p, out = snakemake.params, snakemake.output
maps = batch_corrected_qc(*read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors), design=p.design,
                          batch=p.batch, n_top=p.n_top, color_by=p.color_by)
write_tsv(maps.pca, out.pca_table, index=True)
save(maps.pca_figure, out.pca_png, out.pca_pdf)
write_tsv(maps.distances, out.distances, index=True)
save(maps.distance_figure, out.dist_png, out.dist_pdf)
