"""All samples' kept cells in one AnnData of raw counts (obs categories in sheet order); per-gene QC metrics redone."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow.io.tables import read_tsv
from degflow.singlecell.qc import qc_metrics

p = snakemake.params
adata = ad.concat([ad.read_h5ad(f) for f in snakemake.input.cells], join="inner", merge="same", uns_merge="same")
for col, levels in p.categories.items():  # sheet order, not alphabetical
    adata.obs[col] = pd.Categorical(adata.obs[col].astype(str), categories=levels)
qc_metrics(adata)
genes = read_tsv(snakemake.input.genes, dtype={"gene": str})
adata.uns.setdefault("degflow", {}).setdefault("qc_filter", {}).update(
    min_cells=p.min_cells, n_genes_removed=int((~genes["kept"]).sum()))
adata.write_h5ad(snakemake.output[0])
