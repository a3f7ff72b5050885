"""The pseudobulk results (log2FC, padj ...) of the genes of interest in every tested cell type and contrast."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv, write_tsv
from degflow.pseudobulk.steps import genes_of_interest

cell_types = read_tsv(snakemake.input.cell_types, dtype={"cell_type": str, "folder": str})
genes = read_tsv(snakemake.input.genes, dtype={"gene": str, "name_in_data": str})
results = [read_tsv(path, dtype={"gene_id": str, "gene_name": str}) for path in snakemake.input.results]
table, html = genes_of_interest(cell_types, genes, results, contrasts=snakemake.params.contrasts)
write_tsv(table, snakemake.output.table)  # no gene found: an empty table (with its header)
with open(snakemake.output.html, "w") as fh:
    fh.write(html)
