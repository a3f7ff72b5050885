"""Sample QC with the batch removed (limma removeBatchEffect on the VST): PCA and distance heatmap, tables."""
from _common import setup

setup(snakemake)
from degflow.bulk import qc
from degflow.bulk.batch import batch_corrected
from degflow.bulk.vst import variance_stabilised
from degflow.io.tables import read_bulk_dataset, write_tsv
from degflow.pl import bulk as plots
from degflow.pl.base import save

p = snakemake.params
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
corrected = batch_corrected(variance_stabilised(counts, sf), data.obs, design=p.design, batch=p.batch)
title = f"{', '.join(p.batch)} removed (limma removeBatchEffect; design {corrected.attrs['degflow']['design_kept']} kept)"
coords, ratio = qc.pca(corrected, n_top=p.n_top)
table = coords.join(data.obs[p.color_by].astype(str))
table.index.name = "sample"
write_tsv(table, snakemake.output.pca_table, index=True)
save(plots.pca(coords, ratio, data.obs, color_by=p.color_by, title=title), snakemake.output.pca_png,
     snakemake.output.pca_pdf)
dist = qc.sample_distances(corrected)
write_tsv(dist.distances, snakemake.output.distances, index=True)
save(plots.distance_heatmap(dist, data.obs, annotate_by=p.color_by, title=title), snakemake.output.dist_png,
     snakemake.output.dist_pdf)
