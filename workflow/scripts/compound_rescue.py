"""Rescue of one treatment: per-gene classes and reversal scores (genes.tsv) and its summary row."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow import rescue
from degflow.io import read_tsv, write_tsv

p, rc, th = snakemake.params, snakemake.params.rescue, snakemake.params.thresholds
dtype = {"gene_id": str, "gene_name": str}
disease = read_tsv(snakemake.input.disease, dtype=dtype)
treatment = read_tsv(snakemake.input.treatment, dtype=dtype)
genes = rescue.classify_rescue(disease, treatment, lfc=th["lfc"], padj=th["padj"], partial=rc["partial"])
reversal = rescue.global_reversal(genes, n_permutations=rc["permutations"], seed=rc["seed"])
shared = rescue.shared_reference_correlation(genes, **p.sizes)
row = rescue.rescue_summary(genes, treatment=snakemake.wildcards.treatment, disease=p.disease, reversal=reversal,
                            shared_reference_r=shared)
write_tsv(genes, snakemake.output.genes)
write_tsv(pd.DataFrame([row]), snakemake.output.summary)
