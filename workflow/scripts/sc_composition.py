"""Differential cell-type composition (propeller): cell counts, one table and figure per test."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import write_tsv
from degflow.pl.base import save
from degflow.singlecell.steps import composition_tests

p, out = snakemake.params, snakemake.output
counts, tests = composition_tests(ad.read_h5ad(snakemake.input[0], backed="r").obs, metadata=p.metadata,
                                  tests=p.tests, groupby=p.groupby, sample_key=p.sample_key, design=p.design,
                                  transform=p.transform, robust=p.robust)
write_tsv(counts, out.counts)
for (res, html, fig), table, page, png, pdf in zip(tests, out.results, out.html, out.png, out.pdf, strict=True):
    write_tsv(res, table)
    with open(page, "w") as fh:
        fh.write(html)
    save(fig, png, pdf)
