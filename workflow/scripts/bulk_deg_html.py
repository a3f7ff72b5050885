"""A contrast's DEG table as a searchable, sortable HTML page for the report."""
from _common import setup

setup(snakemake)
from degflow.bulk.de import deg_page
from degflow.io.tables import read_tsv

deg = read_tsv(snakemake.input[0], dtype={"gene_name": str})
with open(snakemake.output[0], "w") as fh:
    fh.write(deg_page(deg, contrast=snakemake.wildcards.contrast, thresholds=snakemake.params.thresholds))
