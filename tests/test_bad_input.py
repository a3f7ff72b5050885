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

from degflow.bulk import plan_bulk
from degflow.config import validate_config
from degflow.errors import DegflowInputError

SNAKEMAKE = Path(sys.executable).with_name("snakemake")


@pytest.fixture(scope="module")
def airway_small(repo):
    counts = pd.read_csv(repo / "resources" / "airway" / "counts.tsv", sep="\t", index_col=0).iloc[:3000]
    sheet = pd.read_csv(repo / "resources" / "airway" / "samples.tsv", sep="\t")[["sample_id", "cell", "dex"]]
    return counts, sheet


def make_experiment(tmp: Path, counts: pd.DataFrame, sheet: pd.DataFrame, **bulk_overrides) -> Path:
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
}


def _prepare(tmp_path, airway_small, case):
    mutate, overrides, fragments = CASES[case]
    counts, sheet = airway_small
    if callable(mutate):
        counts, sheet = mutate(counts, sheet)
    cfg = make_experiment(tmp_path, counts, sheet, **overrides)
    if mutate == "empty":
        (tmp_path / "counts.tsv").write_text("")
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


CLI_CASES = ["typo_config_key", "sample_not_in_counts", "non_integer_counts", "design_not_full_rank"]


@pytest.mark.parametrize("case", CLI_CASES, ids=CLI_CASES)
def test_bad_input_stops_snakemake_with_one_line(repo, tmp_path, airway_small, case):
    cfg, fragments = _prepare(tmp_path, airway_small, case)
    proc = run_snakemake(repo, tmp_path, cfg)
    assert_clean_stop(proc, *fragments, tmp=tmp_path)
