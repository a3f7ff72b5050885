"""All treatments' rescue summaries in one table."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow.io.tables import read_tsv, write_tsv

write_tsv(pd.concat([read_tsv(f) for f in snakemake.input], ignore_index=True), snakemake.output[0])
