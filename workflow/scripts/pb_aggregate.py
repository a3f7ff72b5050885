"""Raw counts summed per sample x cell type (pseudobulk h5ad); which cell types can be tested, and why not."""
from _common import setup

setup(snakemake)
import anndata as ad

from degflow import pseudobulk
from degflow.io import write_tsv
from degflow.report import html_table
from degflow.singlecell import ondisk

p, out = snakemake.params, snakemake.output
if ondisk.wanted(p.scale["on_disk"], ondisk.h5ad_cells(snakemake.input[0])):  # atlas size: counts streamed
    pb = ondisk.aggregate(snakemake.input[0], groupby=p.groupby, sample_key=p.sample_key, min_cells=p.min_cells,
                          min_counts=p.min_counts, chunk_cells=p.scale["chunk_cells"])
else:
    adata = ad.read_h5ad(snakemake.input[0])
    pb = pseudobulk.aggregate(adata, groupby=p.groupby, sample_key=p.sample_key, min_cells=p.min_cells,
                              min_counts=p.min_counts)
cell_types = pseudobulk.testable(pb, design=p.design, contrasts=p.contrasts, groupby=p.groupby,
                                 min_replicates=p.min_replicates)
pb.write_h5ad(out.h5ad)
write_tsv(cell_types, out.cell_types)
skipped = cell_types.loc[~cell_types["tested"], ["cell_type", "n_cells", "n_pseudo_samples", "replicates", "reason"]]
write_tsv(skipped, out.skipped)
with open(out.skipped_html, "w") as fh:
    fh.write(html_table(cell_types.drop(columns="folder"), title="Cell types tested for differential expression"))
