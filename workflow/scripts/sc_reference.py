"""Transfer cell-type labels from a labelled reference (obs cell_type_reference + confidence): labels and summary."""
from _common import setup

setup(snakemake)
import anndata as ad
import pandas as pd

from degflow.io.tables import write_tsv
from degflow.report import html_table
from degflow.singlecell.annotate import transfer_labels

p = snakemake.params
adata = ad.read_h5ad(snakemake.input.h5ad)
reference = ad.read_h5ad(snakemake.input.reference)
summary = transfer_labels(adata, reference, seed=p.seed, target_sum=p.target_sum, **p.reference)
labels = pd.DataFrame({"cell": adata.obs_names, "cell_type_reference": adata.obs["cell_type_reference"].astype(str),
                       "confidence": adata.obs["cell_type_reference_confidence"].to_numpy()})
write_tsv(labels, snakemake.output.labels)
write_tsv(summary, snakemake.output.summary)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(summary, title=f"Labels transferred from {snakemake.input.reference}"))
