"""Wald test for one contrast: every tested gene (results.tsv) and the DEGs (deg.tsv)."""
from _common import setup

threads = setup(snakemake)
from collections.abc import Mapping

import pandas as pd

from degflow.bulk.dataset import annotate_results, deg_table
from degflow.de.results import contrast_results
from degflow.io.tables import load_pickle, write_tsv

p, de, th = snakemake.params, snakemake.params.de, snakemake.params.thresholds
dds = load_pickle(snakemake.input[0])
spec = dict(p.contrast) if isinstance(p.contrast, Mapping) else list(p.contrast)  # name / vector / list, or levels
res = contrast_results(dds, spec, alpha=de["alpha"], cooks_filter=de["cooks_filter"],
                       independent_filter=de["independent_filter"], lfc_null=de["lfc_null"],
                       alt_hypothesis=de["alt_hypothesis"], shrink=de["shrink"], n_cpus=threads)
names = pd.Series(dds.uns["degflow_gene_names"])
biotypes = pd.Series(dds.uns.get("degflow_gene_biotypes", {}), dtype=object)
table = annotate_results(res, names, lfc=th["lfc"], padj=th["padj"],
                         gene_biotypes=biotypes if len(biotypes) else None)
write_tsv(table, snakemake.output.results)
write_tsv(deg_table(table), snakemake.output.deg)
