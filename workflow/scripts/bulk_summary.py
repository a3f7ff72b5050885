"""One row per contrast: genes tested, up, down, thresholds."""
from _common import setup

setup(snakemake)
from degflow.bulk.de import summary
from degflow.io.tables import read_tsv, write_tsv

results = [read_tsv(path) for path in snakemake.input]  # in contrast order
write_tsv(summary(snakemake.params.contrasts, results, thresholds=snakemake.params.thresholds), snakemake.output[0])
