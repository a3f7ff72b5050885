"""Pseudobulk DE per cell type on real data (Kang et al. 2018, IFN-beta vs control PBMCs), workflow and library.

One real snakemake run of config/examples/kang2018.yaml restricted to 4 of its 8 donors (8 of the 16 files, ~9,200
cells; one Leiden resolution), from the raw 10x h5 files through degflow's own clustering and annotation to the
pseudobulk tables. Expected biology: shared/data/kang2018_ifnb_8donors_h5/SOURCE.md (interferon-stimulated genes
up in every cell type, CD14 down in CD14+ monocytes). Bad input goes through plan_pseudobulk / aggregate.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from degflow.errors import DegflowInputError
from degflow.plan.pseudobulk import plan_pseudobulk
from degflow.plan.schema import validate_config
from degflow.plan.singlecell import plan_singlecell
from degflow.pseudobulk import aggregate as pseudobulk

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
pytestmark = pytest.mark.workflow

DONORS = ["s101", "s107", "s1016", "s1039"]
#: Cell types the annotation finds robustly (on 4 donors CD8 T cells may merge into the NK / CD4 T clusters).
MAJOR = ["CD4 T cells", "NK cells", "B cells", "CD14+ Monocytes", "FCGR3A+ Monocytes"]
ISGS = ["ISG15", "IFI6", ("IFIT1", "IFIT3"), "MX1", "ISG20", "LY6E"]
BULK_COLUMNS = ["gene_id", "gene_name", "baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj", "regulation"]


#: Seurat's PBMC 3k labels -> the names Kang et al. use (naive and memory CD4 T are both CD4 T cells).
SEURAT_TO_KANG = {"Naive CD4 T": "CD4 T cells", "Memory CD4 T": "CD4 T cells", "CD8 T": "CD8 T cells",
                  "B": "B cells", "CD14+ Mono": "CD14+ Monocytes", "FCGR3A+ Mono": "FCGR3A+ Monocytes",
                  "NK": "NK cells", "DC": "Dendritic cells", "Platelet": "Megakaryocytes"}


def pbmc3k_reference(repo: Path, work: Path) -> Path:
    """PBMC 3k raw counts with the Seurat tutorial's labels, as `python -m degflow.singlecell.make_reference` writes it."""
    from degflow.singlecell.make_reference import main

    out = work / "pbmc3k_reference.h5ad"
    if not out.exists():
        main([str(repo / "resources/pbmc3k/filtered_min3cells_v3"),
              str(repo / "resources/pbmc3k/seurat_pbmc3k_final_annotations.csv"), str(out)])
    return out


def kang_config(repo: Path, shared: Path, work: Path, donors=DONORS, **pb_overrides) -> Path:
    """config/examples/kang2018.yaml on some donors, absolute paths, results in ``work``; labels also transferred
    from the PBMC 3k reference (singlecell.reference)."""
    cfg = yaml.safe_load((repo / "config/examples/kang2018.yaml").read_text())
    sheet = pd.read_csv(repo / "config/examples/kang2018_samples.tsv", sep="\t")
    sheet = sheet[sheet["donor"].isin(donors)].copy()
    sheet["path"] = [str(shared / "kang2018_ifnb_8donors_h5" / f"{s}.h5") for s in sheet["sample"]]
    sheet.to_csv(work / "samples.tsv", sep="\t", index=False)
    sc = cfg["singlecell"]
    sc.update(samples=str(work / "samples.tsv"), markers=str(repo / sc["markers"]), leiden_resolutions=[1.0])
    sc["reference"] = {"path": str(pbmc3k_reference(repo, work)), "label_key": "seurat_annotation"}
    sc["pseudobulk"].update(pb_overrides)
    (work / "config.yaml").write_text(yaml.safe_dump({"results": str(work / "results"), "singlecell": sc}))
    return work / "config.yaml"


