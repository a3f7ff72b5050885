"""One cell type: DESeq2 on its pseudo-samples (bulk engine, poscounts size factors), then every contrast's tables."""
from _common import setup

threads = setup(snakemake)
import anndata as ad

from degflow.bulk.dataset import annotate_results, deg_table
from degflow.de.fit import fit_deseq
from degflow.de.results import contrast_results
from degflow.io.tables import write_tsv
from degflow.pseudobulk import aggregate as pseudobulk

p, de, th = snakemake.params, snakemake.params.de, snakemake.params.thresholds
pb = ad.read_h5ad(snakemake.input[0])
counts, samples, names = pseudobulk.design_data(pb, p.cell_type, design=p.design, groupby=p.groupby,
                                                min_count=p.filter["min_count"], min_samples=p.filter["min_samples"])
sf = pseudobulk.size_factors(counts, kind=de["size_factors"], n_threads=threads)
dds = fit_deseq(counts, samples, p.design, p.reference_levels, flavor=de["flavor"], engine=de.get("engine", "numba"),
                size_factors=sf,
                refit_cooks=de["refit_cooks"], n_cpus=threads, seed=de["seed"])
for i, spec in enumerate(p.contrasts.values()):  # outputs in contrast order
    res = contrast_results(dds, list(spec), alpha=de["alpha"], cooks_filter=de["cooks_filter"],
                           independent_filter=de["independent_filter"], lfc_null=de["lfc_null"],
                           alt_hypothesis=de["alt_hypothesis"], shrink=de["shrink"], n_cpus=threads)
    table = annotate_results(res, names, lfc=th["lfc"], padj=th["padj"])
    write_tsv(table, snakemake.output.results[i])
    write_tsv(deg_table(table), snakemake.output.deg[i])
