"""Per-sample QC table (library size, detected genes, top-100 share, mito share, quantifier rates) and bars."""
from _common import setup

setup(snakemake)
from degflow.bulk import qc
from degflow.io.tables import read_bulk_dataset, read_tsv, write_tsv
from degflow.pl import bulk as plots
from degflow.pl.base import save
from degflow.report import html_table

data, counts = read_bulk_dataset(snakemake.input.dataset)
quant = read_tsv(snakemake.input.quantifier_qc).set_index("sample")
table = qc.sample_qc(counts, gene_names=data.var["gene_name"].replace("", None),
                     quantifier_qc=quant if quant.shape[1] else None)
table.index.name = "sample"
write_tsv(table, snakemake.output.table, index=True)
with open(snakemake.output.html, "w") as fh:
    fh.write(html_table(table.reset_index(), title="Sample QC"))
save(plots.qc_bars(table), snakemake.output.png, snakemake.output.pdf)