def snakemake(repo: Path, work: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(SNAKEMAKE), "-s", str(repo / "Snakefile"), "--configfile", "config.yaml", *args],
                          cwd=work, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def kang(repo, shared_data, tmp_path_factory) -> Path:
    """results/ of the 4-donor Kang run (single-cell + pseudobulk in one snakemake call)."""
    work = tmp_path_factory.mktemp("kang")
    kang_config(repo, shared_data, work)
    proc = snakemake(repo, work, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-5000:]
    return work / "results"


@pytest.fixture(scope="module")
def cell_types(kang) -> pd.DataFrame:
    return pd.read_csv(kang / "pseudobulk/cell_types.tsv", sep="\t").set_index("cell_type")


def results(kang: Path, cell_types: pd.DataFrame, cell_type: str) -> pd.DataFrame:
    return pd.read_csv(kang / "pseudobulk" / cell_types.loc[cell_type, "folder"] / "stim_vs_ctrl/results.tsv",
                       sep="\t")


# ---------------------------------------------------------------------------------------------
# the workflow on real data
# ---------------------------------------------------------------------------------------------


def test_outputs(kang, cell_types):
    for rel in ("pseudobulk.h5ad", "summary.tsv", "summary.html", "skipped.tsv", "skipped.html", "deg_counts.png",
                "deg_counts.pdf", "proportions.tsv", "proportions.html", "proportions.png", "proportions.pdf"):
        assert (kang / "pseudobulk" / rel).stat().st_size > 0, rel
    for folder in cell_types.loc[cell_types["tested"], "folder"]:
        for name in ("results.tsv", "deg.tsv", "deg.html", "volcano.png", "volcano.pdf"):
            assert (kang / "pseudobulk" / folder / "stim_vs_ctrl" / name).stat().st_size > 0, (folder, name)
    assert all(pseudobulk.cell_type_folders([f])[f] == f for f in cell_types["folder"])  # filesystem-safe


def test_aggregation_equals_an_independent_sum(kang):
    cells = ad.read_h5ad(kang / "singlecell/adata.h5ad")
    pb = ad.read_h5ad(kang / "pseudobulk/pseudobulk.h5ad")
    assert list(pb.var_names) == list(cells.var_names)
    counts = cells.layers["counts"].tocsr()
    X = pb.X.toarray() if sp.issparse(pb.X) else np.asarray(pb.X)
    pairs = cells.obs.groupby(["sample", "cell_type"], observed=True).indices
    assert len(pairs) == pb.n_obs
    for (sample, cell_type), idx in pairs.items():
        row = pb.obs_names.get_loc(f"{sample}|{cell_type}")
        expected = np.asarray(counts[idx].sum(axis=0), dtype=np.float64).ravel()
        np.testing.assert_array_equal(X[row], expected)
        assert pb.obs["n_cells"].iloc[row] == len(idx)
    assert pb.X.dtype == np.int64
    assert X.sum() == pytest.approx(float(counts.sum()))


def test_replicates_are_the_donors(kang, cell_types):
    """Every major cell type is tested on 8 pseudo-samples: 4 donors x 2 conditions, paired."""
    for ct in MAJOR:
        assert cell_types.loc[ct, "tested"], (ct, cell_types.loc[ct, "reason"])
        assert cell_types.loc[ct, "n_pseudo_samples"] == 2 * len(DONORS)
        assert cell_types.loc[ct, "replicates"] == "condition=ctrl: 4, condition=stim: 4"
    pb = ad.read_h5ad(kang / "pseudobulk/pseudobulk.h5ad")
    mono = pb.obs[(pb.obs["cell_type"] == "CD14+ Monocytes") & pb.obs["passed"]]
    assert sorted(mono["donor"]) == sorted(DONORS * 2)


