"""All DEG tables in one XLSX workbook: the summary, a sheet per contrast, then one per likelihood-ratio test."""
from _common import setup

setup(snakemake)
from degflow.io import read_tsv
from degflow.report import write_workbook

sheets = {"summary": read_tsv(snakemake.input.summary)}
for name, path in zip(snakemake.params.contrasts, snakemake.input.deg):
    sheets[name] = read_tsv(path, dtype={"gene_name": str})
for name, path in zip(snakemake.params.lrts, snakemake.input.lrt):  # likelihood-ratio tests: significant genes
    sheets[f"LRT {name}"] = read_tsv(path, dtype={"gene_name": str})
write_workbook(snakemake.output[0], sheets)
