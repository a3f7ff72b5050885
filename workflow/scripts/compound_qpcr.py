"""qRT-PCR: 2^-ddCt fold changes per gene and contrast, and their concordance with the RNA-seq log2FC."""
from _common import setup

setup(snakemake)
from degflow.compound import qpcr
from degflow.compound.steps import qpcr_tables
from degflow.io.sheets import read_sample_sheet
from degflow.io.tables import read_tsv, write_tsv

p = snakemake.params
sheet = read_sample_sheet(snakemake.input.samples)
ct = qpcr.read_ct_table(snakemake.input.ct, sheet, label="config key 'bulk.qpcr.ct_table'")
results = {c: read_tsv(f, dtype={"gene_id": str, "gene_name": str})
           for c, f in zip(p.contrasts, snakemake.input.results, strict=False)}
fc, pairs, stats = qpcr_tables(ct, sheet, results, contrasts=p.contrasts, reference_genes=p.reference_genes,
                               label=snakemake.input.ct)
write_tsv(fc, snakemake.output.fold_changes)
write_tsv(pairs, snakemake.output.pairs)
write_tsv(stats, snakemake.output.stats)