def test_reference_labels_agree_with_the_authors(kang, shared_data):
    """PBMC 3k (Seurat labels) as reference, Kang as query: the authors' labels of the muscat-subset cells (donors
    101 and 107, 5 types) are recovered for most confident cells; measured numbers in the README."""
    cells = ad.read_h5ad(kang / "singlecell/adata.h5ad")
    assert {"cell_type", "cell_type_reference", "cell_type_reference_confidence"} <= set(cells.obs.columns)
    conf = cells.obs["cell_type_reference_confidence"].to_numpy()
    unassigned = (cells.obs["cell_type_reference"] == "Unassigned").to_numpy()
    assert ((conf < 0.5) == unassigned).all() and (conf <= 1).all() and (conf > 0).all()
    meta = pd.read_csv(shared_data / "kang2018_muscat_subset/cell_metadata.csv")
    meta.index = [f"s{d}_{g}_{b}" for d, g, b in zip(meta["donor"], meta["group_id"], meta["barcode"], strict=True)]
    meta = meta[meta.index.isin(cells.obs_names)]
    assert len(meta) > 1400  # 1,556 in the subset; a few are removed by degflow's QC or scrublet
    got = cells.obs.loc[meta.index, "cell_type_reference"].astype(str).map(lambda x: SEURAT_TO_KANG.get(x, x))
    called = (got != "Unassigned").to_numpy()
    agree = (got.to_numpy() == meta["cluster_id"].to_numpy())[called].mean()
    assert called.mean() > 0.85 and agree > 0.65, (called.mean(), agree)
    for ct in ("B cells", "CD4 T cells", "CD14+ Monocytes"):
        sel = called & (meta["cluster_id"] == ct).to_numpy()
        assert (got.to_numpy()[sel] == ct).mean() > 0.5, ct
    labels = pd.read_csv(kang / "singlecell/reference/labels.tsv", sep="\t")
    assert list(labels.columns) == ["cell", "cell_type_reference", "confidence"] and len(labels) == cells.n_obs
    summary = pd.read_csv(kang / "singlecell/reference/summary.tsv", sep="\t").set_index("label")
    assert summary["n_cells"].sum() == cells.n_obs and summary.loc["Naive CD4 T", "n_reference"] == 697
    assert (kang / "singlecell/umap/cell_type_reference.png").stat().st_size > 0
    assert (kang / "singlecell/markers/cell_type_reference.tsv").stat().st_size > 0


def test_genes_of_interest(kang, cell_types):
    """config/examples/kang2018.yaml's genes of interest: figures, and one table of their pseudobulk results that
    equals the rows of every results.tsv; the interferon genes up in every major cell type, CD14 down in CD14+
    monocytes (the published response)."""
    for name in ("umap", "dotplot", "violin"):
        for ext in ("png", "pdf"):
            assert (kang / f"singlecell/genes_of_interest/{name}.{ext}").stat().st_size > 0, (name, ext)
    genes = pd.read_csv(kang / "singlecell/genes_of_interest/genes.tsv", sep="\t")
    assert list(genes["gene"]) == ["ISG15", "IFI6", "IFIT1", "MX1", "ISG20", "LY6E", "CD14"] and genes["found"].all()
    table = pd.read_csv(kang / "pseudobulk/genes_of_interest.tsv", sep="\t")
    tested = cell_types.index[cell_types["tested"]]
    assert len(table) == len(genes) * len(tested)  # one contrast
    for _, row in table.iterrows():
        res = results(kang, cell_types, row["cell_type"]).set_index("gene_id")
        assert row["tested"] == (row["gene"] in res.index)
        if row["tested"]:
            assert row["log2FoldChange"] == pytest.approx(res.loc[row["gene"], "log2FoldChange"], rel=1e-9)
            assert row["padj"] == pytest.approx(res.loc[row["gene"], "padj"], rel=1e-9, nan_ok=True)
    isg = table[table["gene"].isin(["ISG15", "IFI6", "MX1"]) & table["cell_type"].isin(MAJOR)]
    assert (isg["regulation"] == "up").all()
    cd14 = table[(table["gene"] == "CD14") & (table["cell_type"] == "CD14+ Monocytes")]
    assert (cd14["regulation"] == "down").all()


