"""Likelihood-ratio test against a reduced formula: every tested gene (results.tsv) and the significant ones."""
from _common import setup

threads = setup(snakemake)
import pandas as pd

from degflow.bulk.patterns import lrt_table, significant_genes
from degflow.de.results import lrt_results
from degflow.io.tables import load_pickle, write_tsv
from degflow.report import html_table

p, de = snakemake.params, snakemake.params.de
dds = load_pickle(snakemake.input[0])
res = lrt_results(dds, p.spec["reduced"], alpha=de["alpha"], cooks_filter=de["cooks_filter"],
                  independent_filter=de["independent_filter"], n_cpus=threads)
names = pd.Series(dds.uns["degflow_gene_names"])
table = lrt_table(res, names, padj=p.thresholds["padj"])
write_tsv(table, snakemake.output.results)
sig = significant_genes(table)
write_tsv(sig, snakemake.output.significant)
caption = (f"Likelihood-ratio test {p.spec['reduced']} -> design ({p.spec['df']} degrees of freedom): genes with padj < "
           f"{p.thresholds['padj']}; log2FoldChange is {p.spec['coefficient']}. Click a header to sort.")
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(sig, title=f"LRT: {snakemake.wildcards.lrt}", caption=caption))
