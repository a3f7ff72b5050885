"""Counts -> clusters: normalise + log1p, HVGs, PCA (Harmony), neighbours, Leiden at each resolution, UMAP."""
from _common import setup

threads = setup(snakemake)
import anndata as ad

from degflow import single_cell as scm
from degflow.singlecell import ondisk

scale = snakemake.params.scale
if ondisk.wanted(scale["on_disk"], ondisk.h5ad_cells(snakemake.input[0])):  # atlas size: chunks of cells
    ondisk.process(snakemake.input[0], snakemake.output[0], **snakemake.params.process,
                   chunk_cells=scale["chunk_cells"], n_threads=threads)
    raise SystemExit(0)
adata = ad.read_h5ad(snakemake.input[0])
scm.process(adata, **snakemake.params.process, n_threads=threads)
adata.write_h5ad(snakemake.output[0])
