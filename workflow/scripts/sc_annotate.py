"""Name each cluster after the cell type of the marker YAML it expresses most (obs cell_type); the score table
with the mixed clusters flagged."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow import single_cell as scm
from degflow.io import write_tsv
from degflow.report import html_table

p = snakemake.params
adata = ad.read_h5ad(snakemake.input.h5ad)
table = scm.annotate(adata, scm.load_markers(snakemake.input.markers), groupby=p.groupby, min_score=p.min_score,
                     min_margin=p.min_margin).reset_index()
write_tsv(table, snakemake.output.scores)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(table, title=f"Cell-type scores of the {p.groupby} clusters"))
adata.write_h5ad(snakemake.output.h5ad)
