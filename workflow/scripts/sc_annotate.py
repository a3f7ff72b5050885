"""Name the cells: each cluster after the cell type of the marker YAML it expresses most (obs cell_type; the score
table with the mixed clusters flagged), and/or the labels transferred from a reference (obs cell_type_reference)."""
from _common import setup

setup(snakemake)
from degflow.io.tables import read_tsv, write_tsv
from degflow.singlecell import annotate as sc_annotate
from degflow.singlecell import scale
from degflow.singlecell.steps import annotate_with_markers

p, i = snakemake.params, snakemake.input
markers = sc_annotate.load_markers(i.markers) if "markers" in i.keys() else {}
adata = scale.annotation_cells(i.h5ad, scale=p.scale, genes=[g for genes in markers.values() for g in genes])
if "markers" in i.keys():
    table, html = annotate_with_markers(adata, markers, markers_file=i.markers, groupby=p.groupby,
                                        min_score=p.min_score, min_margin=p.min_margin)
    write_tsv(table, snakemake.output[0])
    with open(snakemake.output[1], "w") as fh:
        fh.write(html)
if "reference" in i.keys():
    labels = read_tsv(i.reference, dtype={"cell": str, "cell_type_reference": str})
    order = read_tsv(i.reference_summary, dtype={"label": str})["label"]
    sc_annotate.add_reference_labels(adata, labels, categories=list(order))
scale.write_annotated(adata, i.h5ad, snakemake.output.h5ad, scale=p.scale)
