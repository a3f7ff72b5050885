"""One cell type: DESeq2 on its pseudo-samples (bulk engine, poscounts size factors), then every contrast's tables."""
from _common import setup

threads = setup(snakemake)
import anndata as ad

from degflow.io.tables import write_tsv
from degflow.pseudobulk.steps import cell_type_de

p = snakemake.params
tables = cell_type_de(ad.read_h5ad(snakemake.input[0]), p.cell_type, groupby=p.groupby, design=p.design,
                      reference_levels=p.reference_levels, contrasts=p.contrasts, gene_filter=p.filter, de=p.de,
                      thresholds=p.thresholds, n_threads=threads)
for (table, deg), results, degs in zip(tables, snakemake.output.results, snakemake.output.deg, strict=True):
    write_tsv(table, results)  # outputs in contrast order
    write_tsv(deg, degs)
