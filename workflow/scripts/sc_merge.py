"""All samples' kept cells in one AnnData of raw counts (obs categories in sheet order); per-gene QC metrics redone."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow import single_cell as scm
from degflow.io import read_tsv
from degflow.singlecell import ondisk

p = snakemake.params
if ondisk.wanted(p.scale["on_disk"], ondisk.h5ad_cells(snakemake.input.cells)):  # atlas size: one sample at a time
    genes = read_tsv(snakemake.input.genes, dtype={"gene": str})
    ondisk.merge(snakemake.input.cells, snakemake.output[0], categories=p.categories,
                 uns_update={"min_cells": p.min_cells, "n_genes_removed": int((~genes["kept"]).sum())})
    raise SystemExit(0)
adata = ad.concat([ad.read_h5ad(f) for f in snakemake.input.cells], join="inner", merge="same", uns_merge="same")
for col, levels in p.categories.items():  # sheet order, not alphabetical
    adata.obs[col] = pd.Categorical(adata.obs[col].astype(str), categories=levels)
scm.qc_metrics(adata)
genes = read_tsv(snakemake.input.genes, dtype={"gene": str})
adata.uns.setdefault("degflow", {}).setdefault("qc_filter", {}).update(
    min_cells=p.min_cells, n_genes_removed=int((~genes["kept"]).sum()))
adata.write_h5ad(snakemake.output[0])
