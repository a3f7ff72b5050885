"""One sample: read its counts (genes of qc/genes.tsv), QC metrics, remove low-quality cells, then scrublet doublets."""
from _common import setup

threads = setup(snakemake)
import pandas as pd

from degflow.io.singlecell import qc_overrides, read_samples, validate_sample_sheet
from degflow.io.tables import read_tsv, write_tsv
from degflow.singlecell.qc import doublets, qc_filter, qc_metrics

p, out, d = snakemake.params, snakemake.output, snakemake.params.doublets
sheet = validate_sample_sheet(pd.DataFrame([p.row]), source=p.sheet)
genes = read_tsv(snakemake.input.genes, dtype={"gene": str})
adata = read_samples(sheet)[:, genes.loc[genes["kept"], "gene"].to_numpy()].copy()
qc_metrics(adata)
kept, removed = qc_filter(adata, min_cells=None, overrides=qc_overrides(sheet), **p.qc)  # genes: sc_genes
write_tsv(adata.obs.assign(passed_qc=adata.obs_names.isin(kept.obs_names)).rename_axis("cell"), out.qc_cells,
          index=True)
write_tsv(removed, out.qc_removed)
table = pd.DataFrame(columns=["sample", "n_cells", "n_doublets", "threshold", "removed", "n_after"])
if d["method"] == "scrublet":
    kept, table = doublets(kept, batch_key="sample", remove=d["remove"], seed=p.seed, n_threads=threads,
                           expected_doublet_rate=d["expected_rate"], threshold=d["threshold"])
write_tsv(table, out.doublets)
kept.write_h5ad(out.cells)
