"""Sample-to-sample distances on variance-stabilised counts, clustered heatmap."""
from _common import setup

setup(snakemake)
from degflow.bulk import qc
from degflow.bulk.vst import variance_stabilised
from degflow.io.tables import read_bulk_dataset, write_tsv
from degflow.pl import bulk as plots
from degflow.pl.base import save

data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
dist = qc.sample_distances(variance_stabilised(counts, sf))
write_tsv(dist.distances, snakemake.output.table, index=True)
fig = plots.distance_heatmap(dist, data.obs, annotate_by=snakemake.params.annotate_by)
save(fig, snakemake.output.png, snakemake.output.pdf)
