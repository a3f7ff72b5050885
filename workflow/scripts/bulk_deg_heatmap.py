"""Heatmap of a contrast's top DEGs (z-scored variance-stabilised counts, samples annotated)."""
from _common import setup

setup(snakemake)
from degflow import plots, qc
from degflow.io import read_bulk_dataset, read_tsv

p, th = snakemake.params, snakemake.params.thresholds
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
res = read_tsv(snakemake.input.results, dtype={"gene_name": str}).set_index("gene_id")
top = qc.top_genes(res, n=p.n_top, lfc=th["lfc"], padj=th["padj"])
fig = plots.deg_heatmap(qc.variance_stabilised(counts, sf), list(top.index), data.obs, annotate_by=p.annotate_by,
                        gene_names=res["gene_name"].fillna(""), title=snakemake.wildcards.contrast)
plots.save(fig, snakemake.output.png, snakemake.output.pdf)
