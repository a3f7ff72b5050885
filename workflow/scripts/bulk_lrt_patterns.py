"""Significant LRT genes clustered by their z-scored expression across the levels of a factor (degPatterns style)."""
from _common import setup

setup(snakemake)
from degflow import plots, qc
from degflow.io import read_bulk_dataset, read_tsv, write_tsv
from degflow.patterns import gene_patterns, plot_patterns

p = snakemake.params
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
sig = read_tsv(snakemake.input.significant, dtype={"gene_id": str, "gene_name": str})
spec = p.spec
if len(sig) >= 1:
    membership, profiles = gene_patterns(
        qc.variance_stabilised(counts, sf), data.obs[spec["group_by"]], list(sig["gene_id"]),
        n_clusters=spec["n_clusters"], max_clusters=spec["max_clusters"], min_cluster_size=spec["min_cluster_size"],
        max_genes=spec["max_genes"])
    if "gene_name" in sig.columns:
        membership.insert(1, "gene_name", sig.set_index("gene_id")["gene_name"].reindex(membership["gene_id"])
                          .fillna("").to_numpy())
    fig = plot_patterns(profiles, group_label=spec["group_by"],
                        title=f"{snakemake.wildcards.lrt}: {p.design} vs {spec['reduced']}: {len(sig)} genes with "
                              f"padj < {p.padj}" + (f", the {len(membership)} most significant clustered"
                                                    if len(membership) < len(sig) else ""))
else:
    import pandas as pd

    membership = pd.DataFrame(columns=["gene_id", "gene_name", "cluster"])
    fig = plot_patterns(pd.DataFrame({"cluster": pd.Series([], dtype=int)}), group_label=spec["group_by"])
write_tsv(membership, snakemake.output.clusters)
plots.save(fig, snakemake.output.png, snakemake.output.pdf)
