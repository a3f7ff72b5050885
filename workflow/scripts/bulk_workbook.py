"""All DEG tables in one XLSX workbook: the summary, a sheet per contrast, one per likelihood-ratio test, and the genes of interest."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.report import write_workbook

sheets = {"summary": read_tsv(snakemake.input.summary)}
for name, path in zip(snakemake.params.contrasts, snakemake.input.deg, strict=False):
    sheets[name] = read_tsv(path, dtype={"gene_name": str})
for name, path in zip(snakemake.params.lrts, snakemake.input.lrt, strict=False):  # likelihood-ratio tests: significant genes
    sheets[f"LRT {name}"] = read_tsv(path, dtype={"gene_name": str})
for name, path in zip(("genes_of_interest", "genes_of_interest_lookup"), snakemake.input.get("goi", []), strict=False):
    sheets[name] = read_tsv(path, dtype={"gene_name": str, "gene_id": str, "query": str})
write_workbook(snakemake.output[0], sheets)
