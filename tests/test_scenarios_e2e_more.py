"""New-user scenario suite end to end (issue 18), part 2: other designs, per-sample count files, single cell.

Each test writes the user's files (small subsets of the real data of tests/test_scenarios.py's shapes), runs
snakemake and ``--report`` in its own folder (tests/scenario_e2e.py), checks that every output exists and is
non-empty, then what could go wrong with its shape. Part 1 (the airway matrix's shapes) is
tests/test_scenarios_e2e_bulk.py.
"""

from __future__ import annotations

import gzip
import shutil

import anndata as ad
import numpy as np
import pandas as pd

from scenario_e2e import DEX, airway_files, bulk_table, run_experiment, subset_10x_h5, write


def test_e2e_continuous_covariate(tmp_path, repo):
    """avgLength (GEO's mean read length per run) as a numeric covariate beside dex."""
    counts, sheet, _ = airway_files()
    meta = pd.read_csv(repo / "resources" / "airway" / "samples.tsv", sep="\t", dtype=str).set_index("sample_id")
    sheet = sheet.assign(avgLength=meta["avgLength"].reindex(sheet["sample_id"]).to_numpy())
    results = run_experiment(tmp_path, {"bulk": {**write(tmp_path, counts, sheet), "design": "~ avgLength + dex",
                                                 "reference_levels": {"dex": "untrt"},
                                                 "contrasts": {"dex_vs_untrt": ["dex", "trt", "untrt"]}}})
    obs = ad.read_h5ad(results / "bulk" / "counts" / "dataset.h5ad", backed="r").obs
    assert obs["avgLength"].dtype.kind == "f"  # a covariate, not a factor of its distinct lengths
    pca = pd.read_csv(results / "bulk" / "qc" / "pca.tsv", sep="\t")
    assert "dex" in pca.columns and len(pca) == 8
    assert bulk_table(results, "dex_vs_untrt")["padj"].notna().sum() > 500


def test_e2e_four_arms(tmp_path, repo):
    """GSE121659: control, disease model and two treated arms; contrasts between non-reference levels."""
    counts = pd.read_csv(repo / "resources" / "gse121659" / "counts.tsv", sep="\t", index_col=0).iloc[:2000]
    sheet = pd.read_csv(repo / "config" / "examples" / "gse121659_samples.tsv", sep="\t", dtype=str)
    contrasts = {"model_vs_control": ["group", "model", "control"],
                 "ehp_vs_control": ["group", "treated_ehp101", "control"],
                 "ehp_vs_model": ["group", "treated_ehp101", "model"],
                 "aja_vs_model": ["group", "treated_aja", "model"]}
    results = run_experiment(tmp_path, {"bulk": {
        **write(tmp_path, counts, sheet), "design": "~ group", "reference_levels": {"group": "control"},
        "annotation": str(repo / "resources" / "gse121659" / "genes.tsv"), "contrasts": contrasts}})
    summary = pd.read_csv(results / "bulk" / "de" / "summary.tsv", sep="\t")
    assert list(summary.iloc[:, 0]) == list(contrasts)
    lfc = {c: bulk_table(results, c).set_index("gene_id")["log2FoldChange"] for c in contrasts}
    # ehp - model = (ehp - control) - (model - control), on genes counted in every sample of the three arms
    arms = sheet.loc[sheet["group"].isin(["control", "model", "treated_ehp101"]), sheet.columns[0]]
    expressed = counts.index[(counts[list(arms)] > 0).all(axis=1)].astype(str)
    diff = (lfc["ehp_vs_control"] - lfc["model_vs_control"]).reindex(expressed).dropna()
    assert len(diff) > 800
    np.testing.assert_allclose(lfc["ehp_vs_model"].reindex(diff.index), diff, atol=1e-5)
    assert bulk_table(results, "model_vs_control")["gene_name"].iloc[0] == "Xkr4"


