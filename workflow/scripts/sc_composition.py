"""Differential cell-type composition (propeller): cell counts, one table and figure per test."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow import composition, plots
from degflow.io import write_tsv
from degflow.report import html_table

p = snakemake.params
obs = ad.read_h5ad(snakemake.input[0], backed="r").obs
counts = composition.cell_counts(obs, groupby=p.groupby, sample_key=p.sample_key, metadata=p.metadata)
write_tsv(counts, snakemake.output.counts)
results = composition.propeller(counts, design=p.design, tests=p.tests, metadata=p.metadata, transform=p.transform,
                                robust=p.robust)
pair_by = next((c for c in p.metadata.columns if c not in {t.factor for t in p.tests}
                and isinstance(p.metadata[c].dtype, pd.CategoricalDtype)), None)  # e.g. donor
for test, table, html, png, pdf in zip(p.tests, snakemake.output.results, snakemake.output.html,
                                       snakemake.output.png, snakemake.output.pdf, strict=True):
    res = results[test.name]
    write_tsv(res, table)
    with open(html, "w") as fh:
        fh.write(html_table(res, title=f"cell-type composition, {test.name} (propeller, {p.transform})"))
    fig = composition.composition_figure(counts, res, test=test, pair_by=pair_by)
    plots.save(fig, png, pdf)
