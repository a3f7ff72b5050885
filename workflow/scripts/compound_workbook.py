"""The compound-study tables in one XLSX workbook: rescue summary and genes (disease or treatment DEGs; the full
tables are the TSVs), pathway scores, set sizes and panel tables, ORA/GSEA per contrast, qPCR tables."""
from _common import setup

setup(snakemake)
from degflow.compound.steps import workbook_sheets
from degflow.io.tables import read_tsv
from degflow.report import write_workbook

i, p = snakemake.input, snakemake.params
dt = {"gene_id": str, "gene_name": str}
tables = {}
if "rescue_summary" in i.keys():
    tables["rescue_summary"] = read_tsv(i.rescue_summary)
    tables["rescue_genes"] = {t: read_tsv(f, dtype=dt) for t, f in zip(p.treatments, i.rescue_genes, strict=False)}
if "scores" in i.keys():
    tables["scores"], tables["set_sizes"] = read_tsv(i.scores), read_tsv(i.set_sizes)
    tables["panels"] = {name: read_tsv(f, dtype=dt) for name, f in zip(p.panels, i.panel_genes, strict=False)}
for kind in ("ora", "gsea"):
    if kind in i.keys():
        tables[kind] = {c: read_tsv(f) for c, f in zip(p.contrasts, i[kind], strict=False)}
if "qpcr" in i.keys():
    tables["qpcr"] = (read_tsv(i.qpcr), read_tsv(i.qpcr_pairs), read_tsv(i.qpcr_stats))
write_workbook(snakemake.output[0], workbook_sheets(**tables))
