"""Per-sample QC table (library size, detected genes, top-100 share, mito share, quantifier rates) and bars."""
from _common import setup

setup(snakemake)
from degflow.bulk.figures import sample_qc
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv
from degflow.pl.base import save

data, counts = read_bulk_dataset(snakemake.input.dataset)
table, html, fig = sample_qc(data, counts, read_tsv(snakemake.input.quantifier_qc).set_index("sample"))
write_tsv(table, snakemake.output.table, index=True)
with open(snakemake.output.html, "w") as fh:
    fh.write(html)
save(fig, snakemake.output.png, snakemake.output.pdf)
