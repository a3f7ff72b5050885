"""One row per tested cell type x contrast (pseudo-samples, genes tested, up, down); the DEG-count heatmap."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow.bulk.dataset import summary_row
from degflow.io.tables import read_tsv, write_tsv
from degflow.pl.base import save
from degflow.pl.pseudobulk import deg_count_heatmap
from degflow.report import html_table

p, th = snakemake.params, snakemake.params.thresholds
cell_types = read_tsv(snakemake.input.cell_types, dtype={"cell_type": str, "folder": str})
tested = cell_types[cell_types["tested"]]
specs = [(ct, n, name, spec) for ct, n in zip(tested["cell_type"], tested["n_pseudo_samples"], strict=False)
         for name, spec in p.contrasts.items()]  # the order of the results inputs
rows = [{"cell_type": ct, "n_pseudo_samples": n,
         **summary_row(name, spec, read_tsv(path), lfc=th["lfc"], padj=th["padj"])}
        for (ct, n, name, spec), path in zip(specs, snakemake.input.results, strict=False)]
summary = pd.DataFrame(rows, columns=["cell_type", "n_pseudo_samples", "contrast", "factor", "test_level",
                                      "reference_level", "n_tested", "n_genes", "n_up", "n_down", "lfc_threshold",
                                      "padj_threshold"])
write_tsv(summary, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(summary, title="Pseudobulk DEGs per cell type and contrast"))
skipped = cell_types.loc[~cell_types["tested"], "cell_type"].tolist()
save(deg_count_heatmap(summary, skipped=skipped), snakemake.output.png, snakemake.output.pdf)
