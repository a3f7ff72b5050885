"""Cells removed per sample by each QC rule and by doublet removal, in one table (samples in sheet order)."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow.io.tables import read_tsv, write_tsv
from degflow.report import html_table

parts = []
for qc, doublets in zip(snakemake.input.qc, snakemake.input.doublets, strict=False):  # per sample: QC rules, then doublets
    parts.append(read_tsv(qc))
    d = read_tsv(doublets)  # no rows when doublets.method is none
    if len(d):
        parts.append(pd.DataFrame({"sample": d["sample"], "rule": "doublets", "metric": "doublet_score",
                                   "threshold": d["threshold"], "n_removed": d["removed"],
                                   "n_before": d["n_cells"], "n_after": d["n_after"]}))
table = pd.concat(parts, ignore_index=True)
write_tsv(table, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(table, title="Cells removed by QC and doublet detection"))
