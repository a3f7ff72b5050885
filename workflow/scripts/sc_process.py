"""Counts -> clusters: normalise + log1p, HVGs, PCA (Harmony), neighbours, Leiden at each resolution, UMAP."""
from _common import setup

threads = setup(snakemake)
from degflow.singlecell.scale import process

process(snakemake.input[0], snakemake.output[0], process=snakemake.params.process, scale=snakemake.params.scale,
        n_threads=threads)
