"""One cell type: a volcano plot (PNG + PDF) and a searchable DEG page per contrast."""
from _common import setup

setup(snakemake)
from degflow.de.results import deg_table
from degflow.io.tables import read_tsv
from degflow.pl import bulk as plots
from degflow.report import html_table

p, th = snakemake.params, snakemake.params.thresholds
n = len(p.contrasts)  # outputs: the volcano PNGs, then the DEG pages, in contrast order
for i, (contrast, path) in enumerate(zip(p.contrasts, snakemake.input, strict=False)):
    res = read_tsv(path, dtype={"gene_name": str}).set_index("gene_id")
    title = f"{p.cell_type}: {contrast}"
    fig = plots.volcano(res, lfc=th["lfc"], padj=th["padj"], top_n=p.plots["top_n_labels"], title=title)
    plots.save(fig, snakemake.output[i], snakemake.output.pdfs[i])
    caption = (f"Genes with |log2 fold change| > {th['lfc']} and adjusted p-value < {th['padj']} in {p.cell_type}, "
               "sorted by adjusted p-value. Click a column header to sort; type in the box to filter.")
    with open(snakemake.output[n + i], "w") as fh:
        fh.write(html_table(deg_table(res.reset_index()), title=f"DEGs: {title}", caption=caption))
