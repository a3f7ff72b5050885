"""One sample: read its counts (genes of qc/genes.tsv), QC metrics, remove low-quality cells, then scrublet doublets."""
from _common import setup

threads = setup(snakemake)
import pandas as pd

from degflow.io import singlecell as sc_io
from degflow.io.singlecell import qc_overrides, validate_sample_sheet
from degflow.io.tables import read_tsv, write_tsv
from degflow.singlecell.steps import sample_qc

p, out = snakemake.params, snakemake.output
sheet = validate_sample_sheet(pd.DataFrame([p.row]), source=p.sheet)
genes = read_tsv(snakemake.input.genes, dtype={"gene": str})
cells, removed, doublets, kept = sample_qc(sc_io.read_samples(sheet), genes, overrides=qc_overrides(sheet), qc=p.qc,
                                           doublets=p.doublets, seed=p.seed, n_threads=threads)
write_tsv(cells, out.qc_cells, index=True)
write_tsv(removed, out.qc_removed)
write_tsv(doublets, out.doublets)
kept.write_h5ad(out.cells)
