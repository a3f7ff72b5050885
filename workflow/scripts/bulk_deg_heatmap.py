"""Heatmap of a contrast's top DEGs (z-scored variance-stabilised counts, samples annotated).

With ``bulk.batch`` the values are batch-corrected (limma removeBatchEffect), unless the contrast tests a batch
column itself, as [factor, ...] or through a coefficient a name/vector/list contrast weights (removing it would
remove what is tested): then the measured values, and the title says which.
"""
from _common import setup

setup(snakemake)
from degflow.bulk.figures import deg_heatmap_figure
from degflow.io.tables import read_bulk_dataset, read_tsv
from degflow.pl.base import save

p = snakemake.params
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
res = read_tsv(snakemake.input.results, dtype={"gene_name": str}).set_index("gene_id")
fig = deg_heatmap_figure(data, counts, sf, res, contrast=snakemake.wildcards.contrast, spec=p.contrast,
                         design=p.design, batch=p.batch, annotate_by=p.annotate_by, n_top=p.n_top,
                         thresholds=p.thresholds)
save(fig, snakemake.output.png, snakemake.output.pdf)
