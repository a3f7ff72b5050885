"""Differential cell-type composition (propeller): cell counts, one table and figure per test."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow.io.tables import write_tsv
from degflow.pl.base import save
from degflow.pl.singlecell import composition_figure
from degflow.plan.composition import metadata_frame, tests_from_records
from degflow.report import html_table
from degflow.singlecell import composition

p = snakemake.params
meta, tests = metadata_frame(p.metadata), tests_from_records(p.tests)
obs = ad.read_h5ad(snakemake.input[0], backed="r").obs
counts = composition.cell_counts(obs, groupby=p.groupby, sample_key=p.sample_key, metadata=meta)
write_tsv(counts, snakemake.output.counts)
results = composition.propeller(counts, design=p.design, tests=tests, metadata=meta, transform=p.transform,
                                robust=p.robust)
pair_by = next((c for c in meta.columns if c not in {t.factor for t in tests}
                and isinstance(meta[c].dtype, pd.CategoricalDtype)), None)  # e.g. donor
for test, table, html, png, pdf in zip(tests, snakemake.output.results, snakemake.output.html,
                                       snakemake.output.png, snakemake.output.pdf, strict=True):
    res = results[test.name]
    write_tsv(res, table)
    with open(html, "w") as fh:
        fh.write(html_table(res, title=f"cell-type composition, {test.name} (propeller, {p.transform})"))
    fig = composition_figure(counts, res, test=test, pair_by=pair_by)
    save(fig, png, pdf)
