"""QC metrics per sample before QC (every barcode) and after (cells kept): violins and scatter, PNG + PDF."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow.io.tables import read_tsv
from degflow.pl.base import save
from degflow.pl.singlecell import qc_scatter_figure, qc_violin_figure

p, out = snakemake.params, snakemake.output
before = pd.concat([read_tsv(f, index_col=0, dtype={"sample": str}) for f in snakemake.input.cells])
after = ad.read_h5ad(snakemake.input.merged, backed="r").obs.copy()
for stage, obs in (("before", before), ("after", after)):
    obs["sample"] = pd.Categorical(obs["sample"].astype(str), categories=p.samples)
    cells, title = ad.AnnData(obs=obs), f"{stage.capitalize()} QC: {len(obs):,} cells"
    save(qc_violin_figure(cells, thresholds=p.thresholds, title=title), out[f"violin_{stage}"],
         out.pdfs[["before", "after"].index(stage)])
    save(qc_scatter_figure(cells, title=title), out[f"scatter_{stage}"],
         out.pdfs[2 + ["before", "after"].index(stage)])
