"""Transfer cell-type labels from a labelled reference (obs cell_type_reference + confidence): labels and summary."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import write_tsv
from degflow.singlecell.steps import transfer_labels

p = snakemake.params
labels, summary, html = transfer_labels(ad.read_h5ad(snakemake.input.h5ad), ad.read_h5ad(snakemake.input.reference),
                                        seed=p.seed, target_sum=p.target_sum, options=p.reference,
                                        reference_file=snakemake.input.reference)
write_tsv(labels, snakemake.output.labels)
write_tsv(summary, snakemake.output.summary)
with open(snakemake.output.html, "w") as fh:
    fh.write(html)
