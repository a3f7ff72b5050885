"""One cell type: a volcano plot (PNG + PDF) and a searchable DEG page per contrast."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv
from degflow.pl.base import save
from degflow.pseudobulk.steps import cell_type_figures

p = snakemake.params
n = len(p.contrasts)  # outputs: the volcano PNGs, then the DEG pages, in contrast order
results = [read_tsv(path, dtype={"gene_name": str}).set_index("gene_id") for path in snakemake.input]
for i, (fig, html) in enumerate(cell_type_figures(results, cell_type=p.cell_type, contrasts=p.contrasts,
                                                  thresholds=p.thresholds, top_n=p.plots["top_n_labels"])):
    save(fig, snakemake.output[i], snakemake.output.pdfs[i])
    with open(snakemake.output[n + i], "w") as fh:
        fh.write(html)
