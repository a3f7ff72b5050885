"""Cell-type composition of every sample: table and stacked bars (samples grouped by the tested factor)."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import write_tsv
from degflow.pl.base import save
from degflow.pl.pseudobulk import proportions_figure
from degflow.pseudobulk import aggregate as pseudobulk
from degflow.report import html_table

p = snakemake.params
obs = ad.read_h5ad(snakemake.input[0], backed="r").obs
props = pseudobulk.proportions(obs, groupby=p.groupby, sample_key=p.sample_key)
write_tsv(props, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(props, title=f"{p.groupby} proportions per {p.sample_key}"))
fig = proportions_figure(props, groupby=p.groupby, sample_key=p.sample_key, by=p.by)
save(fig, snakemake.output.png, snakemake.output.pdf)