def test_skip_logic(kang, cell_types):
    skipped = pd.read_csv(kang / "pseudobulk/skipped.tsv", sep="\t")
    assert set(skipped["cell_type"]) == set(cell_types.index[~cell_types["tested"]])
    for _, row in skipped.iterrows():
        assert "needs >= 2" in row["reason"] or "rank" in row["reason"] or "degrees" in row["reason"], row
        assert not (kang / "pseudobulk" / cell_types.loc[row["cell_type"], "folder"]).exists()
    # the same data with stricter rules: nothing has 5 replicates per condition
    pb = ad.read_h5ad(kang / "pseudobulk/pseudobulk.h5ad")
    strict = pseudobulk.testable(pb, design="~ donor + condition", contrasts={"s": ["condition", "stim", "ctrl"]},
                                 min_replicates=5)
    assert not strict["tested"].any()
    assert strict["reason"].str.contains("has 4 pseudo-samples .* needs >= 5", regex=True).any()


def test_results_have_the_bulk_columns_and_summary_matches(kang, cell_types):
    summary = pd.read_csv(kang / "pseudobulk/summary.tsv", sep="\t").set_index("cell_type")
    assert set(summary.index) == set(cell_types.index[cell_types["tested"]])
    for ct in summary.index:
        res = results(kang, cell_types, ct)
        assert list(res.columns) == BULK_COLUMNS
        deg = pd.read_csv(kang / "pseudobulk" / cell_types.loc[ct, "folder"] / "stim_vs_ctrl/deg.tsv", sep="\t")
        expect = res[(res["padj"] < 0.05) & (res["log2FoldChange"].abs() > 1)]
        assert set(deg["gene_id"]) == set(expect["gene_id"])
        assert summary.loc[ct, "n_up"] == (deg["log2FoldChange"] > 0).sum()
        assert summary.loc[ct, "n_down"] == (deg["log2FoldChange"] < 0).sum()
        assert summary.loc[ct, "n_pseudo_samples"] == cell_types.loc[ct, "n_pseudo_samples"]


def test_interferon_stimulated_genes_up_in_every_major_cell_type(kang, cell_types):
    """ISG15, IFI6, IFIT1/IFIT3, MX1, ISG20, LY6E: up, and in the top 5 % of genes by Wald statistic."""
    up_in = {str(g): 0 for g in ISGS}
    tested = list(cell_types.index[cell_types["tested"]])
    for ct in tested:
        res = results(kang, cell_types, ct).dropna(subset=["padj"]).sort_values("stat", ascending=False)
        rank = pd.Series(np.arange(1, len(res) + 1), index=res["gene_name"])
        for genes in ISGS:
            genes = (genes,) if isinstance(genes, str) else genes
            hit = res[res["gene_name"].isin(genes)]
            best = rank.reindex(list(genes)).min()
            if (hit["regulation"] == "up").any():
                up_in[str(genes if len(genes) > 1 else genes[0])] += 1
            if ct in MAJOR:
                assert (hit["regulation"] == "up").any() and best <= 0.05 * len(res), (ct, genes, best, len(res))
    for gene, n in up_in.items():
        assert n > len(tested) / 2, (gene, n, len(tested))


def test_cd14_down_in_cd14_monocytes(kang, cell_types):
    res = results(kang, cell_types, "CD14+ Monocytes").set_index("gene_name")
    assert res.loc["CD14", "regulation"] == "down" and res.loc["CD14", "log2FoldChange"] < -1.5  # -2.2 measured


def test_proportions(kang):
    props = pd.read_csv(kang / "pseudobulk/proportions.tsv", sep="\t")
    assert list(props.columns) == ["sample", "condition", "donor", "cell_type", "n_cells", "fraction"]
    np.testing.assert_allclose(props.groupby("sample")["fraction"].sum(), 1.0)
    cells = ad.read_h5ad(kang / "singlecell/adata.h5ad", backed="r").obs
    assert props["n_cells"].sum() == len(cells)
    monos = props[props["cell_type"] == "CD14+ Monocytes"]
    assert (monos["fraction"] > 0.15).all()  # monocytes are a large share of every PBMC sample


