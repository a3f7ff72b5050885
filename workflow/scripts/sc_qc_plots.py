"""QC metrics per sample before QC (every barcode) and after (cells kept): violins and scatter, PNG + PDF."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow.io.tables import read_tsv
from degflow.pl import bulk as plots
from degflow.singlecell import process as scm

p, out = snakemake.params, snakemake.output
before = pd.concat([read_tsv(f, index_col=0, dtype={"sample": str}) for f in snakemake.input.cells])
after = ad.read_h5ad(snakemake.input.merged, backed="r").obs.copy()
for stage, obs in (("before", before), ("after", after)):
    obs["sample"] = pd.Categorical(obs["sample"].astype(str), categories=p.samples)
    cells, title = ad.AnnData(obs=obs), f"{stage.capitalize()} QC: {len(obs):,} cells"
    plots.save(scm.qc_violin_figure(cells, thresholds=p.thresholds, title=title), out[f"violin_{stage}"],
               out.pdfs[["before", "after"].index(stage)])
    plots.save(scm.qc_scatter_figure(cells, title=title), out[f"scatter_{stage}"],
               out.pdfs[2 + ["before", "after"].index(stage)])
