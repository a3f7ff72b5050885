"""Genes detected in >= min_cells cells over all samples, before cell QC (the tutorials' order): gene, n_cells, kept."""
from _common import setup

setup(snakemake)
import pandas as pd
import scanpy as sc

from degflow import single_cell as scm
from degflow.io import write_tsv
from degflow.sc_io import validate_sample_sheet
from degflow.singlecell import ondisk

p = snakemake.params
if p.scale["on_disk"] is True:  # atlas size: one sample at a time (auto cannot know the cells before reading them)
    sheet = validate_sample_sheet(pd.DataFrame(p.rows), source=p.sheet)
    write_tsv(ondisk.genes_detected(sheet, min_cells=p.min_cells, source=p.sheet), snakemake.output[0])
    raise SystemExit(0)
adata = scm.read_samples(validate_sample_sheet(pd.DataFrame(p.rows), source=p.sheet))  # genes shared by all samples
kept, n_cells = sc.pp.filter_genes(adata, min_cells=p.min_cells or 0, inplace=False)
write_tsv(pd.DataFrame({"gene": adata.var_names, "n_cells": n_cells, "kept": kept}), snakemake.output[0])
