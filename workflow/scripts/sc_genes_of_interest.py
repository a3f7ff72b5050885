"""Genes of interest: UMAP feature plots, dot plot and violins by cell type x condition; which genes were found."""
from _common import setup, warn

setup(snakemake)
import logging

import anndata as ad
import pandas as pd

from degflow import plots
from degflow import single_cell as scm
from degflow.io import write_tsv
from degflow.singlecell import ondisk

p = snakemake.params
if ondisk.wanted(p.scale["on_disk"], ondisk.h5ad_cells(snakemake.input[0])):  # atlas size: these genes only
    found, missing = scm.match_genes(ondisk.var_names(snakemake.input[0]), p.genes)
    adata = ondisk.read_light(snakemake.input[0], genes=list(found.values()), chunk_cells=p.scale["chunk_cells"])
else:
    adata = ad.read_h5ad(snakemake.input[0])
    found, missing = scm.match_genes(adata.var_names, p.genes)
if not found:
    warn(f"none of the {len(p.genes)} singlecell.genes_of_interest is in the data ({', '.join(p.genes[:10])}"
         f"{' ...' if len(p.genes) > 10 else ''}): the figures say so, genes_of_interest/genes.tsv lists them as "
         "not found and the pseudobulk genes_of_interest table, if any, is empty")
elif missing:
    logging.getLogger("degflow").warning("genes of interest not in the data (left out): %s", ", ".join(missing))
write_tsv(pd.DataFrame({"gene": p.genes, "found": [g in found for g in p.genes],
                        "name_in_data": [found.get(g, "") for g in p.genes]}), snakemake.output.genes)
figs = scm.genes_of_interest_figures(adata, list(found.values()), groupby=p.groupby, condition_key=p.condition)
for i, name in enumerate(("umap", "dotplot", "violin")):
    plots.save(figs[name], snakemake.output[name], snakemake.output.pdfs[i])
