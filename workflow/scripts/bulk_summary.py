"""One row per contrast: genes tested, up, down, thresholds."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow.bulk.dataset import summary_row
from degflow.io.tables import read_tsv, write_tsv

th = snakemake.params.thresholds
rows = [summary_row(name, spec, read_tsv(path), lfc=th["lfc"], padj=th["padj"])
        for (name, spec), path in zip(snakemake.params.contrasts.items(), snakemake.input, strict=False)]
write_tsv(pd.DataFrame(rows), snakemake.output[0])
