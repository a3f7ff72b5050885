"""Heatmap of a contrast's top DEGs (z-scored variance-stabilised counts, samples annotated).

With ``bulk.batch`` the values are batch-corrected (limma removeBatchEffect), unless the contrast tests a batch
column itself, as [factor, ...] or through a coefficient a name/vector/list contrast weights (removing it would
remove what is tested): then the measured values, and the title says which.
"""
from _common import setup

setup(snakemake)
from degflow.bulk.batch import batch_corrected
from degflow.bulk.degs import top_genes
from degflow.bulk.vst import variance_stabilised
from degflow.io.tables import read_bulk_dataset, read_tsv
from degflow.pl import bulk as plots
from degflow.pl.base import save
from degflow.plan.design import contrast_batch_variables

p, th = snakemake.params, snakemake.params.thresholds
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
res = read_tsv(snakemake.input.results, dtype={"gene_name": str}).set_index("gene_id")
top = top_genes(res, n=p.n_top, lfc=th["lfc"], padj=th["padj"])
values, title = variance_stabilised(counts, sf), snakemake.wildcards.contrast
tested_batch = contrast_batch_variables(p.contrast, p.batch, design=p.design, meta=data.obs)
if p.batch and not tested_batch:
    values = batch_corrected(values, data.obs, design=p.design, batch=p.batch)
    title += f" ({', '.join(p.batch)} removed)"
elif p.batch:
    title += " (measured values)"
fig = plots.deg_heatmap(values, list(top.index), data.obs, annotate_by=p.annotate_by,
                        gene_names=res["gene_name"].fillna(""), title=title)
save(fig, snakemake.output.png, snakemake.output.pdf)
