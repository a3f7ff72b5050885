"""Genes of interest: a plotCounts-style figure per gene (every test's log2FC and padj) and one heatmap."""
from pathlib import Path

from _common import setup

setup(snakemake)
from degflow.bulk import genes_of_interest as goi
from degflow.bulk.batch import batch_corrected
from degflow.bulk.dataset import normalized_counts
from degflow.bulk.vst import variance_stabilised
from degflow.io.tables import read_bulk_dataset, read_tsv
from degflow.pl import bulk as plots
from degflow.pl.base import message_figure, save

p = snakemake.params
data, counts, sf = read_bulk_dataset(snakemake.input.dataset, snakemake.input.size_factors)
table = read_tsv(snakemake.input.table, dtype={"gene_name": str, "gene_id": str, "query": str})
genes = list(dict.fromkeys(table["gene_id"]))
out_dir = Path(snakemake.output.counts)
out_dir.mkdir(parents=True, exist_ok=True)
norm = normalized_counts(data, sf.to_numpy())
color_by = p.batch[0] if p.batch else None
for _, row in table.drop_duplicates("gene_id").iterrows():
    name = row["gene_name"] if isinstance(row["gene_name"], str) and row["gene_name"] else row["gene_id"]
    title = name if name == row["gene_id"] else f"{name} ({row['gene_id']})"
    fig = plots.gene_counts(norm.loc[row["gene_id"]], data.obs, group_by=p.group_by, color_by=color_by, title=title,
                            notes=goi.report_lines(row, p.tests))
    stem = out_dir / goi.safe_name(f"{name}_{row['gene_id']}" if name != row["gene_id"] else name)
    save(fig, f"{stem}.png", f"{stem}.pdf")
if genes:
    values = variance_stabilised(counts, sf)
    label = "variance-stabilised"
    if p.batch:
        values = batch_corrected(values, data.obs, design=p.design, batch=p.batch)
        label = f"{', '.join(p.batch)} removed"
    names = data.var["gene_name"].astype(str)
    fig = plots.deg_heatmap(values, genes, data.obs, annotate_by=p.annotate_by,
                            gene_names=names.where(names != "", data.var_names.to_series()),
                            title=f"Genes of interest ({label})")
else:
    fig = message_figure("None of the genes of interest was found among the analysed genes:\n"
                         "see genes_of_interest/lookup.tsv", title="Genes of interest")
save(fig, snakemake.output.png, snakemake.output.pdf)
