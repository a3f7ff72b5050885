"""PCA of samples on variance-stabilised counts (top variable genes): table + figure."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow import plots, qc
from degflow.io import read_tsv, write_tsv

data = ad.read_h5ad(snakemake.input.dataset)
counts = pd.DataFrame(data.X.T, index=data.var_names, columns=data.obs_names)
sf = read_tsv(snakemake.input.size_factors).set_index("sample")["size_factor"]
vst = qc.variance_stabilised(counts, sf)
coords, ratio = qc.pca(vst, n_top=snakemake.params.n_top)
table = coords.join(data.obs[snakemake.params.color_by].astype(str))
table.index.name = "sample"
write_tsv(table, snakemake.output.table, index=True)
fig = plots.pca(coords, ratio, data.obs, color_by=snakemake.params.color_by)
plots.save(fig, snakemake.output.png, snakemake.output.pdf)
