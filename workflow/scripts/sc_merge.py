"""All samples' kept cells in one AnnData of raw counts (obs categories in sheet order); per-gene QC metrics redone."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import read_tsv
from degflow.singlecell.steps import merge_samples

p = snakemake.params
cells = [ad.read_h5ad(f) for f in snakemake.input.cells]
adata = merge_samples(cells, read_tsv(snakemake.input.genes, dtype={"gene": str}), categories=p.categories,
                      min_cells=p.min_cells)
adata.write_h5ad(snakemake.output[0])
