"""Differential cell-type composition (propeller) against speckle's own test tables and limma in R.

References (tests/data, made by tests/_scripts/propeller_reference.R with limma 3.54.1 in R 4.2):
- propeller_speckle: speckle's test snapshots (propeller, propeller.ttest, propeller.anova, getTransformedProps;
  4 decimals as speckle writes them) and the same tests at full precision from limma in R;
- propeller_kang2018: cells per sample x cell type (and x Leiden cluster) of degflow's Kang et al. 2018 run (8
  donors, ctrl vs 6 h IFN-beta, paired by donor) and limma's results on them (logit and asin, robust and not, the
  donor F test).
Bad input: plan_composition on the Kang sample sheet (in the repo) and one snakemake dry run on the bundled PBMC 3k
files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from degflow.errors import DegflowInputError
from degflow.plan.composition import CompositionTest, plan_composition
from degflow.singlecell.composition import cell_counts, propeller, transformed_proportions

DATA = Path(__file__).parent / "data"
SPECKLE = DATA / "propeller_speckle"
KANG = DATA / "propeller_kang2018"
RTOL = 1e-10  # measured: <= 1e-12 (the robust df prior comes from a root search: R uniroot vs scipy brentq)


def _meta(groups: dict[str, str], order: list[str], name: str = "group") -> pd.DataFrame:
    return pd.DataFrame({name: pd.Categorical(list(groups.values()), categories=order)}, index=list(groups))


@pytest.fixture(scope="module")
def speckle_counts() -> pd.DataFrame:
    return pd.read_csv(SPECKLE / "counts.tsv", sep="\t")


@pytest.fixture(scope="module")
def snapshots() -> pd.DataFrame:
    return pd.read_csv(SPECKLE / "speckle_snapshots.tsv", sep="\t", dtype={"value": str})


def _as_written(x: float, written: str) -> bool:
    """Whether ``x`` prints as speckle's snapshot value (jsonlite: 4 decimals; below 1e-5, 5 significant digits)."""
    if "e" in written:
        return np.isclose(x, float(written), rtol=5e-5, atol=0)
    return abs(round(x, 4) - float(written)) < 1e-12


def _two_groups(counts):
    c = counts[counts["sample"].isin(["s1", "s2", "s3", "s4"])]
    return c, _meta({"s1": "A", "s2": "A", "s3": "B", "s4": "B"}, ["B", "A"])


# ---------------------------------------------------------------------------------------------
# speckle's snapshot tables
# ---------------------------------------------------------------------------------------------


def test_get_transformed_props_snapshot(speckle_counts, snapshots):
    c, _ = _two_groups(speckle_counts)
    wide = c.pivot(index="sample", columns="cell_type", values="n_cells")
    props, trans = transformed_proportions(wide, transform="logit")
    snap = snapshots[snapshots["snapshot"] == "getTransformedProps"]
    assert len(snap) == 36
    for _, r in snap.iterrows():
        s, ct = r["row"].split(":")
        value = {"Counts.Freq": wide.loc[s, ct], "TransformedProps.Freq": trans.loc[s, ct],
                 "Proportions.Freq": props.loc[s, ct]}[r["column"]]
        assert _as_written(float(value), r["value"]), (r["row"], r["column"], value, r["value"])


@pytest.mark.parametrize(("snapshot", "transform", "robust"), [("propeller", "asin", False),
                                                              ("propeller.ttest", "logit", True)])
def test_propeller_ttest_snapshots(speckle_counts, snapshots, snapshot, transform, robust):
    """propeller(..., robust=FALSE, transform="asin") and propeller.ttest(..., robust=TRUE) on speckle's data."""
    c, meta = _two_groups(speckle_counts)
    res = propeller(c, design="~ group", tests=[CompositionTest("t", "group", ("A", "B"), "t")], metadata=meta,
                    transform=transform, robust=robust)["t"].set_index("cell_type")
    snap = snapshots[snapshots["snapshot"] == snapshot]
    grp = {"propeller": ("grp1", "grp2"), "propeller.ttest": ("grpA", "grpB")}[snapshot]
    columns = {"BaselineProp.Freq": "baseline_prop", f"PropMean.{grp[0]}": "prop_A", f"PropMean.{grp[1]}": "prop_B",
               "PropRatio": "ratio", "Tstatistic": "statistic", "P.Value": "pvalue", "FDR": "padj"}
    assert set(snap["column"]) <= set(columns)
    for _, r in snap.iterrows():
        assert _as_written(res.loc[r["row"], columns[r["column"]]], r["value"]), (snapshot, r.to_dict())
    # speckle sorts by p-value as well
    assert list(res.index) == list(dict.fromkeys(snap["row"]))


