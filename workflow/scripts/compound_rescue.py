"""Rescue of one treatment: per-gene classes, reversal scores (genes.tsv) and its summary row, with the
gene-shuffling and the sample-label permutation p-values of the global reversal statistic."""
from _common import setup

setup(snakemake)
from degflow.compound.steps import rescue_tables
from degflow.io.sheets import read_sample_sheet
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv

p, i, dtype = snakemake.params, snakemake.input, {"gene_id": str, "gene_name": str}
disease, treatment = read_tsv(i.disease, dtype=dtype), read_tsv(i.treatment, dtype=dtype)
_, counts, sf = read_bulk_dataset(i.dataset, i.size_factors)
genes, summary = rescue_tables(disease, treatment, counts, sf, read_sample_sheet(i.samples),
                               treatment_name=snakemake.wildcards.treatment, disease_name=p.disease, arms=p.arms,
                               options=p.rescue, thresholds=p.thresholds, sizes=p.sizes)
write_tsv(genes, snakemake.output.genes)
write_tsv(summary, snakemake.output.summary)
