"""The compound-study tables in one XLSX workbook: rescue summary and genes (disease or treatment DEGs; the full
tables are the TSVs), pathway scores, set sizes and panel tables, ORA/GSEA per contrast, qPCR tables."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.report import write_workbook

i, p = snakemake.input, snakemake.params
dt = {"gene_id": str, "gene_name": str}
sheets = {}
if "rescue_summary" in i.keys():
    sheets["rescue summary"] = read_tsv(i.rescue_summary)
    for t, f in zip(p.treatments, i.rescue_genes, strict=False):
        g = read_tsv(f, dtype=dt)
        sheets[f"rescue {t}"] = g[g["disease_deg"] | g["treatment_deg"]]
if "scores" in i.keys():
    sheets["pathway scores"] = read_tsv(i.scores)
    sheets["pathway gene sets"] = read_tsv(i.set_sizes)
    for name, f in zip(p.panels, i.panel_genes, strict=False):
        sheets[f"panel {name.removeprefix('HALLMARK_')}"] = read_tsv(f, dtype=dt)
for kind in ("ora", "gsea"):
    if kind in i.keys():
        for c, f in zip(p.contrasts, i[kind], strict=False):
            sheets[f"{kind.upper()} {c}"] = read_tsv(f)
if "qpcr" in i.keys():
    sheets["qPCR fold changes"] = read_tsv(i.qpcr)
    sheets["qPCR vs RNA-seq"] = read_tsv(i.qpcr_pairs)
    sheets["qPCR concordance"] = read_tsv(i.qpcr_stats)
write_workbook(snakemake.output[0], sheets)
