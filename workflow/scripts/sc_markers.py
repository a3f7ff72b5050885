"""Marker genes of every group of one clustering against all other cells (Wilcoxon by default): TSV + HTML page."""
from _common import note, setup

setup(snakemake)
import anndata as ad

from degflow import single_cell as scm
from degflow.io import write_tsv
from degflow.report import html_table
from degflow.singlecell import ondisk

t, grouping = snakemake.params.test, snakemake.wildcards.grouping
scale = snakemake.params.scale
if ondisk.wanted(scale["on_disk"], ondisk.h5ad_cells(snakemake.input[0])):  # atlas size: a capped sample per group
    cap = scale["marker_cells_per_group"]
    table, capped = ondisk.markers(snakemake.input[0], grouping, method=t["method"], n_genes=t["n_genes"],
                                   max_cells_per_group=cap, seed=snakemake.params.seed,
                                   chunk_cells=scale["chunk_cells"])
    if capped:
        note(f"markers of {grouping}: {len(capped)} group(s) larger than {cap} cells tested on a random {cap} of "
             "their cells (singlecell.scale.marker_cells_per_group)")
else:
    adata = ad.read_h5ad(snakemake.input[0])
    table = scm.markers(adata, grouping, method=t["method"], n_genes=t["n_genes"])
write_tsv(table, snakemake.output.table)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(table, title=f"Marker genes: {grouping}"))