def test_composition_in_the_same_run(kang):
    """singlecell.composition of the example (defaults from the pseudobulk section): counts equal an independent
    count of the cells, one propeller table per contrast, its figure (tests/test_composition.py checks the
    numbers against speckle and limma in R)."""
    comp = kang / "singlecell/composition"
    counts = pd.read_csv(comp / "cell_counts.tsv", sep="\t")
    assert list(counts.columns) == ["sample", "cell_type", "n_cells", "donor", "condition"]
    obs = ad.read_h5ad(kang / "singlecell/adata.h5ad", backed="r").obs
    own = pd.crosstab(obs["sample"].astype(str), obs["cell_type"].astype(str)).stack()
    got = counts.set_index(["sample", "cell_type"])["n_cells"]
    assert got.sum() == len(obs) and (got.loc[own.index] == own).all()
    assert counts.groupby("sample")["donor"].nunique().eq(1).all() and counts["sample"].nunique() == 8
    res = pd.read_csv(comp / "stim_vs_ctrl/results.tsv", sep="\t")
    assert list(res.columns) == ["cell_type", "baseline_prop", "prop_ctrl", "prop_stim", "ratio", "statistic",
                                 "pvalue", "padj"]
    assert set(res["cell_type"]) == set(counts["cell_type"])
    assert (res["padj"] >= res["pvalue"]).all() and res["pvalue"].is_monotonic_increasing
    np.testing.assert_allclose(res["ratio"], res["prop_stim"] / res["prop_ctrl"], rtol=1e-9)
    for name in ("results.html", "proportions.png", "proportions.pdf"):
        assert (comp / "stim_vs_ctrl" / name).stat().st_size > 0, name


# ---------------------------------------------------------------------------------------------
# bad input (library level; one through the CLI)
# ---------------------------------------------------------------------------------------------


def kang_plan(repo, shared, tmp, *, donors=DONORS, sheet_edit=None, sc_edit=None, **pb_overrides):
    path = kang_config(repo, shared, tmp, donors=donors, **pb_overrides)
    cfg = yaml.safe_load(path.read_text())
    if sheet_edit is not None:
        sheet = sheet_edit(pd.read_csv(tmp / "samples.tsv", sep="\t"))
        sheet.to_csv(tmp / "samples.tsv", sep="\t", index=False)
    if sc_edit is not None:
        sc_edit(cfg["singlecell"])
    cfg = validate_config(cfg)
    plan = plan_singlecell(cfg["singlecell"])
    return plan_pseudobulk(cfg["singlecell"]["pseudobulk"], plan.sheet, clusterings=plan.clusterings,
                                      annotated=bool(plan.annotation_key), source="samples.tsv",
                                      reference=plan.reference)


def test_good_plan(repo, shared_data, tmp_path):
    plan = kang_plan(repo, shared_data, tmp_path)
    assert plan.factors == ["donor", "condition"] and len(plan.metadata) == 8
    assert list(plan.metadata["condition"].cat.categories) == ["ctrl", "stim"]


def test_bad_condition_column_missing(repo, shared_data, tmp_path):
    with pytest.raises(DegflowInputError, match="variable 'condition' is not a column of the single-cell sample sheet"):
        kang_plan(repo, shared_data, tmp_path, sheet_edit=lambda s: s.drop(columns="condition"))


def test_bad_one_condition_only(repo, shared_data, tmp_path):
    with pytest.raises(DegflowInputError, match="column 'condition': the factor has one level"):
        kang_plan(repo, shared_data, tmp_path, sheet_edit=lambda s: s.assign(condition="ctrl"))


