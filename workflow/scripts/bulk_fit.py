"""Fit the DESeq2 model once for the design; write size factors and normalised counts."""
from _common import setup

threads = setup(snakemake)
import anndata as ad
import pandas as pd

from degflow.bulk.dataset import length_normalization_factors, normalized_counts
from degflow.de.fit import fit_deseq
from degflow.io.tables import save_pickle, write_tsv
from degflow.kernels.sizefactors import size_factors_poscounts, size_factors_ratio

p = snakemake.params
data = ad.read_h5ad(snakemake.input[0])
counts = pd.DataFrame(data.X.T, index=data.var_names, columns=data.obs_names)
kernel = size_factors_ratio if p.de["size_factors"] == "ratio" else size_factors_poscounts
# salmon/kallisto/RSEM read with counts_from_abundance: no -> tximport's lengths become DESeq2 normalisation factors
nf = (length_normalization_factors(counts, data.layers["avg_tx_length"].T) if "avg_tx_length" in data.layers
      else None)
sf = kernel(data.X, n_threads=threads) if nf is None else None  # numba kernel; = DESeq2's estimateSizeFactors
dds = fit_deseq(counts, data.obs, p.design, p.reference_levels, flavor=p.de["flavor"], engine=p.de["engine"],
                size_factors=sf,
                normalization_factors=nf, refit_cooks=p.de["refit_cooks"], n_cpus=threads, seed=p.de["seed"])
dds.uns["degflow_gene_names"] = data.var["gene_name"].to_dict()
dds.uns["degflow_gene_biotypes"] = data.var["gene_biotype"].to_dict() if "gene_biotype" in data.var else {}
save_pickle(dds, snakemake.output.model)
sf = pd.DataFrame({"sample": data.obs_names, "size_factor": dds.obs["size_factors"].to_numpy()})
write_tsv(sf, snakemake.output.size_factors)
normed = (normalized_counts(data, sf["size_factor"].to_numpy()) if nf is None else  # counts / NF, as DESeq2
          pd.DataFrame(counts.to_numpy() / nf, index=counts.index, columns=counts.columns).rename_axis("gene_id"))
write_tsv(normed, snakemake.output.normalized, index=True)
