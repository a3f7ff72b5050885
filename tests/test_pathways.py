"""degflow.compound.pathways: GMT parsing and its messages, the bundled gene sets, panels, scores, ORA and preranked GSEA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from degflow.compound import pathways as pw
from degflow.errors import DegflowInputError

BUNDLED = ["HALLMARK_TNFA_SIGNALING_VIA_NFKB", "HALLMARK_HYPOXIA", "HALLMARK_TGF_BETA_SIGNALING",
           "HALLMARK_IL6_JAK_STAT3_SIGNALING", "HALLMARK_APOPTOSIS", "HALLMARK_PI3K_AKT_MTOR_SIGNALING",
           "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION", "HALLMARK_INFLAMMATORY_RESPONSE",
           "HALLMARK_REACTIVE_OXYGEN_SPECIES_PATHWAY", "HALLMARK_P53_PATHWAY", "HALLMARK_ANGIOGENESIS",
           "HALLMARK_COAGULATION"]


# ------------------------------------------------------------------------------------------
# GMT
# ------------------------------------------------------------------------------------------
def test_read_gmt(tmp_path):
    f = tmp_path / "s.gmt"
    f.write_text("# comment\nSET_A\tdesc\tG1\tG2\tG2\t\tG3\n\nSET_B\t\tG4\tG5\r\n")
    assert pw.read_gmt(f) == {"SET_A": ["G1", "G2", "G3"], "SET_B": ["G4", "G5"]}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("SET_A G1 G2 G3\n", r"line 1: .* found 1 field\(s\) \(fields are separated by spaces, GMT needs tabs\)"),
        ("SET_A\tdesc\n", r"line 1: a GMT line needs name<TAB>description<TAB>gene1"),
        ("SET_A\td\tG1\n\tdesc\tG2\n", "line 2: the gene-set name .* is empty"),
        ("SET_A\td\tG1\nSET_A\td\tG2\n", "line 2: gene set 'SET_A' was already defined above"),
        ("SET_A\td\t\t\n", "line 1: gene set 'SET_A' lists no genes"),
        ("\n# only a comment\n", "holds no gene sets"),
    ],
    ids=["spaces", "two-fields", "empty-name", "duplicate", "no-genes", "empty-file"],
)
def test_read_gmt_malformed(tmp_path, text, match):
    f = tmp_path / "bad.gmt"
    f.write_text(text)
    with pytest.raises(DegflowInputError, match=match):
        pw.read_gmt(f, label="config key 'bulk.pathways.gmt' file")


def test_read_gmt_missing_names_the_key(tmp_path):
    with pytest.raises(DegflowInputError, match=r"config key 'x' '.*nope.gmt' does not exist"):
        pw.read_gmt(tmp_path / "nope.gmt", label="config key 'x'")


def test_read_gene_sets_rejects_a_name_in_two_files(tmp_path):
    a, b = tmp_path / "a.gmt", tmp_path / "b.gmt"
    a.write_text("S\td\tG1\n")
    b.write_text("S\td\tG2\n")
    with pytest.raises(DegflowInputError, match="gene set 'S' is also in"):
        pw.read_gene_sets([a, b])


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_bundled_gene_sets(repo, species):
    sets = pw.read_gmt(repo / "resources" / "genesets" / f"hallmark_v7.0_selected.{species}.gmt")
    assert list(sets) == BUNDLED
    if species == "human":  # MSigDB v7.0 sizes
        assert [len(sets[k]) for k in BUNDLED] == [200, 200, 54, 87, 161, 105, 200, 200, 49, 200, 36, 138]
        assert {"CASP3", "CASP8", "CASP9", "BAX", "FAS", "FASLG", "BCL2L11"} <= set(sets["HALLMARK_APOPTOSIS"])
        assert {"NQO1", "GCLM", "GCLC", "TXNRD1", "SRXN1"} <= set(sets["HALLMARK_REACTIVE_OXYGEN_SPECIES_PATHWAY"])
    else:
        assert {"Col1a1", "Col3a1", "Fn1", "Tnc", "Postn"} <= set(sets["HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION"])
        assert {"Il1b", "Il6", "Tnf", "Ccl2", "Nfkbia"} <= set(sets["HALLMARK_TNFA_SIGNALING_VIA_NFKB"])
        assert all(g[0].isupper() and not g.isupper() or any(c.isdigit() for c in g) for s in sets.values() for g in s)


WIKIPATHWAYS = {"WP382_MAPK_SIGNALING_PATHWAY": (246, 241), "WP400_P38_MAPK_SIGNALING_PATHWAY": (34, 34),
                "WP2884_NRF2_PATHWAY": (143, 142)}


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_bundled_wikipathways_sets(repo, species):
    sets = pw.read_gmt(repo / "resources" / "genesets" / f"wikipathways_selected.{species}.gmt")
    assert list(sets) == list(WIKIPATHWAYS)
    assert [len(v) for v in sets.values()] == [n[species == "mouse"] for n in WIKIPATHWAYS.values()]
    mapk, p38, nrf2 = (set(sets[k]) for k in WIKIPATHWAYS)
    if species == "human":  # the Nrf2/ARE targets of the issue, and the JNK and p38 cascades
        assert {"HMOX1", "NQO1", "GCLM", "GCLC", "TXNRD1", "SRXN1", "NFE2L2", "KEAP1"} <= nrf2
        assert {"MAPK14", "MAP2K6", "MAP3K5", "MAPKAPK2", "ATF2"} <= p38
        assert {"MAPK8", "MAPK9", "MAPK10", "MAP2K4", "MAP2K7", "JUN", "MAPK14", "MAP2K3"} <= mapk
        assert sets["WP2884_NRF2_PATHWAY"] == sorted(sets["WP2884_NRF2_PATHWAY"])  # the page's keyword order
    else:
        assert {"Hmox1", "Nqo1", "Gclm", "Gclc", "Txnrd1", "Srxn1"} <= nrf2 and {"Mapk8", "Mapk14"} <= mapk


def test_bundled_gene_set_files(repo, tmp_path):
    files = pw.bundled_gene_set_files("mouse", repo / "resources" / "genesets")
    assert [f.name for f in files] == ["hallmark_v7.0_selected.mouse.gmt", "wikipathways_selected.mouse.gmt"]
    assert len(pw.read_gene_sets(files)) == 15
    with pytest.raises(DegflowInputError, match="bundled gene sets exist for"):
        pw.bundled_gene_set_files("rat", repo / "resources" / "genesets")
    with pytest.raises(DegflowInputError, match="hallmark_v7.0_selected.human.gmt' is missing"):
        pw.bundled_gene_set_files("human", tmp_path)


def test_bundled_readme_names_every_file(repo):
    text = (repo / "resources" / "genesets" / "README.md").read_text()
    for f in ("hallmark_v7.0_selected.human.gmt", "hallmark_v7.0_selected.mouse.gmt", "build_mouse_gmt.py",
              "wikipathways_selected.human.gmt", "wikipathways_selected.mouse.gmt", *WIKIPATHWAYS):
        assert f in text
    assert "CC BY 4.0" in text and "CC0" in text


# ------------------------------------------------------------------------------------------
# panels and scores
# ------------------------------------------------------------------------------------------
def _results():
    a = pd.DataFrame({"gene_id": ["1", "2", "3", "4"], "gene_name": ["Il6", "Tnf", "Actb", ""],
                      "log2FoldChange": [2.0, 1.5, 0.0, 3.0], "padj": [0.001, 0.01, 0.9, 0.001],
                      "regulation": ["up", "up", "ns", "up"]})
    b = a.assign(log2FoldChange=[-1.0, -0.5, 0.1, -3.0], padj=[0.01, 0.2, 0.9, 0.01],
                 regulation=["down", "ns", "ns", "down"]).iloc[[0, 2, 3]]
    return {"dis": a, "trt": b}


def test_panel_table():
    t = pw.panel_table(["Il6", "Tnf", "Ccl2"], _results())
    assert list(t.columns) == ["gene_id", "gene_name", "log2FC_dis", "padj_dis", "regulation_dis", "log2FC_trt",
                               "padj_trt", "regulation_trt"]
    assert list(t["gene_name"]) == ["Il6", "Tnf"]
    il6 = t.set_index("gene_name").loc["Il6"]
    assert (il6["log2FC_dis"], il6["log2FC_trt"], il6["regulation_trt"]) == (2.0, -1.0, "down")
    assert np.isnan(t.set_index("gene_name").loc["Tnf", "log2FC_trt"])  # not in the treatment table


def test_panel_scores_are_mean_gene_zscores():
    expr = pd.DataFrame([[1.0, 2.0, 3.0], [10.0, 10.0, 10.0], [0.0, 4.0, 2.0], [5.0, 6.0, 7.0]],
                        index=["1", "2", "3", "4"], columns=["s1", "s2", "s3"])
    names = pd.Series({"1": "A", "2": "B", "3": "C", "4": "D"})
    scores, sizes = pw.panel_scores(expr, {"P": ["A", "B", "C", "Z"], "Q": ["D"]}, names, min_genes=2)
    # A: z = (-1, 0, 1); B is constant (not used); C: z = (-1, 1, 0)
    assert scores["P"].tolist() == pytest.approx([-1.0, 0.5, 0.5])
    assert scores["Q"].isna().all()  # one varying gene < min_genes
    assert sizes.set_index("gene_set").loc["P"].tolist() == [4, 3, 2]


def test_set_members_matches_names_exactly():
    names = pd.Series({"1": "Il6", "2": "IL6", "3": "Tnf", "4": "Tnf"})
    assert pw.set_members(["Il6", "Tnf"], names) == ["1", "3", "4"]


# ------------------------------------------------------------------------------------------
# ORA and GSEA
# ------------------------------------------------------------------------------------------
def test_ora_hand_checked():
    universe = [f"g{i}" for i in range(20)]
    sets = {"S": ["g0", "g1", "g2", "g3", "g4", "x"], "T": [f"g{i}" for i in range(10, 16)], "tiny": ["g0"]}
    out = pw.ora(["g0", "g1", "g2", "g10"], universe, sets, direction="up", min_size=2).set_index("gene_set")
    # S: N=20, K=5 (x is outside the universe), n=4, k=3: P(X>=3) = (C(5,3)C(15,1) + C(5,4)) / C(20,4) = 155/4845
    assert out.loc["S", "pvalue"] == pytest.approx(155 / 4845)
    assert out.loc["S", "pvalue"] == pytest.approx(stats.hypergeom.sf(2, 20, 5, 4))
    assert (out.loc["S", "set_size"], out.loc["S", "overlap"], out.loc["S", "expected"]) == (5, 3, 1.0)
    assert out.loc["S", "genes"] == "g0;g1;g2"
    assert "tiny" not in out.index  # below min_size
    p = out["pvalue"].to_numpy()
    assert out["padj"].to_numpy() == pytest.approx(stats.false_discovery_control(p))
    assert set(out["direction"]) == {"up"}


def test_ora_empty_list_gives_p_one():
    out = pw.ora([], [f"g{i}" for i in range(10)], {"S": ["g1", "g2", "g3"]}, min_size=1)
    assert out["pvalue"].tolist() == [1.0]


def test_ranking_from_results_dedups_names():
    res = pd.DataFrame({"gene_name": ["A", "A", "B", "", None, "C"], "stat": [1.0, -5.0, 2.0, 9.0, 9.0, np.nan]})
    r = pw.ranking_from_results(res)
    assert r.to_dict() == {"B": 2.0, "A": -5.0}


def test_prerank_gsea_offline_and_seeded():
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(600)]
    ranking = pd.Series(np.sort(rng.normal(size=600))[::-1] * 3, index=genes)
    sets = {"TOP": genes[:30], "BOTTOM": genes[-30:], "RANDOM": list(rng.choice(genes, 30, replace=False)),
            "TOO_SMALL": genes[:3]}
    a = pw.prerank_gsea(ranking, sets, permutations=100, seed=1, min_size=5)
    b = pw.prerank_gsea(ranking, sets, permutations=100, seed=1, min_size=5)
    pd.testing.assert_frame_equal(a, b)
    t = a.set_index("gene_set")
    assert list(a.columns) == pw.GSEA_COLUMNS
    assert "TOO_SMALL" not in t.index
    assert t.loc["TOP", "NES"] > 0 and t.loc["BOTTOM", "NES"] < 0
    assert t.loc["TOP", "pvalue"] < 0.05 and t.loc["BOTTOM", "pvalue"] < 0.05


def test_prerank_gsea_rejects_empty_ranking():
    with pytest.raises(DegflowInputError, match="ranking must be a non-empty Series"):
        pw.prerank_gsea(pd.Series(dtype=float), {"S": ["a"]})


# ------------------------------------------------------------------------------------------
# a published finding, checked on the real counts: the fibrosis/ECM panel is up in bleomycin skin
# ------------------------------------------------------------------------------------------
def test_fibrosis_panel_up_in_bleomycin_gse121659(repo):
    from degflow.bulk.vst import median_of_ratios

    src = repo / "resources" / "gse121659"
    counts = pd.read_csv(src / "counts.tsv", sep="\t", index_col=0, dtype={"gene_id": str})
    counts.index = counts.index.astype(str)
    genes = pd.read_csv(src / "genes.tsv", sep="\t", dtype=str).set_index("gene_id")["symbol"]
    sheet = pd.read_csv(repo / "config" / "examples" / "gse121659_samples.tsv", sep="\t").set_index("sample")
    counts = counts.loc[counts.sum(axis=1) >= 10]
    sf = median_of_ratios(counts)
    logn = np.log2(counts / sf + 1)
    sets = pw.read_gmt(repo / "resources" / "genesets" / "hallmark_v7.0_selected.mouse.gmt")
    scores, _ = pw.panel_scores(logn, sets, genes.reindex(logn.index))
    emt = scores["HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION"]
    g = sheet["group"]
    model, control = emt[g[g == "model"].index], emt[g[g == "control"].index]
    assert model.min() > control.max()  # every bleomycin mouse above every control mouse
    infl = scores["HALLMARK_INFLAMMATORY_RESPONSE"]
    assert infl[g[g == "model"].index].min() > infl[g[g == "control"].index].max()
