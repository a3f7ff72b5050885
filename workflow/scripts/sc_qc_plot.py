"""QC metrics per sample before QC (every barcode) or after (cells kept): violins or a scatter, PNG + PDF."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow import plots
from degflow import single_cell as scm
from degflow.io import read_tsv

p, stage = snakemake.params, snakemake.wildcards.qc_stage
if stage == "before":
    obs = pd.concat([read_tsv(f, index_col=0, dtype={"sample": str}) for f in snakemake.input.cells])
else:
    obs = ad.read_h5ad(snakemake.input.merged, backed="r").obs.copy()
obs["sample"] = pd.Categorical(obs["sample"].astype(str), categories=p.samples)
cells, title = ad.AnnData(obs=obs), f"{stage.capitalize()} QC: {len(obs):,} cells"
if p.kind == "violin":
    fig = scm.qc_violin_figure(cells, thresholds=p.thresholds, title=title)
else:
    fig = scm.qc_scatter_figure(cells, title=title)
plots.save(fig, snakemake.output.png, snakemake.output.pdf)
