"""All DEG tables in one XLSX workbook: the summary, a sheet per contrast, one per likelihood-ratio test, and the genes of interest."""
from _common import setup

setup(snakemake)
from degflow.bulk.de import workbook_sheets
from degflow.io.tables import read_tsv
from degflow.report import write_workbook

i, p, names = snakemake.input, snakemake.params, {"gene_name": str}
degs = {name: read_tsv(path, dtype=names) for name, path in zip(p.contrasts, i.deg, strict=False)}
lrts = {name: read_tsv(path, dtype=names) for name, path in zip(p.lrts, i.lrt, strict=False)}
goi = [read_tsv(path, dtype={"gene_name": str, "gene_id": str, "query": str}) for path in i.get("goi", [])]
write_workbook(snakemake.output[0], workbook_sheets(read_tsv(i.summary), degs, lrts, genes_of_interest=goi))
