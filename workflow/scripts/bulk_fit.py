"""Fit the DESeq2 model once for the design; write size factors and normalised counts."""
from _common import setup

threads = setup(snakemake)
import anndata as ad
import pandas as pd

from degflow.bulk import normalized_counts
from degflow.deseq import fit_deseq
from degflow.io import save_pickle, write_tsv
from degflow.kernels import size_factors_poscounts, size_factors_ratio

p = snakemake.params
data = ad.read_h5ad(snakemake.input[0])
counts = pd.DataFrame(data.X.T, index=data.var_names, columns=data.obs_names)
kernel = size_factors_ratio if p.de["size_factors"] == "ratio" else size_factors_poscounts
sf = kernel(data.X, n_threads=threads)  # numba kernel; equals DESeq2's estimateSizeFactors to ~1e-15
dds = fit_deseq(counts, data.obs, p.design, p.reference_levels, flavor=p.de["flavor"],
                size_factors=sf, refit_cooks=p.de["refit_cooks"], n_cpus=threads, seed=p.de["seed"])
dds.uns["degflow_gene_names"] = data.var["gene_name"].to_dict()
save_pickle(dds, snakemake.output.model)
sf = pd.DataFrame({"sample": data.obs_names, "size_factor": dds.obs["size_factors"].to_numpy()})
write_tsv(sf, snakemake.output.size_factors)
write_tsv(normalized_counts(data, sf["size_factor"].to_numpy()), snakemake.output.normalized, index=True)
