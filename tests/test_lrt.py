"""LRT, coefficient-name / numeric-vector / list contrasts and numeric covariates against DESeq2 1.38 in R.

References: ``tests/_scripts/deseq2_lrt_contrasts.R`` on the data bundled in the repository
(``tests/data/deseq2_lrt_contrasts``: every 50th tested gene of each table, and over all genes the
number with padj < 0.05, the NA counts and the independent-filtering threshold).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from degflow.de.fit import fit_deseq
from degflow.de.results import coefficient_names, contrast_results, lrt_results
from degflow.errors import DegflowInputError
from degflow.plan.bulk import plan_bulk
from degflow.plan.design import check_design, results_names
from degflow.plan.schema import validate_config

REF = Path(__file__).parent / "data" / "deseq2_lrt_contrasts"
COLUMNS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN positions differ"
    ok = ~np.isnan(a)
    return float(np.max(np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-300))) if ok.any() else 0.0


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    return pd.read_csv(REF / "summary.tsv", sep="\t", index_col=0)


def compare(res: pd.DataFrame, table: str, summary: pd.DataFrame, *, tol: dict[str, float],
            optimizer_genes: int = 0) -> None:
    """Every column of ``res`` against R's table, and the whole-table counts.

    ``optimizer_genes``: how many stored genes may differ beyond ``tol`` in ``stat``/``pvalue`` because a
    model of theirs was fitted by the L-BFGS-B fallback (R's ``optim``; scipy here, a documented deviation).
    """
    r = pd.read_csv(REF / f"{table}.tsv.gz", sep="\t", index_col=0, dtype={"gene_id": str})
    ours = res.loc[r.index.astype(str)]
    for col in COLUMNS:
        a, b = ours[col].to_numpy(dtype=float), r[col].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(a), np.isnan(b)), (table, col)
        rel = np.abs(a - b) / np.maximum(np.abs(b), 1e-300)
        allowed = optimizer_genes if col in ("stat", "pvalue") else 0
        assert int(np.sum(rel[~np.isnan(a)] >= tol.get(col, 1e-6))) <= allowed, (table, col, np.nanmax(rel))
    s = summary.loc[table]
    tested = res["baseMean"] > 0
    assert int(tested.sum()) == s["n_tested"]
    assert int((res["padj"] < 0.05).sum()) == s["n_padj_below_alpha"], table
    assert int((res["pvalue"].isna() & tested).sum()) == s["n_pvalue_na"]
    assert int((res["padj"].isna() & tested).sum()) == s["n_padj_na"]
    assert res.attrs["filter_threshold"] == pytest.approx(s["filter_threshold"], rel=1e-6)


@pytest.fixture(scope="module")
def gse(repo) -> object:
    counts = pd.read_csv(repo / "resources" / "gse121659" / "counts.tsv", sep="\t", index_col=0)
    sheet = pd.read_csv(repo / "config" / "examples" / "gse121659_samples.tsv", sep="\t", index_col=0)
    counts.index = counts.index.astype(str)
    return fit_deseq(counts, sheet[["group"]], "~ group", {"group": "control"}, n_cpus=1)


@pytest.fixture(scope="module")
def airway(repo) -> tuple[pd.DataFrame, pd.DataFrame]:
    d = repo / "resources" / "airway"
    return pd.read_csv(d / "counts.tsv", sep="\t", index_col=0), pd.read_csv(d / "samples.tsv", sep="\t", index_col=0)


def _names(table: str) -> list[str]:
    return (REF / f"{table}_resultsNames.txt").read_text().split()


def test_lrt_across_four_arms_matches_r(gse, summary):
    res = lrt_results(gse, "~ 1", alpha=0.05)
    assert res.attrs["df"] == 3 and res.attrs["coefficient"] == "group_treated_ehp101_vs_control"
    # R: 3,813 genes with padj < 0.05 of 23,838 tested (asserted in compare)
    compare(res, "gse121659_lrt", summary, tol={"stat": 1e-5, "pvalue": 1e-4, "padj": 1e-4})


def test_results_names_match_r(gse, airway):
    assert coefficient_names(gse)[0] == _names("gse121659")
    _, samples = airway
    for design, table in (("~ cell + avgLength + dex", "airway_covariate"),
                          ("~ dex + avgLength + dex:avgLength", "airway_interaction")):
        _, _, meta = check_design(samples, design, {"dex": "untrt"}, {})
        assert results_names(design, meta) == _names(table)


@pytest.mark.parametrize("table, spec", [
    ("gse121659_name_model", {"name": "group_model_vs_control"}),
    ("gse121659_vector", {"vector": [0, -1, 0.5, 0.5]}),
    ("gse121659_list_values", {"list": [["group_treated_aja_vs_control", "group_treated_ehp101_vs_control"],
                                        ["group_model_vs_control"]], "list_values": [0.5, -1]}),
    ("gse121659_list", {"list": [["group_treated_ehp101_vs_control"], ["group_treated_aja_vs_control"]]}),
])
def test_name_vector_and_list_contrasts_match_r(gse, summary, table, spec):
    res = contrast_results(gse, spec, alpha=0.05)
    compare(res, table, summary, tol={"pvalue": 1e-4, "padj": 1e-4, "stat": 1e-5})


def test_numeric_covariate_and_interaction_match_r(airway, summary):
    counts, samples = airway
    cov = fit_deseq(counts, samples, "~ cell + avgLength + dex", {"dex": "untrt"}, n_cpus=1)
    assert pd.api.types.is_float_dtype(cov.obs["avgLength"])  # a numeric column stays a covariate, as in R
    # one gene's gene-wise dispersion (ENSG00000135541: 1.9e-3 here, 4.4e-7 in R) puts it in the trend fit, which
    # moves the trend by 1e-4 (a0 0.0110174 vs 0.0110185), so this model agrees less closely (measured: log2FC
    # 2.2e-2, lfcSE 8.3e-5, p-values 1.1e-2 relative at worst); the gene counts at padj < 0.05 are R's exactly
    tol = {"log2FoldChange": 3e-2, "lfcSE": 2e-4, "stat": 3e-2, "pvalue": 2e-2, "padj": 2e-2}
    compare(contrast_results(cov, {"name": "avgLength"}, alpha=0.05), "airway_covariate_avgLength", summary, tol=tol)
    compare(contrast_results(cov, {"name": "dex_trt_vs_untrt"}, alpha=0.05), "airway_covariate_dex", summary,
            tol=tol)
    compare(lrt_results(cov, "~ cell + avgLength", alpha=0.05), "airway_covariate_lrt", summary, tol=tol)
    inter = fit_deseq(counts, samples, "~ dex + avgLength + dex:avgLength", {"dex": "untrt"}, n_cpus=1)
    tol = {"log2FoldChange": 1e-7, "lfcSE": 1e-7, "stat": 1e-7, "pvalue": 1e-7, "padj": 1e-7}  # measured 4e-9
    compare(contrast_results(inter, {"name": "dextrt.avgLength"}, alpha=0.05), "airway_interaction", summary,
            tol=tol)
    lrt = lrt_results(inter, "~ dex + avgLength", alpha=0.05)
    assert lrt.attrs["coefficient"] == "dextrt.avgLength" and lrt.attrs["df"] == 1
    # 3 of the 670 stored genes have a reduced model fitted by L-BFGS-B (LR statistics of -45 / -357, -0.53 /
    # -0.36 and 0.75 / 0.46 in R / here); the others agree to 1e-7
    compare(lrt, "airway_interaction_lrt", summary, tol={**tol, "stat": 1e-4}, optimizer_genes=3)


def test_few_distinct_numeric_values_warn(airway, caplog):
    _, samples = airway
    sheet = samples.assign(batch=[1, 1, 2, 2, 3, 3, 1, 2])
    with caplog.at_level("WARNING", logger="degflow"):
        _, covariates, _ = check_design(sheet, "~ batch + dex", {"dex": "untrt"}, {})
    assert covariates == ["batch"]
    assert "only 3 distinct values (1, 2, 3)" in caplog.text and "reference_levels" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="degflow"):
        factors, _, meta = check_design(sheet, "~ batch + dex", {"dex": "untrt", "batch": "1"}, {})
    assert "batch" in factors and list(meta["batch"].cat.categories) == ["1", "2", "3"] and not caplog.text


@pytest.mark.parametrize("spec, message", [
    ({"name": "group_model"}, "'group_model' is not a coefficient of the design (did you mean "
                              "'group_model_vs_control'?); resultsNames: Intercept, group_model_vs_control"),
    ({"vector": [0, 1, -1]}, "has 3 numbers but the design has 4 coefficients"),
    ({"list": [["group_model_vs_control"], ["group_model_vs_control"]]}, "is in both the numerator"),
])
def test_bad_contrast_specs(repo, spec, message):
    sheet = pd.read_csv(repo / "config" / "examples" / "gse121659_samples.tsv", sep="\t", index_col=0)
    with pytest.raises(DegflowInputError, match="^config key 'bulk.contrasts.c") as err:
        check_design(sheet, "~ group", {"group": "control"}, {"c": spec})
    assert message in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# Bad input: refused before the DAG, one `degflow:` line (as tests/test_bad_input.py; bundled airway genes)
# ---------------------------------------------------------------------------------------------------------
SNAKEMAKE = Path(sys.executable).with_name("snakemake")

BAD = {
    # name: (bulk overrides, fragments of the one line)
    "reduced_with_variable_not_in_design": (
        {"lrt": {"x": {"reduced": "~ albut"}}},
        ["'bulk.lrt.x.reduced'", "'~ albut' is not nested in the design '~ cell + dex'", "'albut'"]),
    "reduced_not_nested": (
        {"lrt": {"x": {"reduced": "~ cell:dex"}}}, ["'bulk.lrt.x.reduced'", "'~ cell:dex' is not nested"]),
    "unknown_coefficient_name": (
        {"contrasts": {"x": {"name": "dex_treated_vs_untrt"}}},
        ["'bulk.contrasts.x.name'", "'dex_treated_vs_untrt'", "did you mean 'dex_trt_vs_untrt'",
         "resultsNames: Intercept, cell_N061011_vs_N052611, cell_N080611_vs_N052611, cell_N61311_vs_N052611, "
         "dex_trt_vs_untrt"]),
    "lrt_with_stock_pydeseq2": (
        {"lrt": {"x": {"reduced": "~ cell"}}, "de": {"flavor": "pydeseq2"}},
        ["'bulk.lrt.x'", "needs bulk.de.flavor deseq2"]),
    "vector_of_wrong_length": (
        {"contrasts": {"x": {"vector": [0, 0, 0, 1]}}},
        ["'bulk.contrasts.x.vector' has 4 numbers but the design has 5 coefficients", "Intercept, "]),
}


@pytest.fixture(scope="module")
def airway_small(repo):
    d = repo / "resources" / "airway"
    counts = pd.read_csv(d / "counts.tsv", sep="\t", index_col=0).iloc[:3000]
    sheet = pd.read_csv(d / "samples.tsv", sep="\t")[["sample_id", "cell", "dex", "albut"]]
    return counts, sheet


def _experiment(tmp: Path, airway_small, **overrides) -> Path:
    counts, sheet = airway_small
    counts.to_csv(tmp / "counts.tsv", sep="\t")
    sheet.to_csv(tmp / "samples.tsv", sep="\t", index=False)
    bulk = {"counts": str(tmp / "counts.tsv"), "samples": str(tmp / "samples.tsv"), "design": "~ cell + dex",
            "reference_levels": {"dex": "untrt"}, "contrasts": {"dex_vs_untrt": ["dex", "trt", "untrt"]}, **overrides}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump({"results": str(tmp / "results"), "bulk": bulk}))
    return path


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_lrt_and_contrast_stop_before_the_dag(repo, tmp_path, airway_small, case):
    overrides, fragments = BAD[case]
    cfg = _experiment(tmp_path, airway_small, **overrides)
    with pytest.raises(DegflowInputError) as info:
        plan_bulk(validate_config(yaml.safe_load(cfg.read_text()))["bulk"])
    assert "\n" not in str(info.value)
    for frag in fragments:
        assert frag in str(info.value), f"{frag!r} not in {info.value}"
    proc = subprocess.run([str(SNAKEMAKE), "-n", "-s", str(repo / "Snakefile"), "--configfile", str(cfg), "--cores",
                           "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("degflow:")]
    assert len(lines) == 1 and all(f in lines[0] for f in fragments), err
    assert not (tmp_path / "results").exists()


def test_lrt_and_coefficient_contrasts_dry_run(repo, tmp_path, airway_small):
    cfg = _experiment(tmp_path, airway_small, lrt={"dex_any": {"reduced": "~ cell"}},
                      contrasts={"dex": {"name": "dex_trt_vs_untrt"}, "v": {"vector": [0, 0, 0, 0, 1]},
                                 "l": {"list": [["dex_trt_vs_untrt"]]}})
    plan, _ = plan_bulk(validate_config(yaml.safe_load(cfg.read_text()))["bulk"])
    assert plan.lrt["dex_any"]["group_by"] == "dex" and plan.lrt["dex_any"]["df"] == 1
    assert plan.lrt["dex_any"]["coefficient"] == "dex_trt_vs_untrt"
    proc = subprocess.run([str(SNAKEMAKE), "-n", "-s", str(repo / "Snakefile"), "--configfile", str(cfg), "--cores",
                           "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bulk_lrt_patterns" in proc.stdout and "bulk_lrt" in proc.stdout


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", index_col="gene_id")


def test_workflow_runs_lrt_and_coefficient_contrasts(repo, tmp_path, airway_small):
    """A real snakemake run (3,000 airway genes): a name contrast equals its [factor, test, reference] twin (R
    takes the same coefficient for both), and the LRT's tables, pattern figure and workbook sheet are written."""
    cfg = _experiment(tmp_path, airway_small, lrt={"dex_any": {"reduced": "~ cell"}},
                      contrasts={"dex_vs_untrt": ["dex", "trt", "untrt"], "dex_coef": {"name": "dex_trt_vs_untrt"}})
    res = tmp_path / "results" / "bulk"
    targets = [res / "de" / c / "results.tsv" for c in ("dex_vs_untrt", "dex_coef")]
    targets += [res / "lrt" / "dex_any" / "patterns.png", res / "de" / "deg_tables.xlsx", res / "de" / "summary.tsv"]
    proc = subprocess.run([str(SNAKEMAKE), "-s", str(repo / "Snakefile"), "--configfile", str(cfg), "--cores", "2",
                           "--nolock", *map(str, targets)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = read(targets[0]), read(targets[1])
    for col in ("log2FoldChange", "lfcSE", "stat", "pvalue", "padj"):
        assert max_rel(a[col], b[col]) < 1e-9, col
    lrt = read(res / "lrt" / "dex_any" / "results.tsv")
    sig = read(res / "lrt" / "dex_any" / "significant.tsv")
    assert len(sig) == int((lrt["padj"] < 0.05).sum()) > 50 and set(lrt["lfc_coefficient"]) == {"dex_trt_vs_untrt"}
    members = read(res / "lrt" / "dex_any" / "clusters.tsv")
    assert list(members.index) == list(sig.index) and {"z_untrt", "z_trt"} <= set(members.columns)
    with pd.ExcelFile(res / "de" / "deg_tables.xlsx") as book:  # closed: an open file is a ResourceWarning
        assert "LRT dex_any" in book.sheet_names
    summary = pd.read_csv(res / "de" / "summary.tsv", sep="\t", index_col="contrast")
    assert summary.loc["dex_coef", "factor"] == "name" and summary.loc["dex_coef", "test_level"] == "dex_trt_vs_untrt"


def test_lrt_group_by_defaults(airway):
    """The pattern figure's x axis: the last design factor the reduced formula drops, else its numeric covariate."""
    from degflow.plan.bulk import plan_lrt

    _, samples = airway
    design = "~ cell + avgLength + dex"
    factors, _, meta = check_design(samples, design, {"dex": "untrt"}, {})
    cfg = {"design": design, "lrt": {"dex": {"reduced": "~ cell + avgLength"}, "len": {"reduced": "~ cell + dex"},
                                     "all": {"reduced": "~ 1", "group_by": "cell"}}}
    plan = plan_lrt(cfg, meta, factors)
    assert [plan[k]["group_by"] for k in ("dex", "len", "all")] == ["dex", "avgLength", "cell"]
    assert [plan[k]["df"] for k in ("dex", "len", "all")] == [1, 1, 5]
    assert plan["all"]["coefficient"] == "dex_trt_vs_untrt" and plan["all"]["min_cluster_size"] == 15
    with pytest.raises(DegflowInputError, match="'bulk.lrt.x.group_by': 'albut' is not a variable of the design"):
        plan_lrt({**cfg, "lrt": {"x": {"reduced": "~ 1", "group_by": "albut"}}}, meta, factors)


def test_lrt_table_names_genes_by_id_without_names():
    """Without gene names the LRT tables carry gene_name = gene ID, as the Wald tables do (R's LRT table as input)."""
    from degflow.bulk.patterns import lrt_table, significant_genes

    r = pd.read_csv(REF / "gse121659_lrt.tsv.gz", sep="\t", index_col=0, dtype={"gene_id": str})
    r.index = r.index.astype(str)
    for names in (None, pd.Series("", index=r.index)):
        table = lrt_table(r, names, padj=0.05)
        assert list(table.columns[:2]) == ["gene_id", "gene_name"]
        assert (table["gene_name"] == table["gene_id"]).all()
        assert "gene_name" in significant_genes(table).columns
