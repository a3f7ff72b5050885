"""Rescue of one treatment: per-gene classes, reversal scores (genes.tsv) and its summary row, with the
gene-shuffling and the sample-label permutation p-values of the global reversal statistic."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow.compound import rescue
from degflow.io.sheets import read_sample_sheet
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv

p, rc, th, arms = snakemake.params, snakemake.params.rescue, snakemake.params.thresholds, snakemake.params.arms
dtype = {"gene_id": str, "gene_name": str}
disease = read_tsv(snakemake.input.disease, dtype=dtype)
treatment = read_tsv(snakemake.input.treatment, dtype=dtype)
genes = rescue.classify_rescue(disease, treatment, lfc=th["lfc"], padj=th["padj"], partial=rc["partial"])
reversal = rescue.global_reversal(genes, n_permutations=rc["permutations"], seed=rc["seed"])
shared = rescue.shared_reference_correlation(genes, **p.sizes)
_, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
logn, groups = rescue.log_normalised(counts, sf), read_sample_sheet(snakemake.input.samples)[arms["factor"]]
levels = {k: arms[k] for k in ("control", "model", "treated")}
label = {a: rescue.label_permutation_reversal(genes, logn, groups, **levels, arms=a, n_permutations=rc["permutations"],
                                             seed=rc["seed"]) for a in ("treated_model", "all")}
row = rescue.rescue_summary(genes, treatment=snakemake.wildcards.treatment, disease=p.disease, reversal=reversal,
                            shared_reference_r=shared, label_permutation=label["treated_model"],
                            label_permutation_all_arms=label["all"])
write_tsv(genes, snakemake.output.genes)
write_tsv(pd.DataFrame([row]), snakemake.output.summary)