def test_e2e_star_versioned_ensembl_ids(tmp_path, repo, core_data):
    """STAR ReadsPerGene files (GENCODE IDs with versions) and an annotation without versions."""
    star = core_data / "count_formats" / "star" / "mouse_tcell_bbcRNA"
    sheet = pd.read_csv(repo / "config" / "examples" / "star_tcell_samples.tsv", sep="\t", dtype=str)
    (tmp_path / "star").mkdir(parents=True)
    for path in sheet["counts_path"]:  # the 4 N_ rows and the first 6,000 genes of each sample
        name = path.rsplit("/", 1)[1]
        lines = gzip.decompress((star / name).read_bytes()).decode().splitlines(keepends=True)[:6004]
        (tmp_path / "star" / name).write_bytes(gzip.compress("".join(lines).encode()))
        log = name.replace("ReadsPerGene.out.tab.gz", "Log.final.out")
        shutil.copy(star / log, tmp_path / "star" / log)
    sheet["counts_path"] = ["star/" + p.rsplit("/", 1)[1] for p in sheet["counts_path"]]
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    ann = pd.read_csv(repo / "resources" / "gse121659" / "genes.tsv", sep="\t", dtype=str)
    ann = ann.loc[ann["ensembl_gene_id"].fillna("") != "", ["ensembl_gene_id", "symbol"]]
    ann = ann.drop_duplicates("ensembl_gene_id", keep=False).rename(columns={"ensembl_gene_id": "gene_id"})
    ann.to_csv(tmp_path / "genes.tsv", sep="\t", index=False)
    results = run_experiment(tmp_path, {"bulk": {
        "counts": {"path": None, "format": "star"}, "samples": "samples.tsv", "annotation": "genes.tsv",
        "design": "~ genotype", "reference_levels": {"genotype": "WT"},
        "contrasts": {"mut_vs_WT": ["genotype", "mut", "WT"]}, "filter": {"min_count": 10, "min_samples": 4}}})
    tab = bulk_table(results, "mut_vs_WT")
    assert tab["gene_id"].str.match(r"^ENSMUSG\d+\.\d+$").all() and len(tab) > 300
    named = tab.loc[tab["gene_name"].notna() & (tab["gene_name"] != tab["gene_id"])]
    assert len(named) > 0.5 * len(tab)
    expect = ann.set_index("gene_id")["symbol"]
    assert (named["gene_name"].to_numpy()
            == expect.reindex(named["gene_id"].str.replace(r"\.\d+$", "", regex=True)).to_numpy()).all()
    strand = pd.read_csv(results / "bulk" / "qc" / "strandedness.tsv", sep="\t", dtype=str)
    assert sorted(strand.iloc[:, 0]) == sorted(sheet["sample"])


def test_e2e_per_sample_htseq_files(tmp_path, shared_data):
    """htseq-count's per-sample files (airway GSE52778, 2 cell lines x untreated/dexamethasone), paired design."""
    d = shared_data / "count_formats" / "htseq" / "airway_GSE52778"
    sheet = pd.DataFrame({"sample": ["SRR1039508", "SRR1039509", "SRR1039512", "SRR1039513"],
                          "cell": ["N61311", "N61311", "N052611", "N052611"],
                          "dex": ["untrt", "trt", "untrt", "trt"]})
    (tmp_path / "htseq").mkdir(parents=True)
    for s in sheet["sample"]:  # the first 3,000 genes and htseq-count's __ summary rows
        lines = (d / f"{s}_all_counts.txt").read_text().splitlines(keepends=True)
        (tmp_path / "htseq" / f"{s}.txt").write_text("".join(lines[:3000] + [ln for ln in lines
                                                                            if ln.startswith("__")]))
    sheet["counts_path"] = [f"htseq/{s}.txt" for s in sheet["sample"]]
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    results = run_experiment(tmp_path, {"bulk": {"counts": {"path": None}, "samples": "samples.tsv", **DEX}})
    tab = bulk_table(results, "dex_vs_untrt")
    assert not tab["gene_id"].str.startswith("__").any() and len(tab) > 0.8 * 3000
    assert tab["padj"].notna().sum() > 300
    qc = pd.read_csv(results / "bulk" / "qc" / "quantifier_qc.tsv", sep="\t", dtype=str)
    assert list(qc.iloc[:, 0]) == list(sheet["sample"])