def test_bad_no_replicates(repo, shared_data, tmp_path):
    with pytest.raises(DegflowInputError, match="condition 'stim' has 1 replicate .* needs >= 2 per level"):
        kang_plan(repo, shared_data, tmp_path, donors=["s101", "s107"], design="~ condition",
                  sheet_edit=lambda s: s[s["sample"] != "s107_stim"])


def test_bad_groupby_without_annotation(repo, shared_data, tmp_path):
    def no_markers(sc):
        sc["markers"] = None

    with pytest.raises(DegflowInputError, match="groupby': cell_type needs singlecell.markers"):
        kang_plan(repo, shared_data, tmp_path, sc_edit=no_markers)


def test_pseudobulk_can_use_the_reference_labels(repo, shared_data, tmp_path):
    assert kang_plan(repo, shared_data, tmp_path, groupby="cell_type_reference").groupby == "cell_type_reference"

    def no_reference(sc):
        sc["reference"] = None

    with pytest.raises(DegflowInputError, match="groupby': cell_type_reference needs singlecell.reference"):
        kang_plan(repo, shared_data, tmp_path, groupby="cell_type_reference", sc_edit=no_reference)


def test_bad_reference(repo, shared_data, tmp_path):
    def missing(sc):
        sc["reference"]["path"] = str(tmp_path / "none.h5ad")

    def wrong_key(sc):
        sc["reference"]["label_key"] = "celltype"

    def not_h5ad(sc):
        sc["reference"]["path"] = str(tmp_path / "samples.tsv")

    with pytest.raises(DegflowInputError, match=r"singlecell.reference.path': '.*none.h5ad' does not exist"):
        kang_plan(repo, shared_data, tmp_path, sc_edit=missing)
    with pytest.raises(DegflowInputError, match="label_key': 'celltype' is not an obs column of .*seurat_annotation"):
        kang_plan(repo, shared_data, tmp_path, sc_edit=wrong_key)
    with pytest.raises(DegflowInputError, match=r"samples.tsv' is not an .h5ad AnnData file"):
        kang_plan(repo, shared_data, tmp_path, sc_edit=not_h5ad)


@pytest.fixture(scope="module")
def small_cells(kang) -> ad.AnnData:
    cells = ad.read_h5ad(kang / "singlecell/adata.h5ad")
    return cells[cells.obs["sample"].isin(["s101_ctrl", "s101_stim", "s107_ctrl", "s107_stim"])].copy()


def test_bad_counts_layer_missing_or_normalised(small_cells):
    no_layer = small_cells.copy()
    del no_layer.layers["counts"]
    with pytest.raises(DegflowInputError, match=r"raw counts in layers\['counts'\], which this AnnData lacks"):
        pseudobulk.aggregate(no_layer)
    with pytest.raises(DegflowInputError, match="non-integer or negative values .* normalised data"):
        pseudobulk.aggregate(small_cells, layer=None)  # X is log-normalised


def test_cell_type_with_too_few_cells_is_skipped_with_a_reason(small_cells):
    pb = pseudobulk.aggregate(small_cells, min_cells=150)
    assert not pb.obs.loc[pb.obs["n_cells"] < 150, "passed"].any()
    assert pb.obs.loc[~pb.obs["passed"], "reason"].str.contains("cells < min_cells 150").all()
    table = pseudobulk.testable(pb, design="~ donor + condition", contrasts={"s": ["condition", "stim", "ctrl"]})
    skipped = table[~table["tested"]].set_index("cell_type")
    assert "Megakaryocytes" in skipped.index
    assert "pseudo-sample" in skipped.loc["Megakaryocytes", "reason"]
    assert (table.loc[table["tested"], "n_pseudo_samples"] >= 4).all()


def test_bad_input_stops_the_cli_in_one_line(repo, shared_data, tmp_path):
    kang_config(repo, shared_data, tmp_path, design="~ donor + treatment")
    proc = snakemake(repo, tmp_path, "-n", "--cores", "1", timeout=300)
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err and 'File "' not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("degflow:")]
    assert len(lines) == 1 and "variable 'treatment' is not a column" in lines[0], err
