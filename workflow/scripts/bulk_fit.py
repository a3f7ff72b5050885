"""Fit the DESeq2 model once for the design; write size factors and normalised counts."""
from _common import setup

threads = setup(snakemake)
import anndata as ad

from degflow.bulk.de import fit_dataset
from degflow.io.tables import save_pickle, write_tsv

p = snakemake.params
fit = fit_dataset(ad.read_h5ad(snakemake.input[0]), design=p.design, reference_levels=p.reference_levels, de=p.de,
                  n_threads=threads)
save_pickle(fit.model, snakemake.output.model)
write_tsv(fit.size_factors, snakemake.output.size_factors)
write_tsv(fit.normalized, snakemake.output.normalized, index=True)
