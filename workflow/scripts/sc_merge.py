"""All samples' kept cells in one AnnData of raw counts (obs categories in sheet order); per-gene QC metrics redone."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.singlecell.scale import merge

p = snakemake.params
merge(snakemake.input.cells, read_tsv(snakemake.input.genes, dtype={"gene": str}), snakemake.output[0],
      categories=p.categories, min_cells=p.min_cells, scale=p.scale)
