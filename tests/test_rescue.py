"""degflow.compound.rescue: class rules and reversal score on hand-checkable tables, the global statistic, config checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from degflow.compound import rescue
from degflow.errors import DegflowInputError
from degflow.plan.compound import plan_compound

#                 gene   d     padj_d   t      padj_t    expected class       score
CASES = [
    ("g_rev",     2.0,  0.001,  -1.5,  0.001,    "reversed",            0.75),
    ("g_rev_dn",  -3.0, 0.001,  3.0,   0.01,     "reversed",            1.0),
    ("g_agg",     2.0,  0.001,  1.5,   0.001,    "aggravated",          -0.75),
    ("g_part",    2.0,  0.001,  -1.2,  0.2,      "partially_reversed",  0.6),
    ("g_part_lo", -2.0, 0.001,  0.8,   0.001,    "not_rescued",         0.4),  # |t| <= lfc, score < partial
    ("g_norsc",   2.0,  0.001,  -0.4,  0.5,      "not_rescued",         0.2),
    ("g_norsc2",  4.0,  0.001,  1.5,   0.3,      "not_rescued",         -0.375),
    ("g_trt",     0.2,  0.9,    -2.0,  0.001,    "treatment_only",      np.nan),
    ("g_small_d", 0.8,  0.001,  -2.0,  0.001,    "treatment_only",      np.nan),  # |d| <= lfc: not a disease DEG
    ("g_na",      3.0,  np.nan, -3.0,  0.001,    "treatment_only",      np.nan),  # untested in disease: never a DEG
    ("g_none",    0.1,  0.8,    0.1,   0.9,      "unchanged",           np.nan),
]


def _tables(cases=CASES):
    d = pd.DataFrame({"gene_id": [c[0] for c in cases], "gene_name": [c[0].upper() for c in cases],
                      "log2FoldChange": [c[1] for c in cases], "padj": [c[2] for c in cases],
                      "lfcSE": 0.3, "baseMean": 100.0})
    t = pd.DataFrame({"gene_id": [c[0] for c in cases], "gene_name": [c[0].upper() for c in cases],
                      "log2FoldChange": [c[3] for c in cases], "padj": [c[4] for c in cases], "lfcSE": 0.3})
    return d, t


@pytest.fixture
def genes():
    d, t = _tables()
    return rescue.classify_rescue(d, t, lfc=1.0, padj=0.05, partial=0.5).set_index("gene_id")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_class_rules(genes, case):
    gid, d, _, t, _, expected, score = case
    row = genes.loc[gid]
    assert row["rescue_class"] == expected
    if np.isnan(score):
        assert np.isnan(row["reversal_score"])
    else:
        assert row["reversal_score"] == pytest.approx(-t / d)
        assert row["reversal_score"] == pytest.approx(score)
    assert row["log2FC_treated_vs_control"] == pytest.approx(d + t)


def test_partial_threshold_is_configurable():
    d, t = _tables()
    g = rescue.classify_rescue(d, t, partial=0.4).set_index("gene_id")
    assert g.loc["g_part_lo", "rescue_class"] == "partially_reversed"
    assert g.loc["g_norsc", "rescue_class"] == "not_rescued"  # score 0.2


def test_columns_order_and_flags(genes):
    assert list(genes.reset_index().columns) == [
        "gene_id", "gene_name", "baseMean", "log2FC_disease", "padj_disease", "lfcSE_disease", "log2FC_treatment",
        "padj_treatment", "lfcSE_treatment", "disease_deg", "treatment_deg", "direction", "reversal_score",
        "rescue_class", "log2FC_treated_vs_control"]
    assert genes.loc["g_rev", "direction"] == "up" and genes.loc["g_rev_dn", "direction"] == "down"
    assert genes.loc["g_trt", "direction"] == ""
    # rows come sorted by class, in the order of rescue.CLASSES
    order = [rescue.CLASSES.index(c) for c in genes["rescue_class"]]
    assert order == sorted(order)


def test_genes_in_one_table_only_are_kept():
    d, t = _tables()
    g = rescue.classify_rescue(d.iloc[:-1], t.iloc[1:])
    assert set(g["gene_id"]) == {c[0] for c in CASES}
    assert g.set_index("gene_id").loc["g_rev", "rescue_class"] == "not_rescued"  # no treatment value


def test_summary_counts_and_shares(genes):
    rev = rescue.global_reversal(genes.reset_index(), n_permutations=99, seed=1)
    row = rescue.rescue_summary(genes.reset_index(), treatment="trt", disease="dis", reversal=rev,
                                shared_reference_r=-0.1)
    # disease DEGs: g_rev g_rev_dn g_agg g_part g_part_lo g_norsc g_norsc2 = 7
    assert row["n_disease_deg"] == 7
    assert (row["n_reversed"], row["n_aggravated"], row["n_partially_reversed"], row["n_not_rescued"]) == (2, 1, 1, 3)
    assert row["n_treatment_only"] == 3 and row["n_unchanged"] == 1
    assert row["share_reversed"] == pytest.approx(2 / 7)
    assert row["share_reversed_or_partial"] == pytest.approx(3 / 7)
    assert row["median_reversal_score"] == pytest.approx(np.median([0.75, 1.0, -0.75, 0.6, 0.4, 0.2, -0.375]))
    assert row["r_shared_reference"] == -0.1


def _synthetic(n=400, rho=-0.9, seed=0):
    rng = np.random.default_rng(seed)
    d = rng.normal(0, 2, n)
    t = rho * d + rng.normal(0, 2 * np.sqrt(1 - rho ** 2), n)
    return pd.DataFrame({"gene_id": [f"g{i}" for i in range(n)], "log2FC_disease": d, "log2FC_treatment": t,
                         "disease_deg": np.abs(d) > 1, "lfcSE_treatment": 0.3})


def test_global_reversal_detects_reversal_and_is_seeded():
    g = _synthetic(rho=-0.9)
    a = rescue.global_reversal(g, n_permutations=2000, seed=7)
    b = rescue.global_reversal(g, n_permutations=2000, seed=7)
    assert a == b
    sel = g[g["disease_deg"]]
    assert a["pearson_r"] == pytest.approx(np.corrcoef(sel["log2FC_disease"], sel["log2FC_treatment"])[0, 1])
    assert a["pearson_r"] < -0.8
    assert a["p_permutation"] == pytest.approx(1 / 2001)  # no shuffle is as extreme
    assert a["n_genes"] == int(g["disease_deg"].sum())


def test_global_reversal_null_is_not_significant():
    g = _synthetic(rho=0.0, seed=3)
    r = rescue.global_reversal(g, n_permutations=2000, seed=0)
    assert abs(r["pearson_r"]) < 0.2
    assert r["p_permutation"] > 0.05


def test_global_reversal_too_few_genes_gives_nan():
    g = _synthetic(n=20).assign(disease_deg=False)
    r = rescue.global_reversal(g, n_permutations=10)
    assert r["n_genes"] == 0 and np.isnan(r["pearson_r"]) and np.isnan(r["p_permutation"])


def test_shared_reference_correlation_formula():
    # three disease DEGs, d = -2, 0, 2 (var 8/3), lfcSE_t = 0.6 (var 0.36); equal groups: se_m^2 = 0.18
    g = pd.DataFrame({"log2FC_disease": [-2.0, 0.0, 2.0], "log2FC_treatment": [1.0, 0.0, -1.0],
                      "lfcSE_treatment": [0.6, 0.6, 0.6], "disease_deg": [True, True, True]})
    r = rescue.shared_reference_correlation(g, n_reference=3, n_treated=3)
    assert r == pytest.approx(-0.18 / np.sqrt((8 / 3) * 0.36))
    with pytest.raises(DegflowInputError, match="n_reference"):
        rescue.shared_reference_correlation(g, n_reference=0, n_treated=3)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.drop(columns="padj"), r"lacks column\(s\) \['padj'\]"),
        (lambda d: pd.concat([d, d.iloc[:1]]), "gene_id 'g_rev' appears twice"),
        (lambda d: "not a table", "must be a DE results DataFrame"),
    ],
    ids=["missing-column", "duplicate-gene", "not-a-frame"],
)
def test_bad_results_tables(mutate, match):
    d, t = _tables()
    with pytest.raises(DegflowInputError, match=match):
        rescue.classify_rescue(mutate(d), t)


@pytest.mark.parametrize(("kw", "match"), [({"lfc": -1}, "lfc"), ({"padj": 0}, "padj"), ({"partial": 1.5}, "partial")])
def test_bad_thresholds(kw, match):
    d, t = _tables()
    with pytest.raises(DegflowInputError, match=match):
        rescue.classify_rescue(d, t, **kw)


# ------------------------------------------------------------------------------------------
# sample-label permutation test (keeps the shared model arm)
# ------------------------------------------------------------------------------------------
def _ref_label_r(y, labels, k):
    """Plain-loop reference of rescue._label_statistics (module docstring formula)."""
    out = []
    for lab in labels:
        c, m, x = (y[:, lab == a] for a in range(3))
        d = m.mean(axis=1) - c.mean(axis=1)
        t = x.mean(axis=1) - m.mean(axis=1)
        se = np.sqrt(m.var(axis=1, ddof=1) / m.shape[1] + c.var(axis=1, ddof=1) / c.shape[1])
        z = np.abs(d) / (se + np.median(se) + 1e-12)
        top = np.argsort(-z, kind="stable")[:k]
        out.append(np.corrcoef(d[top], t[top])[0, 1])
    return np.array(out)


def _arms_data(n_genes=3000, n=3, disease_sd=0.0, treated="inert", seed=0):
    """log2 expression, genes x (control, model, treated) samples, noise sd 1: the model arm adds a disease effect
    D ~ N(0, disease_sd); the treated arm is the model (inert) or the control (full rescue) plus noise."""
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, disease_sd, n_genes) if disease_sd else np.zeros(n_genes)
    base = rng.normal(8, 2, n_genes)
    arm = {"control": base, "model": base + effect, "treated": base + effect if treated == "inert" else base}
    cols, data, groups = [], [], {}
    for level, mu in arm.items():
        for i in range(n):
            name = f"{level}_{i}"
            cols.append(name)
            data.append(mu + rng.normal(0, 1, n_genes))
            groups[name] = level
    expr = pd.DataFrame(np.array(data).T, index=[f"g{i}" for i in range(n_genes)], columns=cols)
    return expr, pd.Series(groups)


def _genes_from(expr, groups, deg=None):
    mean = expr.T.groupby(groups).mean().T
    d, t = mean["model"] - mean["control"], mean["treated"] - mean["model"]
    deg = np.ones(len(expr), dtype=bool) if deg is None else deg
    return pd.DataFrame({"gene_id": expr.index, "log2FC_disease": d.to_numpy(), "log2FC_treatment": t.to_numpy(),
                         "padj_disease": 0.01, "disease_deg": deg})


LEVELS = {"control": "control", "model": "model", "treated": "treated"}


@pytest.mark.parametrize(("arms", "n"), [("treated_model", 20), ("all", 1680)], ids=["treated-model", "all-arms"])
def test_relabellings_enumerate_every_labelling_once(arms, n):
    labels, exact = rescue._relabellings((3, 3, 3), arms, 10_000, 0)
    assert exact and labels.shape == (n, 9)
    assert len({tuple(r) for r in labels}) == n  # each relabelling once
    assert (labels[0] == [0, 0, 0, 1, 1, 1, 2, 2, 2]).all()  # the observed labels first
    assert all((np.bincount(r, minlength=3) == 3).all() for r in labels)  # arm sizes kept
    if arms == "treated_model":
        assert (labels[:, :3] == 0).all()  # control samples never relabelled


def test_relabellings_drawn_when_too_many_and_seeded():
    a, exact = rescue._relabellings((3, 3, 3), "all", 50, 4)
    b, _ = rescue._relabellings((3, 3, 3), "all", 50, 4)
    assert not exact and a.shape == (51, 9) and (a == b).all()


def test_label_statistics_match_reference():
    expr, groups = _arms_data(n_genes=400, disease_sd=1.5, seed=2)
    y = expr.to_numpy()
    labels, _ = rescue._relabellings((3, 3, 3), "all", 10_000, 0)
    labels = labels[::37]
    for k in (400, 60):  # every gene, and re-selection of the top 60
        np.testing.assert_allclose(rescue._label_statistics(y, labels, k, chunk=7), _ref_label_r(y, labels, k),
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arms", ["treated_model", "all"])
def test_label_null_of_pure_noise_is_minus_one_half(arms):
    # no disease, no treatment effect, equal arms, every gene kept (K = G): d = m - c and t = x - m share the model
    # mean, so corr(d, t) = -var(m) / sqrt(var(d) var(t)) = -(1/3) / sqrt((2/3)(2/3)) = -1/2 under any relabelling
    expr, groups = _arms_data(n_genes=4000, seed=5)
    g = _genes_from(expr, groups)
    r = rescue.label_permutation_reversal(g, expr, groups, **LEVELS, arms=arms)
    assert r["label_permutation_exact"] and r["n_label_genes"] == 4000
    assert r["r_log"] == pytest.approx(-0.5, abs=0.04)
    assert r["r_label_null_mean"] == pytest.approx(-0.5, abs=0.02)
    assert r["p_label_permutation"] > 0.05


def test_label_null_of_an_inert_compound_follows_the_shared_arm_formula():
    # disease effect sd 2, noise sd 1, 3 + 3 + 3 samples, inert compound, K = G: the treated <-> model null gives
    # corr(d, t) = -(1/3) / sqrt((4 + 2/3) * (2/3)) = -0.189, and the observed value is one of its draws
    expr, groups = _arms_data(n_genes=4000, disease_sd=2.0, seed=1)
    g = _genes_from(expr, groups)
    r = rescue.label_permutation_reversal(g, expr, groups, **LEVELS)
    expected = -(1 / 3) / np.sqrt((4 + 2 / 3) * (2 / 3))
    assert r["r_label_null_mean"] == pytest.approx(expected, abs=0.03)
    assert r["r_log"] == pytest.approx(expected, abs=0.05)
    assert r["p_label_permutation"] > 0.05 and r["n_label_permutations"] == 20
    # the gene-shuffling p-value of the same data calls this inert compound a reversal: the bias the new test removes
    assert rescue.global_reversal(g.assign(lfcSE_treatment=0.3), n_permutations=500)["p_permutation"] < 0.01


def test_label_permutation_detects_a_full_rescue():
    expr, groups = _arms_data(n_genes=3000, disease_sd=2.0, treated="rescue", seed=3)
    g = _genes_from(expr, groups, deg=np.zeros(3000, dtype=bool))
    g.loc[g["log2FC_disease"].abs().nlargest(300).index, "disease_deg"] = True
    tm = rescue.label_permutation_reversal(g, expr, groups, **LEVELS)
    al = rescue.label_permutation_reversal(g, expr, groups, **LEVELS, arms="all")
    assert tm["n_label_genes"] == 300 and tm["r_log"] < -0.8
    assert tm["p_label_permutation"] == pytest.approx(1 / 20)  # the smallest p that 3 + 3 samples allow
    # all arms: relabellings that only mix control and treated samples (C(6, 3) = 20) are as extreme under a full
    # rescue, so p is about 20 / 1680 at best
    assert al["p_label_permutation"] <= 20 / 1680 and al["r_label_null_mean"] > -0.8
    row = rescue.rescue_summary(rescue.classify_rescue(
        pd.DataFrame({"gene_id": g["gene_id"], "log2FoldChange": g["log2FC_disease"], "padj": 0.01}),
        pd.DataFrame({"gene_id": g["gene_id"], "log2FoldChange": g["log2FC_treatment"], "padj": 0.01})),
        treatment="t", disease="d", reversal=rescue.global_reversal(g, n_permutations=10),
        label_permutation=tm, label_permutation_all_arms=al)
    assert row["p_label_permutation"] == tm["p_label_permutation"]
    assert row["p_label_permutation_all_arms"] == al["p_label_permutation"]
    assert row["n_label_permutations_all_arms"] == 1680 and row["r_log"] == tm["r_log"]


def test_label_permutation_exact_p_by_hand():
    # 2 + 2 + 2 samples, 3 genes, all kept: the 6 treated <-> model relabellings, p = #{r_L <= r_obs} / 6
    expr = pd.DataFrame([[0, 0, 2, 2, 0, 1], [0, 1, 3, 4, 1, 1], [1, 1, 0, 1, 1, 0]], index=["a", "b", "c"],
                        columns=["c1", "c2", "m1", "m2", "x1", "x2"], dtype=float)
    groups = pd.Series({"c1": "control", "c2": "control", "m1": "model", "m2": "model", "x1": "treated",
                        "x2": "treated"})
    g = _genes_from(expr, groups)
    r = rescue.label_permutation_reversal(g, expr, groups, **LEVELS)
    y = expr.to_numpy()
    labels = [[0, 0, *lab] for lab in ([1, 1, 2, 2], [1, 2, 1, 2], [1, 2, 2, 1], [2, 1, 1, 2], [2, 1, 2, 1],
                                       [2, 2, 1, 1])]
    ref = _ref_label_r(y, np.array(labels), 3)
    assert r["r_log"] == pytest.approx(ref[0])
    assert r["p_label_permutation"] == pytest.approx(np.sum(ref <= ref[0] + 1e-12) / 6)
    assert r["r_label_null_mean"] == pytest.approx(ref.mean())


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"arms": "some"}, "arms must be one of"), ({"n_permutations": 0}, "n_permutations must be an integer"),
     ({"treated": "nope"}, "treated level 'nope' has no sample")],
    ids=["arms", "permutations", "level"],
)
def test_label_permutation_bad_inputs(kw, match):
    expr, groups = _arms_data(n_genes=50)
    with pytest.raises(DegflowInputError, match=match):
        rescue.label_permutation_reversal(_genes_from(expr, groups), expr, groups, **{**LEVELS, **kw})


def test_log_normalised_rejects_a_missing_size_factor():
    counts = pd.DataFrame({"s1": [10, 0], "s2": [5, 5]}, index=["a", "b"])
    np.testing.assert_allclose(rescue.log_normalised(counts, pd.Series({"s1": 2.0, "s2": 0.5})).to_numpy(),
                               np.log2([[6, 11], [1, 11]]))
    with pytest.raises(DegflowInputError, match="sample 's2' has no positive size factor"):
        rescue.log_normalised(counts, pd.Series({"s1": 1.0}))


# ------------------------------------------------------------------------------------------
# config checks (run at parse time by compound.smk)
# ------------------------------------------------------------------------------------------
CONTRASTS = {
    "model_vs_control": ["group", "model", "control"],
    "ehp_vs_model": ["group", "treated_ehp101", "model"],
    "aja_vs_model": ["group", "treated_aja", "model"],
    "ehp_vs_control": ["group", "treated_ehp101", "control"],
}


def _bulk(**extra):
    return {"contrasts": CONTRASTS, **extra}


def test_plan_compound_good(repo):
    plan = plan_compound(
        _bulk(rescue={"disease": "model_vs_control", "treatments": ["ehp_vs_model", "aja_vs_model"]},
              pathways={"bundled": "mouse", "gmt": [], "panels": ["HALLMARK_APOPTOSIS"]}, enrichment={},
              qpcr={"ct_table": "x.tsv", "reference_genes": ["Actb"], "contrasts": []}),
        bundled_dir=repo / "resources" / "genesets")
    assert plan.disease == "model_vs_control" and plan.treatments == ["ehp_vs_model", "aja_vs_model"]
    assert plan.panels == {"HALLMARK_APOPTOSIS": "HALLMARK_APOPTOSIS"}
    assert plan.qpcr_contrasts == list(CONTRASTS)


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        ({"rescue": {"disease": "model_vs_ctrl", "treatments": ["ehp_vs_model"]}},
         "'bulk.rescue.disease': 'model_vs_ctrl' is not a contrast"),
        ({"rescue": {"disease": "model_vs_control", "treatments": ["ehp_vs_mdl"]}},
         "'bulk.rescue.treatments': 'ehp_vs_mdl' is not a contrast"),
        ({"rescue": {"disease": "model_vs_control", "treatments": ["ehp_vs_control"]}},
         r"must compare against the disease model, i.e. \[group, <treated level>, model\]"),
        ({"rescue": {"disease": "model_vs_control", "treatments": ["ehp_vs_model", "ehp_vs_model"]}},
         "listed twice"),
        ({"enrichment": {}}, "'bulk.enrichment' needs gene sets"),
        ({"pathways": {"bundled": None, "gmt": []}}, "no gene sets"),
        ({"pathways": {"bundled": "mouse", "gmt": [], "panels": ["HALLMARK_APOPTOSYS"]}},
         "did you mean 'HALLMARK_APOPTOSIS'"),
        ({"pathways": {"bundled": None, "gmt": ["/nonexistent/sets.gmt"]}}, "'/nonexistent/sets.gmt' does not exist"),
        ({"qpcr": {"ct_table": "x", "reference_genes": ["Actb"], "contrasts": ["nope"]}},
         "'bulk.qpcr.contrasts': 'nope' is not a contrast"),
    ],
    ids=["disease-typo", "treatment-typo", "wrong-reference", "twice", "enrichment-no-sets", "pathways-empty",
         "panel-typo", "gmt-missing", "qpcr-contrast"],
)
def test_plan_compound_bad(repo, extra, match):
    with pytest.raises(DegflowInputError, match=match):
        plan_compound(_bulk(**extra), bundled_dir=repo / "resources" / "genesets")


def test_pathway_group_by_without_a_factor_contrast():
    """The pathway figures' grouping: group_by, else the first [factor, test, reference] contrast's factor, else the
    design's last factor (every contrast a name/vector/list one: was a StopIteration traceback at parse time)."""
    from degflow.errors import DegflowInputError
    from degflow.plan.compound import pathway_group_by

    named = {"dex": {"name": "dex_trt_vs_untrt"}, "v": {"vector": [0, 0, 0, 0, 1]}}
    assert pathway_group_by({"contrasts": named}, ["cell", "dex"]) is None  # no bulk.pathways: nothing to group
    pw = {"pathways": {"bundled": "human", "group_by": None}}
    assert pathway_group_by({"contrasts": named, **pw}, ["cell", "dex"]) == "dex"
    assert pathway_group_by({"contrasts": {**named, "c": ["cell", "N61311", "N052611"]}, **pw}, ["cell", "dex"]) == "cell"
    assert pathway_group_by({"contrasts": named, "pathways": {"group_by": "cell"}}, ["cell", "dex"]) == "cell"
    with pytest.raises(DegflowInputError, match=r"^config key 'bulk.pathways.group_by' is needed"):
        pathway_group_by({"contrasts": {"dose": {"name": "dose"}}, **pw}, [])
