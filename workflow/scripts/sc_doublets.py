"""One sample: scrublet doublet scores (obs doublet_score, predicted_doublet); predicted doublets removed if asked."""
from _common import setup

threads = setup(snakemake)
import anndata as ad

from degflow import single_cell as scm
from degflow.io import write_tsv

d = snakemake.params.doublets
adata = ad.read_h5ad(snakemake.input[0])
out, table = scm.doublets(adata, batch_key="sample", remove=d["remove"], seed=snakemake.params.seed,
                          expected_doublet_rate=d["expected_rate"], threshold=d["threshold"], n_threads=threads)
write_tsv(table, snakemake.output.table)
out.write_h5ad(snakemake.output.h5ad)
