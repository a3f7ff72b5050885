"""Likelihood-ratio test against a reduced formula: every tested gene (results.tsv) and the significant ones."""
from _common import setup

threads = setup(snakemake)
from degflow.bulk.de import lrt
from degflow.io.tables import load_pickle, write_tsv

p = snakemake.params
table, sig, html = lrt(load_pickle(snakemake.input[0]), p.spec, name=snakemake.wildcards.lrt, de=p.de,
                       thresholds=p.thresholds, n_threads=threads)
write_tsv(table, snakemake.output.results)
write_tsv(sig, snakemake.output.significant)
with open(snakemake.output.html, "w") as fh:
    fh.write(html)
