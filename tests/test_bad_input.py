"""Bad input stops snakemake before the DAG is built: one line naming the file/row/key, no traceback, no output.

Each case edits a small real experiment (the first 3,000 airway genes). Every case goes through
``validate_config`` + ``plan_bulk`` (exactly what the Snakefile runs at parse time); a representative subset
also runs the real ``snakemake`` command line, to check the user sees one line and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from degflow.errors import DegflowInputError
from degflow.plan.bulk import plan_bulk
from degflow.plan.schema import validate_config

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


@pytest.fixture(scope="module")
def airway_small(repo):
    """The first 3,000 genes of airway as bundled in the repo (resources/airway, config/samples.tsv)."""
    counts = pd.read_csv(repo / "resources" / "airway" / "counts.tsv", sep="\t", index_col=0).iloc[:3000]
    sheet = pd.read_csv(repo / "config" / "samples.tsv", sep="\t")[["sample_id", "cell", "dex"]]
    return counts, sheet


def make_experiment(tmp: Path, counts: pd.DataFrame, sheet: pd.DataFrame, /, **bulk_overrides) -> Path:
    counts.to_csv(tmp / "counts.tsv", sep="\t")
    sheet.to_csv(tmp / "samples.tsv", sep="\t", index=False)
    bulk = {
        "counts": str(tmp / "counts.tsv"),
        "samples": str(tmp / "samples.tsv"),
        "design": "~ cell + dex",
        "reference_levels": {"dex": "untrt"},
        "contrasts": {"dex_vs_untrt": ["dex", "trt", "untrt"]},
    }
    bulk.update(bulk_overrides)
    cfg = {"results": str(tmp / "results"), "bulk": bulk}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_snakemake(repo: Path, workdir: Path, configfile: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [str(SNAKEMAKE), "-n", "-s", str(repo / "Snakefile"), "--configfile", str(configfile), "--cores", "1"],
        cwd=workdir, capture_output=True, text=True, env=env, timeout=300,
    )


def assert_clean_stop(proc: subprocess.CompletedProcess, *fragments: str, tmp: Path) -> None:
    err = proc.stderr.strip()
    assert proc.returncode != 0, f"snakemake accepted bad input:\n{proc.stdout[-2000:]}"
    assert "Traceback" not in err and 'File "' not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("degflow:")]
    assert len(lines) == 1, err
    for frag in fragments:
        assert frag in lines[0], f"{frag!r} not in {lines[0]!r}"
    assert not (tmp / "results").exists(), "output written despite bad input"


def test_good_input_dry_runs(repo, tmp_path, airway_small):
    cfg = make_experiment(tmp_path, *airway_small)
    proc = run_snakemake(repo, tmp_path, cfg)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bulk_fit" in proc.stdout


def _mutate_counts(fn):
    def apply(counts, sheet):
        return fn(counts.copy()), sheet

    return apply


def _mutate_sheet(fn):
    def apply(counts, sheet):
        return counts, fn(sheet.copy())

    return apply


def _set(df, row, col, value):
    df = df.astype(object) if not isinstance(value, int) else df
    df.iloc[row, col] = value
    return df


CASES = {
    # name: (mutate(counts, sheet), bulk overrides, expected fragments)
    "typo_config_key": (None, {"desing": "~ dex"}, ["'bulk.desing'", "did you mean 'bulk.design'"]),
    "missing_sample_sheet": (None, {"samples": "/nonexistent/samples.tsv"}, ["/nonexistent/samples.tsv", "does not exist"]),
    "design_column_missing": (None, {"design": "~ donor + dex"}, ["'donor'", "not a column", "samples.tsv"]),
    "sample_not_in_counts": (
        _mutate_counts(lambda c: c.drop(columns=["SRR1039521"])), {}, ["SRR1039521", "not in the counts"]),
    "sample_not_in_sheet": (
        _mutate_sheet(lambda s: s[s.sample_id != "SRR1039521"]), {}, ["SRR1039521", "not in the sample sheet"]),
    "duplicate_sample_names": (
        _mutate_sheet(lambda s: s.assign(sample_id=list(s.sample_id[:-1]) + [s.sample_id.iloc[0]])), {},
        ["SRR1039508", "more than once"]),
    "duplicate_gene_ids": (
        _mutate_counts(lambda c: c.rename(index={c.index[5]: c.index[4]})), {}, ["ENSG00000000460", "counts.tsv"]),
    "non_integer_counts": (_mutate_counts(lambda c: _set(c, 2, 3, 10.5)), {}, ["counts.tsv", "integer"]),
    "negative_counts": (_mutate_counts(lambda c: _set(c, 2, 3, -4)), {}, ["counts.tsv", "negative"]),
    "empty_counts_file": ("empty", {}, ["counts.tsv", "empty"]),
    "all_zero_sample": (
        _mutate_counts(lambda c: c.assign(SRR1039512=0)), {}, ["SRR1039512", "every count is zero"]),
    "contrast_level_absent": (
        None, {"contrasts": {"x": ["dex", "treated", "untrt"]}}, ["'bulk.contrasts.x'", "'treated'", "trt"]),
    "factor_with_one_level": (
        _mutate_sheet(lambda s: s.assign(batch="b1")), {"design": "~ batch + dex"}, ["'batch'", "one level"]),
    "design_not_full_rank": (
        _mutate_sheet(lambda s: s.assign(group=s.dex.map({"trt": "g2", "untrt": "g1"}))),
        {"design": "~ group + dex"}, ["not of full rank", "'group' and 'dex'"]),
    "reference_level_absent": (None, {"reference_levels": {"dex": "control"}}, ["bulk.reference_levels.dex", "'control'"]),
    "bad_threshold_type": (None, {"thresholds": {"lfc": "one"}}, ["bulk.thresholds.lfc", "'one'"]),
    # issue 18: missing values in design columns are not a level
    "na_in_design_column": (
        _mutate_sheet(lambda s: _set(s, 2, 2, "NA")), {}, ["row of sample 'SRR1039512'", "column 'dex'", "'NA'",
                                                          "bulk.exclude: [SRR1039512]"]),
    "empty_cell_in_design_column": (
        _mutate_sheet(lambda s: _set(s, 5, 1, "")), {}, ["sample 'SRR1039517'", "column 'cell'", "empty",
                                                         "bulk.exclude"]),
    "na_in_continuous_covariate": (
        _mutate_sheet(lambda s: s.assign(age=["31", "31", "NA", "44", "44", "52", "60", "60"])),
        {"design": "~ age + dex"}, ["sample 'SRR1039512'", "column 'age'", "missing"]),
    # issue 18: formula errors are one line, not formulaic's exceptions
    "formula_trailing_operator": (None, {"design": "~ cell + dex +"}, ["bulk.design", "'~ cell + dex +'",
                                                                      "no column on one side"]),
    "formula_double_operator": (None, {"design": "~ cell ++ dex"}, ["bulk.design", "no column on one side"]),
    "formula_function_call": (None, {"design": "~ cell + log(dex)"}, ["bulk.design", "'log(dex)'",
                                                                     "not a plain column name"]),
    "saturated_design": (None, {"design": "~ cell * dex"}, ["bulk.design", "8 coefficients for 8 samples",
                                                            "no residual degrees of freedom"]),
    # issue 18: files that are not what they should be
    "truncated_gz_counts": ("truncated_gz", {}, ["counts.tsv.gz", "truncated or corrupt gzip"]),
    "excel_counts": ("xlsx", {}, ["counts.xlsx", "not a text table", "zip archive", "export spreadsheets as TSV"]),
    "utf16_counts": ("utf16", {}, ["counts.tsv", "not a text table", "UTF-16"]),
    "transposed_counts": (_mutate_counts(lambda c: c.T.rename_axis("sample_id")), {},
                          ["look transposed", "SRR1039508", "one row per gene"]),
    "counts_path_is_folder": ("counts_dir", {}, ["is a folder", "counts_path column"]),
    "sample_sheet_is_folder": ("sheet_dir", {}, ["is a folder", "bulk.samples"]),
    "contrast_level_only_in_excluded": (
        None, {"contrasts": {"lines": ["cell", "N061011", "N61311"]}, "exclude": ["SRR1039520", "SRR1039521"]},
        ["bulk.contrasts.lines", "'N061011'", "only by excluded samples", "SRR1039520, SRR1039521"]),
    "reference_level_only_in_excluded": (
        None, {"reference_levels": {"dex": "untrt", "cell": "N061011"}, "exclude": ["SRR1039520", "SRR1039521"]},
        ["bulk.reference_levels.cell", "'N061011'", "only by excluded samples"]),
    "filter_removes_every_gene": (None, {"filter": {"min_count": 10**9, "min_samples": 2}},
                                  ["bulk.filter", "no gene has >= 1000000000 reads"]),
    "exclude_unknown_sample": (None, {"exclude": ["SRR0000000"]}, ["bulk.exclude", "'SRR0000000'"]),
    "sample_name_case_mismatch": (
        _mutate_sheet(lambda s: s.assign(sample_id=s.sample_id.str.lower())), {},
        ["'srr1039508'", "not in the counts"]),
    "contrast_test_equals_reference": (None, {"contrasts": {"x": ["dex", "trt", "trt"]}}, ["bulk.contrasts.x",
                                                                                          "both 'trt'"]),
    "contrast_factor_not_in_design": (None, {"design": "~ dex", "contrasts": {"x": ["cell", "N061011", "N61311"]}},
                                      ["bulk.contrasts.x", "'cell' is not in the design"]),
    "missing_counts_file": (None, {"counts": "/nonexistent/counts.tsv"}, ["/nonexistent/counts.tsv",
                                                                         "does not exist"]),
    "gene_name_column_absent": (None, {"counts": {"path": "COUNTS", "gene_name_column": "symbol"}},
                                ["gene_name_column 'symbol'", "not in the header"]),
    "excel_sample_sheet": ("xlsx_sheet", {}, ["samples.xlsx", "not a text table", "export spreadsheets as TSV"]),
    "annotation_missing": (None, {"annotation": "/nonexistent/genes.gtf"}, ["annotation file", "does not exist"]),
    "annotation_is_excel": ("xlsx_annotation", {}, ["genes.xlsx", "bulk.annotation", "not a text table"]),
    "text_in_counts": (_mutate_counts(lambda c: _set(c, 10, 2, "n/a")), {}, ["counts.tsv", "ENSG"]),
    "latin1_sample_sheet": ("latin1_sheet", {}, ["samples.tsv", "line 4", "not UTF-8", "save the sheet as UTF-8 TSV"]),
    "sample_sheet_row_with_extra_field": ("extra_field_sheet", {}, ["samples.tsv", "line 4", "4 fields where the header "
                                                                    "has 3", "save the sheet as UTF-8 TSV"]),
    "excel_genes_of_interest": ("xlsx_genes", {}, ["genes.xlsx", "bulk.genes_of_interest", "not a text table"]),
    "contrast_named_like_an_lrt": (
        None, {"contrasts": {"lrt_dex": ["dex", "trt", "untrt"]}, "lrt": {"dex": {"reduced": "~ cell"}}},
        ["'bulk.contrasts.lrt_dex'", "may not start with 'lrt_'"]),
}


def _rewrite_counts(tmp: Path, kind: str, counts: pd.DataFrame) -> None:
    """Replace the experiment's counts.tsv (or sheet) by a broken file: what a new user may give instead."""
    src = tmp / "counts.tsv"
    if kind == "empty":
        src.write_text("")
        return
    if kind == "truncated_gz":  # a download cut short: the first half of a real gzip file
        import gzip

        data = gzip.compress(src.read_bytes())
        (tmp / "counts.tsv.gz").write_bytes(data[: len(data) // 2])
        return
    if kind == "xlsx":  # the core facility's spreadsheet, given as is
        counts.iloc[:200].to_excel(tmp / "counts.xlsx")
        return
    if kind == "utf16":  # Excel's "Unicode Text" export
        src.write_bytes(src.read_text().encode("utf-16"))
        return
    if kind == "xlsx_sheet":  # the sample sheet kept in Excel
        pd.read_csv(tmp / "samples.tsv", sep="\t").to_excel(tmp / "samples.xlsx", index=False)
        return
    if kind == "xlsx_annotation":
        pd.DataFrame({"gene_id": counts.index[:200], "gene_name": counts.index[:200]}).to_excel(tmp / "genes.xlsx")
        return
    if kind in ("latin1_sheet", "extra_field_sheet"):  # Excel's "Text (Tab delimited)" export; a stray tab in a row
        lines = (tmp / "samples.tsv").read_text().splitlines()
        if kind == "latin1_sheet":  # a note column, with an umlaut on line 4, saved as Latin-1
            lines = [ln + ("\tnote" if i == 0 else "\tgel\u00f6st" if i == 3 else "\t") for i, ln in enumerate(lines)]
        else:
            lines[3] += "\tthawed late"
        encoding = "latin-1" if kind == "latin1_sheet" else "utf-8"
        (tmp / "samples.tsv").write_bytes(("\n".join(lines) + "\n").encode(encoding))
        return
    if kind == "xlsx_genes":  # the genes of interest kept in a spreadsheet
        pd.DataFrame({"gene": counts.index[:5]}).to_excel(tmp / "genes.xlsx", index=False)
        return
    if kind == "counts_dir":
        (tmp / "counts_dir").mkdir()
        src.rename(tmp / "counts_dir" / "counts.tsv")
        return
    if kind == "sheet_dir":
        (tmp / "sheet_dir").mkdir()
        (tmp / "samples.tsv").rename(tmp / "sheet_dir" / "samples.tsv")
        return
    raise AssertionError(kind)


def _prepare(tmp_path, airway_small, case):
    mutate, overrides, fragments = CASES[case]
    counts, sheet = airway_small
    if callable(mutate):
        counts, sheet = mutate(counts, sheet)
    overrides = {k: ({**v, "path": str(tmp_path / "counts.tsv")} if isinstance(v, dict) and v.get("path") == "COUNTS"
                     else v) for k, v in overrides.items()}
    moved = {"truncated_gz": {"counts": "counts.tsv.gz"}, "xlsx": {"counts": "counts.xlsx"},
             "counts_dir": {"counts": "counts_dir"}, "sheet_dir": {"samples": "sheet_dir"},
             "xlsx_sheet": {"samples": "samples.xlsx"}, "xlsx_annotation": {"annotation": "genes.xlsx"},
             "xlsx_genes": {"genes_of_interest": "genes.xlsx"}}.get(mutate, {})
    overrides = {**overrides, **{k: str(tmp_path / v) for k, v in moved.items()}}
    cfg = make_experiment(tmp_path, counts, sheet, **overrides)
    if isinstance(mutate, str):
        _rewrite_counts(tmp_path, mutate, counts)
    return cfg, fragments


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_refused(tmp_path, airway_small, case):
    cfg, fragments = _prepare(tmp_path, airway_small, case)
    with pytest.raises(DegflowInputError) as info:
        plan_bulk(validate_config(yaml.safe_load(cfg.read_text()))["bulk"])
    msg = str(info.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


CLI_CASES = ["typo_config_key", "sample_not_in_counts", "non_integer_counts", "design_not_full_rank",
             "na_in_design_column", "formula_trailing_operator", "truncated_gz_counts", "excel_counts",
             "saturated_design"]


@pytest.mark.parametrize("case", CLI_CASES, ids=CLI_CASES)
def test_bad_input_stops_snakemake_with_one_line(repo, tmp_path, airway_small, case):
    cfg, fragments = _prepare(tmp_path, airway_small, case)
    proc = run_snakemake(repo, tmp_path, cfg)
    assert_clean_stop(proc, *fragments, tmp=tmp_path)


def test_na_in_unused_sheet_column_is_fine(tmp_path, airway_small):
    """Missing values in sheet columns that the design does not use are no reason to stop (issue 18)."""
    counts, sheet = airway_small
    sheet = sheet.assign(rin=["9.1", "NA", "8.7", "", "9.4", "n/a", "9.0", "8.8"], note=["NA"] * 4 + ["ok"] * 4)
    plan, _ = plan_bulk(validate_config(yaml.safe_load(make_experiment(tmp_path, counts, sheet).read_text()))["bulk"])
    assert plan.samples == list(sheet.sample_id) and plan.factors == ["cell", "dex"]
    assert plan.sheet["rin"].isna().sum() == 3  # numeric, NA spellings read as missing, not as text


@pytest.mark.parametrize(
    ("text", "fragments"),
    [("results: {tmp}/results\nbulk:\n", ["config section 'bulk' is empty", "delete the line"]),
     ("results: {tmp}/afile\nbulk:\n  counts: x.tsv\n", ["config key 'results'", "afile' is a file"])],
    ids=["empty_bulk_section", "results_is_a_file"],
)
def test_bad_config_file_stops_snakemake_with_one_line(repo, tmp_path, text, fragments):
    (tmp_path / "afile").write_text("not a folder\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text.format(tmp=tmp_path))
    proc = run_snakemake(repo, tmp_path, cfg)
    assert_clean_stop(proc, *fragments, tmp=tmp_path)
