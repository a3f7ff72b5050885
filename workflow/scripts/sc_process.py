"""Counts -> clusters: normalise + log1p, HVGs, PCA (Harmony), neighbours, Leiden at each resolution, UMAP."""
from _common import setup

threads = setup(snakemake)
import anndata as ad

from degflow.singlecell.process import process

adata = ad.read_h5ad(snakemake.input[0])
process(adata, **snakemake.params.process, n_threads=threads)
adata.write_h5ad(snakemake.output[0])
