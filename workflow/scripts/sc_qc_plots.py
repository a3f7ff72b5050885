"""QC metrics per sample before QC (every barcode) and after (cells kept): violins and scatter, PNG + PDF."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow.io.tables import read_tsv
from degflow.pl.base import save
from degflow.singlecell.steps import qc_figures

p, out = snakemake.params, snakemake.output
before = pd.concat([read_tsv(f, index_col=0, dtype={"sample": str}) for f in snakemake.input.cells])
after = ad.read_h5ad(snakemake.input.merged, backed="r").obs.copy()
for i, (stage, violin, scatter) in enumerate(qc_figures(before, after, samples=p.samples, thresholds=p.thresholds)):
    save(violin, out[f"violin_{stage}"], out.pdfs[i])  # pdfs: the violins before, after, then the scatters
    save(scatter, out[f"scatter_{stage}"], out.pdfs[2 + i])
