"""Genes detected in >= min_cells cells over all samples, before cell QC (the tutorials' order): gene, n_cells, kept."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow.io.singlecell import validate_sample_sheet
from degflow.io.tables import write_tsv
from degflow.singlecell.steps import detected_genes

p = snakemake.params
sheet = validate_sample_sheet(pd.DataFrame(p.rows), source=p.sheet)  # genes shared by all samples
write_tsv(detected_genes(sheet, min_cells=p.min_cells, source=p.sheet), snakemake.output[0])
