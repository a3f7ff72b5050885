"""One sample: read its counts (genes of qc/genes.tsv), compute QC metrics, remove low-quality cells."""
from _common import setup

setup(snakemake)
import pandas as pd

from degflow import single_cell as scm
from degflow.io import read_tsv, write_tsv
from degflow.sc_io import qc_overrides, validate_sample_sheet

p = snakemake.params
sheet = validate_sample_sheet(pd.DataFrame([p.row]), source=p.sheet)
genes = read_tsv(snakemake.input.genes, dtype={"gene": str})
adata = scm.read_samples(sheet)[:, genes.loc[genes["kept"], "gene"].to_numpy()].copy()
scm.qc_metrics(adata)
kept, removed = scm.qc_filter(adata, min_cells=None, overrides=qc_overrides(sheet), **p.qc)  # genes: see sc_genes
cells = adata.obs.assign(passed_qc=adata.obs_names.isin(kept.obs_names)).rename_axis("cell")
write_tsv(cells, snakemake.output.cells, index=True)
write_tsv(removed, snakemake.output.removed)
kept.write_h5ad(snakemake.output.h5ad)
