"""Cell-type composition of every sample: table and stacked bars (samples grouped by the tested factor)."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import write_tsv
from degflow.pl.base import save
from degflow.pseudobulk.steps import proportions

p = snakemake.params
props, html, fig = proportions(ad.read_h5ad(snakemake.input[0], backed="r").obs, groupby=p.groupby,
                               sample_key=p.sample_key, by=p.by)
write_tsv(props, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html)
save(fig, snakemake.output.png, snakemake.output.pdf)