def test_propeller_anova_snapshot(speckle_counts, snapshots):
    """propeller.anova(..., coef=1:3, robust=TRUE): three groups of two samples, moderated F."""
    meta = _meta({f"s{i}": g for i, g in zip(range(1, 7), "AABBCC", strict=True)}, ["A", "B", "C"])
    res = propeller(speckle_counts, design="~ group", tests=[CompositionTest("F", "group", ("A", "B", "C"), "F")],
                    metadata=meta)["F"].set_index("cell_type")
    snap = snapshots[snapshots["snapshot"] == "propeller.anova"]
    columns = {"PropMean.grpA": "prop_A", "PropMean.grpB": "prop_B", "PropMean.grpC": "prop_C",
               "Fstatistic": "statistic", "P.Value": "pvalue", "FDR": "padj"}
    for _, r in snap.iterrows():
        assert _as_written(res.loc[r["row"], columns[r["column"]]], r["value"]), r.to_dict()
    assert list(res.index) == list(dict.fromkeys(snap["row"]))


# ---------------------------------------------------------------------------------------------
# limma in R, full precision
# ---------------------------------------------------------------------------------------------


def _compare(res: pd.DataFrame, ref: pd.DataFrame, columns: dict[str, str]) -> None:
    ref = ref.set_index("cell_type").loc[res["cell_type"]]
    for ours, theirs in columns.items():
        np.testing.assert_allclose(res[ours].to_numpy(), ref[theirs].to_numpy(), rtol=RTOL, atol=0, err_msg=ours)


def test_ttest_equals_limma_in_r(speckle_counts):
    ref = pd.read_csv(SPECKLE / "ttest_r.tsv", sep="\t")
    c, meta = _two_groups(speckle_counts)
    for name, r in ref.groupby("test", sort=False):
        transform, robust = name.split("_")[1], name.endswith("robust")
        res = propeller(c, design="~ group", tests=[CompositionTest("t", "group", ("A", "B"), "t")], metadata=meta,
                        transform=transform, robust=robust)["t"]
        _compare(res, r, {"prop_A": "prop_A", "prop_B": "prop_B", "ratio": "ratio", "statistic": "statistic",
                          "pvalue": "pvalue", "padj": "padj"})


def test_anova_equals_limma_in_r(speckle_counts):
    ref = pd.read_csv(SPECKLE / "anova_r.tsv", sep="\t")
    meta = _meta({f"s{i}": g for i, g in zip(range(1, 7), "AABBCC", strict=True)}, ["A", "B", "C"])
    for name, r in ref.groupby("test", sort=False):
        transform, robust = name.split("_")[1], name.endswith("robust")
        res = propeller(speckle_counts, design="~ group", tests=[CompositionTest("F", "group", ("A", "B", "C"), "F")],
                        metadata=meta, transform=transform, robust=robust)["F"]
        _compare(res, r, {"prop_A": "prop_A", "prop_C": "prop_C", "statistic": "statistic", "pvalue": "pvalue",
                          "padj": "padj"})


KANG_FILES = {"cell_types": ("cell_counts.tsv", "propeller_r.tsv"),
              "leiden_1.0": ("cell_counts_leiden_1.0.tsv", "propeller_leiden_1.0_r.tsv")}


