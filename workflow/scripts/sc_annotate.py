"""Name each cluster after the cell type of the marker YAML it expresses most (obs cell_type); the score table."""
from _common import note, setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow import single_cell as scm
from degflow.io import write_tsv
from degflow.report import html_table

p = snakemake.params
adata = ad.read_h5ad(snakemake.input.h5ad)
scores = scm.annotate(adata, scm.load_markers(snakemake.input.markers), groupby=p.groupby, min_score=p.min_score)
markers = scm.load_markers(snakemake.input.markers)
for cell_type, genes in markers.items():  # a type with no marker gene in the data can never be assigned
    if not any(g in adata.var_names for g in genes):
        note(f"cell type '{cell_type}' of {snakemake.input.markers} has none of its marker genes in the data "
             f"({', '.join(genes[:5])}): it cannot be assigned (its score column is empty)")
table = scores.assign(cell_type=pd.Series(adata.uns["degflow"]["annotate"]["assignment"])).reset_index()
write_tsv(table, snakemake.output.scores)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(table, title=f"Cell-type scores of the {p.groupby} clusters"))
adata.write_h5ad(snakemake.output.h5ad)
