"""Raw counts summed per sample x cell type (pseudobulk h5ad); which cell types can be tested, and why not."""
from _common import setup

setup(snakemake)
from degflow.io.tables import write_tsv
from degflow.pseudobulk.steps import aggregate

p, out = snakemake.params, snakemake.output
pb, cell_types, skipped, html = aggregate(snakemake.input[0], groupby=p.groupby, sample_key=p.sample_key,
                                          min_cells=p.min_cells, min_counts=p.min_counts, design=p.design,
                                          contrasts=p.contrasts, min_replicates=p.min_replicates, scale=p.scale)
pb.write_h5ad(out.h5ad)
write_tsv(cell_types, out.cell_types)
write_tsv(skipped, out.skipped)
with open(out.skipped_html, "w") as fh:
    fh.write(html)