def kang_data(grouping: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    counts_file, ref_file = KANG_FILES[grouping]
    counts = pd.read_csv(KANG / counts_file, sep="\t", dtype={"cell_type": str})
    meta = counts.drop_duplicates("sample").set_index("sample")[["donor", "condition"]]
    meta["donor"] = pd.Categorical(meta["donor"], categories=sorted(meta["donor"].unique()))
    meta["condition"] = pd.Categorical(meta["condition"], categories=["ctrl", "stim"])
    return counts, meta, pd.read_csv(KANG / ref_file, sep="\t", dtype={"cell_type": str})


@pytest.mark.parametrize("grouping", list(KANG_FILES))
@pytest.mark.parametrize(("transform", "robust"), [("logit", True), ("asin", True), ("logit", False)])
def test_kang2018_paired_by_donor_equals_limma_in_r(grouping, transform, robust):
    """Real data: 16 samples (8 donors x ctrl/stim), ~ donor + condition, and the 8-donor F test; degflow's 8 cell
    types and its 14 Leiden clusters."""
    counts, meta, ref = kang_data(grouping)
    ref = ref[(ref["transform"] == transform) & (ref["robust"] == robust)]
    assert len(ref) == counts["cell_type"].nunique() >= 8
    donors = tuple(meta["donor"].cat.categories)
    tests = [CompositionTest("stim_vs_ctrl", "condition", ("stim", "ctrl"), "t"),
             CompositionTest("donor_all_levels", "donor", donors, "F")]
    res = propeller(counts, design="~ donor + condition", tests=tests, metadata=meta, transform=transform,
                    robust=robust)
    _compare(res["stim_vs_ctrl"], ref, {"prop_ctrl": "prop_ctrl", "prop_stim": "prop_stim", "ratio": "ratio",
                                        "statistic": "statistic", "pvalue": "pvalue", "padj": "padj"})
    _compare(res["stim_vs_ctrl"], ref, {"statistic": "t_coef"})  # speckle's ~0 + condition + donor == ours
    _compare(res["donor_all_levels"], ref, {"statistic": "donor_F", "pvalue": "donor_F_pvalue"})


def test_kang2018_clusters_exercise_the_robust_outlier_branch():
    """With 14 clusters limma's robust prior df differs between clusters and from the plain fit (fitFDistRobustly's
    outlier branch), so the robust comparison above tests it; with the 8 cell types it equals the plain fit."""
    ref = kang_data("leiden_1.0")[2]
    rob = ref[(ref["transform"] == "logit") & ref["robust"]]["df_prior"].to_numpy()
    plain = ref[(ref["transform"] == "logit") & ~ref["robust"]]["df_prior"].to_numpy()
    assert len(np.unique(rob)) > 1 and not np.allclose(rob, plain)


# ---------------------------------------------------------------------------------------------
# counts table, edge cases
# ---------------------------------------------------------------------------------------------


def test_cell_counts_long_table_with_design_columns():
    obs = pd.DataFrame({"sample": ["a", "a", "b", "c", "c", "c", "d"],
                        "cell_type": pd.Categorical(["T", "B", "T", "T", "NK", "NK", "B"],
                                                    categories=["T", "B", "NK", "unused"])})
    meta = pd.DataFrame({"condition": pd.Categorical(["x", "x", "y", "y"], categories=["x", "y"])},
                        index=["a", "b", "c", "d"])
    counts = cell_counts(obs, groupby="cell_type", sample_key="sample", metadata=meta)
    assert list(counts.columns) == ["sample", "cell_type", "n_cells", "condition"]
    assert len(counts) == 4 * 3  # zeros kept, the unused category dropped
    assert counts["n_cells"].sum() == len(obs)
    assert counts.set_index(["sample", "cell_type"]).loc[("c", "NK"), "n_cells"] == 2
    assert counts.set_index(["sample", "cell_type"]).loc[("b", "NK"), "n_cells"] == 0
    with pytest.raises(DegflowInputError, match="'leiden_1.0' is not an obs column"):
        cell_counts(obs, groupby="leiden_1.0", sample_key="sample", metadata=meta)


def test_replicate_without_cells_is_left_out_loudly(speckle_counts, caplog):
    meta = _meta({f"s{i}": g for i, g in zip(range(1, 7), "AABBCC", strict=True)}, ["A", "B", "C"])
    zero = speckle_counts.copy()
    zero.loc[zero["sample"] == "s6", "n_cells"] = 0
    tests = [CompositionTest("BA", "group", ("B", "A"), "t")]
    res = propeller(zero, design="~ group", tests=tests, metadata=meta)["BA"]
    assert "replicate(s) without cells left out: s6" in caplog.text
    assert np.isfinite(res["pvalue"]).all()
    with pytest.raises(DegflowInputError, match="group 'C' keeps 1 replicate with cells"):
        propeller(zero, design="~ group", tests=[CompositionTest("CA", "group", ("C", "A"), "t")], metadata=meta)


def test_two_cell_types_turn_robust_off(speckle_counts, caplog):
    c, meta = _two_groups(speckle_counts)
    c = c[c["cell_type"] != "c2"]
    res = propeller(c, design="~ group", tests=[CompositionTest("t", "group", ("A", "B"), "t")], metadata=meta)
    plain = propeller(c, design="~ group", tests=[CompositionTest("t", "group", ("A", "B"), "t")], metadata=meta,
                      robust=False)
    assert "robust = false" in caplog.text
    pd.testing.assert_frame_equal(res["t"], plain["t"])


# ---------------------------------------------------------------------------------------------
# bad input, before the DAG
# ---------------------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
PB = {"groupby": "cell_type", "sample_key": "sample", "design": "~ donor + condition",
      "reference_levels": {"condition": "ctrl"}, "contrasts": {"stim_vs_ctrl": ["condition", "stim", "ctrl"]}}
EMPTY = {"groupby": None, "sample_key": None, "design": None, "reference_levels": None, "contrasts": None,
         "all_levels": True, "transform": "logit", "robust": True}


def kang_sheet(edit=None) -> pd.DataFrame:
    sheet = pd.read_csv(REPO / "config/examples/kang2018_samples.tsv", sep="\t", dtype=str).set_index("sample")
    return sheet if edit is None else edit(sheet)


def plan(comp=None, *, pb=PB, sheet=None, annotated=True):
    return plan_composition({**EMPTY, **(comp or {})}, kang_sheet() if sheet is None else sheet, pseudobulk=pb,
                            clusterings=["leiden_0.5", "leiden_1.0"], annotated=annotated, source="samples.tsv")


def test_defaults_come_from_the_pseudobulk_section():
    p = plan()
    assert (p.groupby, p.sample_key, p.design) == ("cell_type", "sample", "~ donor + condition")
    assert p.names == ["stim_vs_ctrl"] and p.tests[0].levels == ("stim", "ctrl")
    assert len(p.metadata) == 16 and list(p.metadata["condition"].cat.categories) == ["ctrl", "stim"]
    own = plan({"groupby": "leiden_1.0", "design": "~ condition", "contrasts": {"s": ["condition", "stim", "ctrl"]}},
               pb=None)
    assert (own.groupby, own.design, own.names) == ("leiden_1.0", "~ condition", ["s"])


def test_groupby_cell_type_reference_with_a_reference():
    """pseudobulk.groupby: cell_type_reference (the README's Kang example) is taken by composition when a
    singlecell.reference is set, and refused in one line when it is not."""
    pb = {**PB, "groupby": "cell_type_reference"}
    p = plan_composition(EMPTY, kang_sheet(), pseudobulk=pb, clusterings=["leiden_1.0"], annotated=False,
                         source="samples.tsv", reference=True)
    assert p.groupby == "cell_type_reference" and p.names == ["stim_vs_ctrl"]
    with pytest.raises(DegflowInputError, match="groupby': cell_type_reference needs singlecell.reference"):
        plan_composition(EMPTY, kang_sheet(), pseudobulk=pb, clusterings=["leiden_1.0"], annotated=True,
                         source="samples.tsv")


def test_three_levels_add_an_all_levels_f_test():
    def three(s):
        s = s.copy()
        s.loc[s["donor"].isin(["s1244", "s1256", "s1488"]) & (s["condition"] == "stim"), "condition"] = "drug"
        return s

    p = plan({"contrasts": {"stim_vs_ctrl": ["condition", "stim", "ctrl"], "drug_vs_ctrl": ["condition", "drug",
                                                                                             "ctrl"]}},
             sheet=kang_sheet(three))
    assert p.names == ["stim_vs_ctrl", "drug_vs_ctrl", "condition_all_levels"]
    assert p.tests[-1].kind == "F" and p.tests[-1].levels == ("ctrl", "drug", "stim")
    assert plan({"all_levels": False}, sheet=kang_sheet(three)).names == ["stim_vs_ctrl"]


@pytest.mark.parametrize(("comp", "pb", "sheet_edit", "annotated", "message"), [
    ({"groupby": "celltype"}, PB, None, True,
     "groupby': 'celltype' is neither cell_type, cell_type_reference nor one of the clusterings"),
    ({}, PB, None, False, "groupby': cell_type needs singlecell.markers"),
    ({"sample_key": "patient"}, PB, None, True, "sample_key': 'patient' is not 'sample' nor a column"),
    ({}, None, None, True, "composition.design' is not set and there is no singlecell.pseudobulk section"),
    ({"contrasts": {"x": ["condition", "ifn", "ctrl"]}}, PB, None, True,
     r"contrasts.x': level 'ifn' is not in column 'condition' .*levels: ctrl, stim"),
    ({"design": "~ donor + treatment"}, PB, None, True, "variable 'treatment' is not a column"),
    ({"design": "~ condition"}, PB, lambda s: s[~s.index.isin([f"{d}_stim" for d in
                                                               ["s101", "s1015", "s1016", "s1039", "s107", "s1244",
                                                                "s1256"]])], True,
     r"condition 'stim' has 1 replicate \(sample\) .* needs >= 2 per tested level"),
    ({"design": "~ condition", "sample_key": "donor"}, PB, None, True,
     "'condition' takes several values within donor"),
], ids=["unknown-groupby", "no-annotation", "unknown-sample-key", "no-design", "absent-level", "unknown-variable",
        "one-replicate", "not-constant"])
def test_bad_input(comp, pb, sheet_edit, annotated, message):
    with pytest.raises(DegflowInputError, match=message):
        plan(comp, pb=pb, sheet=kang_sheet(sheet_edit) if sheet_edit else None, annotated=annotated)


def test_bad_input_stops_the_cli_in_one_line(tmp_path):
    """A dry run on the bundled PBMC 3k files (two pretend samples per condition) stops in one degflow: line."""
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    sc = cfg["singlecell"]
    path = str(REPO / pd.read_csv(REPO / sc["samples"], sep="\t")["path"].iloc[0])
    sheet = pd.DataFrame({"sample": ["a1", "a2", "b1", "b2"], "path": path, "format": "auto",
                          "condition": ["ctrl", "ctrl", "stim", "stim"]})
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    sc.update(samples=str(tmp_path / "samples.tsv"), markers=str(REPO / sc["markers"]),
              composition={"design": "~ condition", "contrasts": {"x": ["condition", "ifn", "ctrl"]}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "singlecell": sc}))
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run([str(snakemake), "-s", str(REPO / "Snakefile"), "--configfile", "config.yaml", "-n",
                           "--cores", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err and 'File "' not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("degflow:")]
    assert len(lines) == 1 and "composition.contrasts.x': level 'ifn' is not in column 'condition'" in lines[0], err
    assert not (tmp_path / "results").exists()


def test_figure_one_panel_per_cell_type_with_its_fdr(speckle_counts):
    from degflow.pl.singlecell import composition_figure

    meta = _meta({f"s{i}": g for i, g in zip(range(1, 7), "AABBCC", strict=True)}, ["A", "B", "C"])
    counts = speckle_counts.join(meta, on="sample")
    tests = [CompositionTest("F", "group", ("A", "B", "C"), "F"), CompositionTest("CA", "group", ("C", "A"), "t")]
    res = propeller(counts, design="~ group", tests=tests, metadata=meta)
    for test in tests:
        fig = composition_figure(counts, res[test.name], test=test)
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        assert titles == [f"{ct}\nFDR = {q:.2g}" for ct, q in zip(res[test.name]["cell_type"], res[test.name]["padj"], strict=True)]
        ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
        assert ticks == (["A", "B", "C"] if test.kind == "F" else ["A", "C"])


def test_plan_survives_snakemake_params_as_plain_records():
    """The rule passes the replicate table and tests as plain lists; they come back with their factor levels."""
    from degflow.plan.composition import metadata_frame, metadata_records, tests_from_records, tests_to_records

    p = plan()
    back = metadata_frame(json.loads(json.dumps(metadata_records(p.metadata))))
    pd.testing.assert_frame_equal(back, p.metadata, check_names=False)
    assert tests_from_records(json.loads(json.dumps(tests_to_records(p.tests)))) == p.tests
