"""Significant LRT genes clustered by their z-scored expression across the levels of a factor (degPatterns style)."""
from _common import setup

setup(snakemake)
from degflow.bulk.patterns import lrt_patterns
from degflow.bulk.vst import variance_stabilised
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv
from degflow.pl.base import save
from degflow.report import html_table

p, spec = snakemake.params, snakemake.params.spec
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
sig = read_tsv(snakemake.input.significant, dtype={"gene_id": str, "gene_name": str})
title = f"{snakemake.wildcards.lrt}: {p.design} vs {spec['reduced']}: {len(sig)} genes with padj < {p.padj}"
membership, fig = lrt_patterns(variance_stabilised(counts, sf), data.obs[spec["group_by"]], sig, title=title,
                               n_clusters=spec["n_clusters"], max_clusters=spec["max_clusters"],
                               min_cluster_size=spec["min_cluster_size"], max_genes=spec["max_genes"])
write_tsv(membership, snakemake.output.clusters)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(membership, title=f"LRT clusters: {snakemake.wildcards.lrt}",
                        caption="cluster 0: genes in a cluster below min_cluster_size; z_<level>: mean z-score"))
save(fig, snakemake.output.png, snakemake.output.pdf)
