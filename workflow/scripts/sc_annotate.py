"""Name the cells: each cluster after the cell type of the marker YAML it expresses most (obs cell_type; the score
table with the mixed clusters flagged), and/or the labels transferred from a reference (obs cell_type_reference)."""
from _common import note, setup

setup(snakemake)
import anndata as ad

from degflow.io.tables import read_tsv, write_tsv
from degflow.report import html_table
from degflow.singlecell.annotate import add_reference_labels, annotate, load_markers

p = snakemake.params
adata = ad.read_h5ad(snakemake.input.h5ad)
if "markers" in snakemake.input.keys():
    markers = load_markers(snakemake.input.markers)
    table = annotate(adata, markers, groupby=p.groupby, min_score=p.min_score,
                     min_margin=p.min_margin).reset_index()
    absent = [t for t, genes in markers.items() if not any(g in adata.var_names for g in genes)]
    for cell_type in absent:  # a type with no marker gene in the data can never be assigned
        note(f"cell type '{cell_type}' of {snakemake.input.markers} has none of its marker genes in the data "
             f"({', '.join(markers[cell_type][:5])}): it cannot be assigned (its score column is empty)")
    missing = adata.uns["degflow"]["annotate"]["missing_genes"]
    caption = (f"Marker genes not in the data ({len(missing)}): {', '.join(missing[:30])}"
               f"{' ...' if len(missing) > 30 else ''}. " if len(missing) else "")
    caption += (f"Cell types with none of their markers in the data, never assigned: {', '.join(absent)}."
                if absent else "")
    write_tsv(table, snakemake.output[0])
    with open(snakemake.output[1], "w") as fh:
        fh.write(html_table(table, title=f"Cell-type scores of the {p.groupby} clusters", caption=caption))
if "reference" in snakemake.input.keys():
    labels = read_tsv(snakemake.input.reference, dtype={"cell": str, "cell_type_reference": str})
    order = read_tsv(snakemake.input.reference_summary, dtype={"label": str})["label"]
    add_reference_labels(adata, labels, categories=list(order))
adata.write_h5ad(snakemake.output.h5ad)
