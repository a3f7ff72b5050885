"""The compound study end to end on real data (GSE121659, bleomycin mouse skin): one snakemake run.

The run uses the example config ``config/examples/gse121659.yaml`` with the bundled counts and symbols
(resources/gse121659, identical to shared/data's copy: checked below when it is found), fewer panels and
permutations to stay quick, and a qPCR Ct table simulated from the counts (so the concordance rule runs). It then
checks what the paper's abstract reports and the counts can show (doi:10.1016/j.bcp.2019.02.029): both compounds
move inflammatory and fibrotic genes back toward control (global reversal statistic significantly negative;
inflammatory and EMT/ECM gene sets down in treated vs model), and the fibrosis/ECM and inflammatory sets are up in
bleomycin vs control.

Set DEGFLOW_TEST_SNAKEFILE to run against another Snakefile (e.g. before workflow/rules/compound.smk is included).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
pytestmark = pytest.mark.workflow

TREATMENTS = ["ehp_vs_model", "aja_vs_model"]
CONTRASTS = ["model_vs_control", *TREATMENTS]
EMT = "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION"
INFLAMMATORY = "HALLMARK_INFLAMMATORY_RESPONSE"
NRF2, P38, MAPK = "WP2884_NRF2_PATHWAY", "WP400_P38_MAPK_SIGNALING_PATHWAY", "WP382_MAPK_SIGNALING_PATHWAY"
PANELS = [EMT, INFLAMMATORY, "HALLMARK_TNFA_SIGNALING_VIA_NFKB", NRF2, P38, MAPK]
QPCR_GENES = ["Serpine1", "Ccl2", "Timp1", "Hmox1", "Tnc", "Mmp3", "Slc27a6", "Cdh6"]
QPCR_REFS = ["Actb", "Gapdh"]


def _example(repo: Path) -> dict:
    return yaml.safe_load((repo / "config" / "examples" / "gse121659.yaml").read_text())


def _simulated_ct(src: Path, path: Path) -> None:
    """Ct = 40 - log2(counts per million + 0.5) + N(0, 0.15), seed 0: qPCR that tracks the counts."""
    counts = pd.read_csv(src / "counts.tsv", sep="\t", index_col=0)
    counts.index = counts.index.astype(str)
    sym = pd.read_csv(src / "genes.tsv", sep="\t", dtype=str).set_index("gene_id")["symbol"]
    ids = {s: i for i, s in sym.items() if s in set(QPCR_GENES + QPCR_REFS)}
    cpm = counts / counts.sum() * 1e6
    rng = np.random.default_rng(0)
    rows = []
    for sample in counts.columns:
        for gene in QPCR_REFS + QPCR_GENES:
            ct = 40 - np.log2(cpm.loc[ids[gene], sample] + 0.5) + rng.normal(0, 0.15)
            rows.append({"sample": sample, "gene": gene, "ct": round(float(ct), 3)})
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)


@pytest.fixture(scope="module")
def run(repo, tmp_path_factory):
    base = tmp_path_factory.mktemp("gse121659")
    src = repo / "resources" / "gse121659"
    cfg = _example(repo)
    cfg["results"] = str(base / "results")
    b = cfg["bulk"]
    b["counts"] = str(src / "counts.tsv")
    b["annotation"] = str(src / "genes.tsv")
    b["samples"] = str(repo / b["samples"])
    b["rescue"]["permutations"] = 2000
    b["pathways"]["panels"] = PANELS
    b["enrichment"]["permutations"] = 200
    _simulated_ct(src, base / "ct.tsv")
    b["qpcr"] = {"ct_table": str(base / "ct.tsv"), "reference_genes": QPCR_REFS,
                 "contrasts": ["model_vs_control", "ehp_vs_model"]}
    (base / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = base / "results" / "bulk"
    # every table (the workbook needs them all) and one figure of each kind: each figure job costs a process start
    targets = [res / "compound_tables.xlsx", res / "rescue" / "ehp_vs_model" / "rescue.png",
               res / "pathways" / "scores.png", res / "pathways" / EMT / "heatmap.png",
               res / "enrichment" / "model_vs_control" / "dotplot.png", res / "qpcr" / "concordance.png",
               res / "lrt" / "arms" / "patterns.png"]
    snakefile = Path(os.environ.get("DEGFLOW_TEST_SNAKEFILE", repo / "Snakefile"))
    proc = subprocess.run(
        [str(SNAKEMAKE), "-s", str(snakefile), "--configfile", str(base / "config.yaml"), "--cores", "2", "--nolock",
         *map(str, targets)],
        cwd=base, capture_output=True, text=True, timeout=1500,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    return res


def test_example_config_is_valid(repo, monkeypatch):
    from degflow.plan.bulk import plan_bulk
    from degflow.plan.compound import plan_compound
    from degflow.plan.schema import validate_config

    monkeypatch.chdir(repo)  # the example's paths are relative to the repository root
    cfg = validate_config(_example(repo))
    plan, _ = plan_bulk(cfg["bulk"])
    comp = plan_compound(cfg["bulk"], bundled_dir=repo / "resources" / "genesets")
    assert comp.treatments == TREATMENTS and comp.disease == "model_vs_control"
    assert len(plan.samples) == 12 and EMT in comp.panels


def test_bundled_data_match_shared(repo, shared_data):
    for f in ("counts.tsv", "genes.tsv", "SOURCE.md"):
        a = hashlib.sha256((repo / "resources" / "gse121659" / f).read_bytes()).hexdigest()
        b = hashlib.sha256((shared_data / "gse121659_bleomycin_skin" / f).read_bytes()).hexdigest()
        assert a == b, f


def test_outputs_exist(run):
    for rel in ["rescue/summary.tsv", "pathways/scores.tsv", "pathways/gene_sets.tsv", "compound_tables.xlsx",
                "qpcr/fold_changes.tsv", "qpcr/concordance.tsv", "qpcr/concordance.png"]:
        assert (run / rel).stat().st_size > 0, rel
    for t in TREATMENTS:
        for rel in ("genes.tsv", "summary.tsv"):
            assert (run / "rescue" / t / rel).stat().st_size > 0
    for c in CONTRASTS:
        for rel in ("ora.tsv", "gsea.tsv"):
            assert (run / "enrichment" / c / rel).stat().st_size > 0
    for p in PANELS:
        assert (run / "pathways" / p / "genes.tsv").stat().st_size > 0
    for rel in ("rescue/ehp_vs_model/rescue.png", "rescue/ehp_vs_model/rescue.pdf", "pathways/scores.png",
                f"pathways/{EMT}/heatmap.png", "enrichment/model_vs_control/dotplot.png"):
        assert (run / rel).stat().st_size > 10_000, rel
    with pd.ExcelFile(run / "compound_tables.xlsx") as book:  # closed: an open file is a ResourceWarning
        sheets = book.sheet_names
    assert sheets[:3] == ["rescue summary", "rescue ehp_vs_model", "rescue aja_vs_model"]
    assert "qPCR vs RNA-seq" in sheets and "GSEA model_vs_control" in sheets
    assert {"pathway scores", "pathway gene sets", "qPCR fold changes", "qPCR concordance", "ORA aja_vs_model",
            "panel WP2884_NRF2_PATHWAY", "panel WP400_P38_MAPK_SIGNALING_"} <= set(sheets)


def test_wikipathways_panels_in_outputs(run):
    """The bundled MAPK / p38 / Nrf2 sets (WikiPathways) reach the panel tables, scores and enrichment tables."""
    sizes = pd.read_csv(run / "pathways" / "gene_sets.tsv", sep="\t").set_index("gene_set")
    assert {NRF2, P38, MAPK} <= set(sizes.index)
    scores = pd.read_csv(run / "pathways" / "scores.tsv", sep="\t", index_col=0)
    assert scores[[NRF2, P38, MAPK]].notna().all().all()
    nrf2 = pd.read_csv(run / "pathways" / NRF2 / "genes.tsv", sep="\t")
    assert {"Hmox1", "Nqo1", "Gclm", "Gclc", "Txnrd1", "Srxn1"} <= set(nrf2["gene_name"])
    p38 = pd.read_csv(run / "pathways" / P38 / "genes.tsv", sep="\t")
    assert {"Mapk14", "Map2k6", "Mapkapk2"} <= set(p38["gene_name"])
    for c in CONTRASTS:
        assert {NRF2, P38, MAPK} <= set(pd.read_csv(run / "enrichment" / c / "gsea.tsv", sep="\t")["gene_set"])


def test_both_compounds_reverse_the_bleomycin_signature(run):
    s = pd.read_csv(run / "rescue" / "summary.tsv", sep="\t").set_index("treatment")
    for t in TREATMENTS:
        r = s.loc[t]
        assert r["n_disease_deg"] > 1000
        assert r["pearson_r"] < -0.5 and r["spearman_r"] < -0.5
        assert r["p_permutation"] <= 0.001  # 2000 permutations: none as extreme
        assert r["pearson_r"] < r["r_shared_reference"] - 0.5  # far beyond the shared-model-group noise
        assert r["n_reversed"] > 100 and r["share_reversed"] > 0.1
        assert r["n_reversed"] > 20 * r["n_aggravated"]
        genes = pd.read_csv(run / "rescue" / t / "genes.tsv", sep="\t")
        assert (genes["rescue_class"] == "reversed").sum() == r["n_reversed"]


def test_label_permutation_keeps_the_shared_model_arm(run):
    """The sample-label permutation p-values: 3 + 3 model/treated samples give C(6, 3) = 20 relabellings, 3 + 3 + 3
    give 1680; both enumerated exactly. Measured (printed with pytest -s): EHP-101 r_log -0.945, null mean -0.351,
    p = 1/20, all arms: null mean -0.636, p = 0.038; AjA r_log -0.954, null mean -0.337, p = 1/20, all arms: null
    mean -0.638, p = 0.040. Both compounds beat every relabelling of model and treated mice (the smallest p 3 + 3
    mice allow), and the conservative all-arms test is below 0.05 too."""
    s = pd.read_csv(run / "rescue" / "summary.tsv", sep="\t").set_index("treatment")
    for t in TREATMENTS:
        r = s.loc[t]
        print(t, {k: r[k] for k in ("pearson_r", "r_log", "r_shared_reference", "r_label_null_mean",
                                    "p_label_permutation", "r_label_null_mean_all_arms",
                                    "p_label_permutation_all_arms")})
        assert r["n_label_permutations"] == 20 and r["n_label_permutations_all_arms"] == 1680
        assert bool(r["label_permutation_exact"]) and bool(r["label_permutation_exact_all_arms"])
        assert r["n_label_genes"] == r["n_genes"]
        assert r["p_label_permutation"] == pytest.approx(1 / 20)  # the observed labels are the most extreme
        assert r["r_log"] < r["r_label_null_mean"] - 0.5 and r["r_label_null_mean"] < r["r_shared_reference"]
        assert r["p_label_permutation_all_arms"] < 0.05


def test_fibrosis_and_inflammation_up_in_bleomycin_and_down_with_both_compounds(run):
    g = pd.read_csv(run / "enrichment" / "model_vs_control" / "gsea.tsv", sep="\t").set_index("gene_set")
    for s in (EMT, INFLAMMATORY):
        assert g.loc[s, "NES"] > 0 and g.loc[s, "fdr"] < 0.05, s
    ora = pd.read_csv(run / "enrichment" / "model_vs_control" / "ora.tsv", sep="\t")
    up = ora[ora["direction"] == "up"].set_index("gene_set")
    assert up.loc[EMT, "padj"] < 0.05 and up.loc[INFLAMMATORY, "padj"] < 0.05
    for t in TREATMENTS:
        g = pd.read_csv(run / "enrichment" / t / "gsea.tsv", sep="\t").set_index("gene_set")
        for s in (EMT, INFLAMMATORY):
            assert g.loc[s, "NES"] < 0 and g.loc[s, "fdr"] < 0.05, (t, s)


def test_fibrosis_panel_scores(run, repo):
    scores = pd.read_csv(run / "pathways" / "scores.tsv", sep="\t", index_col=0)
    sheet = pd.read_csv(repo / "config" / "examples" / "gse121659_samples.tsv", sep="\t", index_col=0)
    mean = scores.groupby(sheet["group"]).mean()
    assert mean.loc["model", EMT] > mean.loc["control", EMT]
    for arm in ("treated_ehp101", "treated_aja"):
        assert mean.loc[arm, EMT] < mean.loc["model", EMT]
        assert mean.loc[arm, INFLAMMATORY] < mean.loc["model", INFLAMMATORY]
    table = pd.read_csv(run / "pathways" / EMT / "genes.tsv", sep="\t")
    assert {"Col1a1", "Fn1", "Tnc"} <= set(table["gene_name"])
    assert [c for c in table.columns if c.startswith("log2FC_")] == [f"log2FC_{c}" for c in CONTRASTS]


def test_qpcr_concordance(run):
    fc = pd.read_csv(run / "qpcr" / "fold_changes.tsv", sep="\t")
    assert set(fc["gene"]) == set(QPCR_GENES) and set(fc["contrast"]) == {"model_vs_control", "ehp_vs_model"}
    st = pd.read_csv(run / "qpcr" / "concordance_stats.tsv", sep="\t").set_index("contrast")
    assert st.loc["all", "n"] == 2 * len(QPCR_GENES)
    assert st.loc["all", "pearson_r"] > 0.9


def test_lrt_across_the_four_arms(run, repo):
    """The example's LRT (~ group vs ~ 1) calls DESeq2's genes, and its clusters hold the rescue pattern."""
    r = pd.read_csv(repo / "tests" / "data" / "deseq2_lrt_contrasts" / "summary.tsv", sep="\t", index_col=0)
    res = pd.read_csv(run / "lrt" / "arms" / "results.tsv", sep="\t", dtype={"gene_id": str})
    sig = pd.read_csv(run / "lrt" / "arms" / "significant.tsv", sep="\t", dtype={"gene_id": str})
    assert len(res) == r.loc["gse121659_lrt", "n_tested"]
    assert len(sig) == r.loc["gse121659_lrt", "n_padj_below_alpha"]  # 3,813 in DESeq2 1.38.3
    assert set(res["lfc_coefficient"]) == {"group_treated_ehp101_vs_control"}
    assert sig["padj"].is_monotonic_increasing and (sig["padj"] < 0.05).all()
    clusters = pd.read_csv(run / "lrt" / "arms" / "clusters.tsv", sep="\t", dtype={"gene_id": str})
    assert list(clusters["gene_id"]) == list(sig["gene_id"])  # every significant gene, in order of significance
    sizes = clusters.loc[clusters["cluster"] > 0, "cluster"].value_counts()
    assert len(sizes) >= 4 and (sizes >= 15).all() and sizes.is_monotonic_decreasing
    # the largest cluster: up in the bleomycin model, brought back down by both compounds
    top = clusters.loc[clusters["cluster"] == 1, ["z_control", "z_model", "z_treated_aja", "z_treated_ehp101"]].mean()
    assert top["z_model"] > top["z_treated_aja"] > top["z_control"]
    assert top["z_model"] > top["z_treated_ehp101"] > top["z_control"]
    assert (run / "lrt" / "arms" / "patterns.png").stat().st_size > 10_000
    assert (run / "lrt" / "arms" / "patterns.pdf").stat().st_size > 10_000