def test_e2e_bd_rhapsody_with_sample_tags(tmp_path, core_data):
    """BD Rhapsody targeted panel (rustody test data): two cartridges, DBEC counts and sample-tag calls."""
    d = core_data / "bd_rhapsody_rustody_targeted"
    rows = [{"sample": s, "path": str(d / f"Combined_{s}Subset_DBEC_MolsPerCell.csv"), "format": "bd_rhapsody",
             "bd_sample_tags": str(d / f"{s}Subset_Sample_Tag_Calls.csv"), "condition": c}
            for s, c in (("S1", "a"), ("S2", "b"))]
    tmp_path.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(tmp_path / "sc_samples.tsv", sep="\t", index=False)
    results = run_experiment(tmp_path, {"singlecell": {
        "samples": "sc_samples.tsv", "markers": None,
        "qc": {"min_genes": 10, "max_genes": None, "max_pct_mt": None, "min_cells": 3},
        "doublets": {"method": "scrublet", "remove": False}, "hvg": {"flavor": "seurat_v3", "n_top_genes": 200},
        "pca": {"n_comps": 15}, "neighbors": {"n_pcs": 15, "n_neighbors": 10}, "leiden_resolutions": [1.0],
        "marker_test": {"n_genes": 20}}})
    obs = ad.read_h5ad(results / "singlecell" / "adata.h5ad", backed="r").obs
    tags = pd.read_csv(d / "S1Subset_Sample_Tag_Calls.csv", comment="#", dtype=str).set_index("Cell_Index")
    s1 = obs.loc[obs["sample"] == "S1"]
    assert len(s1) > 50 and s1["sample_tag"].notna().all()
    called = tags["Sample_Tag"].reindex(s1.index.str.removeprefix("S1_")).to_numpy()
    assert (s1["sample_tag"].to_numpy() == called).all()
    sizes = pd.read_csv(results / "singlecell" / "cluster_sizes.tsv", sep="\t")
    assert sizes["n_cells"].sum() == len(obs) and set(sizes["clustering"]) == {"leiden_1.0"}


def test_e2e_two_10x_h5_samples_without_markers(tmp_path, shared_data):
    """Kang 2018 donor 101, control and IFN-beta stimulated (Cell Ranger .h5 each, first 300 cells), no markers."""
    d = shared_data / "kang2018_ifnb_8donors_h5"
    (tmp_path / "h5").mkdir(parents=True)
    for s in ("ctrl", "stim"):
        subset_10x_h5(d / f"s101_{s}.h5", tmp_path / "h5" / f"s101_{s}.h5", 300)
    rows = [{"sample": s, "path": f"h5/s101_{s}.h5", "condition": s} for s in ("ctrl", "stim")]
    pd.DataFrame(rows).to_csv(tmp_path / "sc_samples.tsv", sep="\t", index=False)
    results = run_experiment(tmp_path, {"singlecell": {
        "samples": "sc_samples.tsv", "markers": None, "qc": {"min_genes": 200, "max_genes": None, "max_pct_mt": None},
        "hvg": {"flavor": "seurat_v3", "n_top_genes": 1000}, "pca": {"n_comps": 15},
        "neighbors": {"n_pcs": 15}, "leiden_resolutions": [1.0], "marker_test": {"n_genes": 20}}})
    obs = ad.read_h5ad(results / "singlecell" / "adata.h5ad", backed="r").obs
    assert "cell_type" not in obs.columns and list(obs["sample"].cat.categories) == ["ctrl", "stim"]
    assert obs.index.is_unique and obs.index.str.match(r"^(ctrl|stim)_").all() and len(obs) > 400
    sizes = pd.read_csv(results / "singlecell" / "cluster_sizes.tsv", sep="\t")
    assert sizes["n_cells"].sum() == len(obs) and (sizes["n_ctrl"] + sizes["n_stim"] == sizes["n_cells"]).all()
    assert not (results / "singlecell" / "annotation_scores.tsv").exists()
