"""Read and check the counts, sample sheet and annotation; write the analysis dataset (h5ad)."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow.bulk.dataset import build_dataset, read_gene_annotation
from degflow.io.genecounts import strandedness_table
from degflow.io.tables import write_tsv
from degflow.plan.bulk import plan_bulk

p = snakemake.params
bulk = {"counts": p.counts, "samples": snakemake.input.samples, "design": p.design,
        "reference_levels": p.reference_levels, "contrasts": p.contrasts, "exclude": p.exclude}
plan, table = plan_bulk(bulk)
adata = build_dataset(table, plan, design=p.design, reference_levels=p.reference_levels,
                      annotation=read_gene_annotation(snakemake.input.get("annotation")),
                      min_count=p.filter["min_count"], min_samples=p.filter["min_samples"])
adata.write_h5ad(snakemake.output.dataset)
quant = table.qc.loc[table.qc.index.isin(plan.samples)] if table.qc is not None else pd.DataFrame(index=plan.samples)
quant.index.name = "sample"
write_tsv(quant, snakemake.output.quantifier_qc, index=True)
if "strandedness" in snakemake.output.keys():
    write_tsv(strandedness_table(table), snakemake.output.strandedness)
