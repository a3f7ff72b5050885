"""The pseudobulk results (log2FC, padj ...) of the genes of interest in every tested cell type and contrast."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv, write_tsv
from degflow.pseudobulk import aggregate as pseudobulk
from degflow.report import html_table

p = snakemake.params
cell_types = read_tsv(snakemake.input.cell_types, dtype={"cell_type": str, "folder": str})
genes = read_tsv(snakemake.input.genes, dtype={"gene": str, "name_in_data": str})
tested = cell_types.loc[cell_types["tested"], "cell_type"]
keys = [(ct, name) for ct in tested for name in p.contrasts]  # the order of the results inputs
results = {key: read_tsv(path, dtype={"gene_id": str, "gene_name": str})
           for key, path in zip(keys, snakemake.input.results, strict=False)}
found = list(genes.loc[genes["found"].astype(str) == "True", "name_in_data"])
table = pseudobulk.genes_of_interest_table(results, found)  # no gene found: an empty table (with its header)
write_tsv(table, snakemake.output.table)
caption = "" if found else "None of the genes of interest was found in the single-cell data (see genes.tsv)."
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(table, title="Genes of interest: pseudobulk results per cell type and contrast",
                        caption=caption))
