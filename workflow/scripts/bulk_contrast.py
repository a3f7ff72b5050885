"""Wald test for one contrast: every tested gene (results.tsv) and the DEGs (deg.tsv)."""
from _common import setup

threads = setup(snakemake)
from degflow.bulk.de import contrast
from degflow.io.tables import load_pickle, write_tsv

p = snakemake.params
table, deg = contrast(load_pickle(snakemake.input[0]), p.contrast, de=p.de, thresholds=p.thresholds,
                      n_threads=threads)  # name / vector / list, or levels
write_tsv(table, snakemake.output.results)
write_tsv(deg, snakemake.output.deg)
