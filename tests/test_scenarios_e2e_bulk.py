"""New-user scenario suite end to end (issue 18), part 1: the airway matrix in the shapes users bring it.

Each test writes the user's files (the first 1,500 airway genes, as tests/test_scenarios.py's shapes), runs
snakemake and ``--report`` in its own folder (tests/scenario_e2e.py), checks that every output exists and is
non-empty, then what could go wrong with its shape. The plain matrix without annotation is
tests/test_new_user.py's run; tests/test_scenarios_e2e_more.py has the other designs, count formats and the
single-cell shapes.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import anndata as ad
import pandas as pd

from scenario_e2e import DEX, airway_files, bulk_table, run_experiment, write


def sample_column(path: Path) -> list[str]:
    return list(pd.read_csv(path, sep="\t", dtype=str).iloc[:, 0])


def test_e2e_annotated_matrix(tmp_path):
    """Ensembl IDs + bulk.annotation (the bundled example's shape): gene names from the annotation."""
    counts, sheet, genes = airway_files()
    genes.to_csv(tmp_path / "genes.tsv", sep="\t")
    results = run_experiment(tmp_path, {"bulk": {**write(tmp_path, counts, sheet), "annotation": "genes.tsv", **DEX}})
    tab = bulk_table(results, "dex_vs_untrt")
    assert (tab["gene_name"].to_numpy() == genes["symbol"].reindex(tab["gene_id"]).to_numpy()).all()
    deg = bulk_table(results, "dex_vs_untrt", "deg.tsv")
    assert len(deg) > 10 and set(deg["gene_name"]) <= set(genes["symbol"])


def test_e2e_gene_symbols_as_ids(tmp_path):
    counts, sheet, genes = airway_files()
    results = run_experiment(tmp_path, {"bulk": {**write(tmp_path, counts.rename(index=genes["symbol"]), sheet),
                                                 **DEX}})
    tab = bulk_table(results, "dex_vs_untrt")
    assert set(tab["gene_id"]) <= set(genes["symbol"]) and len(tab) > 1000
    assert (tab["gene_name"] == tab["gene_id"]).all()
    norm = pd.read_csv(results / "bulk" / "counts" / "normalized_counts.tsv", sep="\t", index_col=0)
    assert set(norm.index) <= set(genes["symbol"])


def test_e2e_csv_with_gene_name_column(tmp_path):
    """A CSV whose second column is the gene symbol: the names come from it."""
    counts, sheet, genes = airway_files()
    csv = counts.copy()
    csv.insert(0, "symbol", genes["symbol"])
    results = run_experiment(tmp_path, {"bulk": {**write(tmp_path, csv, sheet, name="counts.csv"), **DEX}})
    tab = bulk_table(results, "dex_vs_untrt")
    assert tab["gene_id"].str.startswith("ENSG").all()
    assert (tab["gene_name"].to_numpy() == genes["symbol"].reindex(tab["gene_id"]).to_numpy()).all()


def test_e2e_name_column_and_annotation_file(tmp_path):
    """Both a name column in the counts and bulk.annotation: the annotation file's names win."""
    counts, sheet, genes = airway_files()
    tsv = counts.copy()
    tsv.insert(0, "symbol", "lab_" + genes["symbol"])
    genes.to_csv(tmp_path / "genes.tsv", sep="\t")
    results = run_experiment(tmp_path, {"bulk": {**write(tmp_path, tsv, sheet), "annotation": "genes.tsv", **DEX}})
    for name in ("results.tsv", "deg.tsv"):
        tab = bulk_table(results, "dex_vs_untrt", name)
        assert not tab["gene_name"].str.startswith("lab_").any(), name
        assert (tab["gene_name"].to_numpy() == genes["symbol"].reindex(tab["gene_id"]).to_numpy()).all(), name


def test_e2e_sheet_with_unused_na_columns(tmp_path):
    """A lab sheet with RIN and comment columns, partly NA/empty, not in the design: carried along, not levels."""
    counts, sheet, _ = airway_files()
    sheet = sheet.assign(rin=["9.8", "NA", "9.6", "", "9.9", "N/A", "9.7", "9.7"],
                         comment=["", "NA", "re-sequenced", "", "", "", "NA", ""])
    results = run_experiment(tmp_path, {"bulk": {**write(tmp_path, counts, sheet), **DEX}})
    obs = ad.read_h5ad(results / "bulk" / "counts" / "dataset.h5ad", backed="r").obs
    assert int(obs["rin"].isna().sum()) == 3 and len(obs) == 8
    assert len(bulk_table(results, "dex_vs_untrt", "deg.tsv")) > 10


def test_e2e_excluded_sample(tmp_path):
    """bulk.exclude leaves a failed library out of every table; it stays in the sheet and the counts."""
    counts, sheet, _ = airway_files()
    results = run_experiment(tmp_path, {"bulk": {**write(tmp_path, counts, sheet), **DEX, "exclude": ["SRR1039521"]}})
    kept = [s for s in sheet["sample_id"] if s != "SRR1039521"]
    assert sample_column(results / "bulk" / "counts" / "size_factors.tsv") == kept
    norm = pd.read_csv(results / "bulk" / "counts" / "normalized_counts.tsv", sep="\t", index_col=0, nrows=1)
    assert list(norm.columns) == kept
    for table in ("pca.tsv", "sample_qc.tsv", "sample_distances.tsv"):
        assert sorted(sample_column(results / "bulk" / "qc" / table)) == sorted(kept), table
    assert bulk_table(results, "dex_vs_untrt")["padj"].notna().sum() > 500


def test_e2e_gzipped_counts(tmp_path):
    """counts.tsv.gz as downloaded from GEO."""
    counts, sheet, _ = airway_files()
    files = write(tmp_path, counts, sheet)
    (tmp_path / "counts.tsv.gz").write_bytes(gzip.compress((tmp_path / "counts.tsv").read_bytes()))
    (tmp_path / "counts.tsv").unlink()
    results = run_experiment(tmp_path, {"bulk": {**files, "counts": "counts.tsv.gz", **DEX}})
    tab = bulk_table(results, "dex_vs_untrt")
    assert set(tab["gene_id"]) <= set(counts.index) and len(tab) > 0.8 * len(counts)
    assert len(bulk_table(results, "dex_vs_untrt", "deg.tsv")) > 10


def test_e2e_numeric_sample_names(tmp_path):
    """Samples called 1..8: kept as the strings they are in every table, never 1.0 or reordered, and every rule
    that reads size_factors.tsv back finds them (it once read them as integers and got NaN size factors)."""
    counts, sheet, _ = airway_files()
    names = {s: str(i + 1) for i, s in enumerate(sheet["sample_id"])}
    files = write(tmp_path, counts.rename(columns=names), sheet.assign(sample_id=sheet["sample_id"].map(names)))
    results = run_experiment(tmp_path, {"bulk": {**files, **DEX}})
    want = [str(i) for i in range(1, 9)]
    assert sample_column(results / "bulk" / "counts" / "size_factors.tsv") == want
    norm = pd.read_csv(results / "bulk" / "counts" / "normalized_counts.tsv", sep="\t", index_col=0, nrows=1)
    assert list(norm.columns) == want
    assert sorted(sample_column(results / "bulk" / "qc" / "pca.tsv"), key=int) == want
