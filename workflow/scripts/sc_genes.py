"""Genes detected in >= min_cells cells over all samples, before cell QC (the tutorials' order): gene, n_cells, kept."""
from _common import setup

setup(snakemake)
import pandas as pd
import scanpy as sc

from degflow.io.singlecell import read_samples, validate_sample_sheet
from degflow.io.tables import write_tsv

p = snakemake.params
adata = read_samples(validate_sample_sheet(pd.DataFrame(p.rows), source=p.sheet))  # genes shared by all samples
kept, n_cells = sc.pp.filter_genes(adata, min_cells=p.min_cells or 0, inplace=False)
write_tsv(pd.DataFrame({"gene": adata.var_names, "n_cells": n_cells, "kept": kept}), snakemake.output[0])
