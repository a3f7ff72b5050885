"""Bad single-cell and pseudobulk input stops before the DAG: one line naming the file/row/key and the fix.

Each case edits a small real experiment: the PBMC 3k 10x folder bundled in the repo (resources/pbmc3k), and
for HDF5 cases one Kang 2018 Cell Ranger ``.h5`` (shared data). Every case goes through ``validate_config`` +
``plan_singlecell`` (+ ``plan_pseudobulk``), exactly what the Snakefile runs at parse time; a few also run
the real ``snakemake -n`` command line.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from degflow.errors import DegflowInputError
from degflow.plan.pseudobulk import plan_pseudobulk
from degflow.plan.schema import validate_config
from degflow.plan.singlecell import plan_singlecell
from test_bad_input import assert_clean_stop, run_snakemake

PBMC = "resources/pbmc3k/filtered_min3cells_v3"


def make_sc_experiment(tmp: Path, repo: Path, rows: list[dict], *, header: list[str] | None = None,
                       markers: bool = True, pseudobulk: dict | None = None, **sc_overrides) -> Path:
    """A config + sample sheet under ``tmp``; ``rows`` are sample-sheet rows (paths relative to the repo, written
    absolute so the run can start anywhere)."""
    header = header or list(dict.fromkeys(k for r in rows for k in r))
    lines = ["\t".join(header)]
    for r in rows:
        vals = []
        for k in header:
            v = str(r.get(k, ""))
            if k in ("path", "bd_sample_tags") and v and not v.startswith("/") and v != "MISSING":
                v = str(repo / v)
            vals.append(v)
        lines.append("\t".join(vals))
    (tmp / "sc_samples.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    sc = {"samples": str(tmp / "sc_samples.tsv"),
          "markers": str(repo / "resources" / "markers" / "pbmc.yaml") if markers else None}
    sc.update(sc_overrides)
    if pseudobulk is not None:
        sc["pseudobulk"] = pseudobulk
    cfg = {"results": str(tmp / "results"), "singlecell": sc}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True))
    return path


def _plan(cfg_path: Path):
    cfg = validate_config(yaml.safe_load(cfg_path.read_text()))
    sc = cfg["singlecell"]
    plan = plan_singlecell(sc)
    if "pseudobulk" in sc:
        plan_pseudobulk(sc["pseudobulk"], plan.sheet, clusterings=plan.clusterings,
                        annotated=bool(plan.annotation_key), source=sc["samples"])
    return plan


ONE = [{"sample": "pbmc3k", "path": PBMC, "format": "10x_mtx", "condition": "healthy"}]
#: Four replicates (two donors x two conditions) of the same real folder: enough for the pseudobulk checks.
FOUR = [{"sample": f"s{i}", "path": PBMC, "format": "10x_mtx", "condition": c, "donor": d}
        for i, (c, d) in enumerate([("ctrl", "d1"), ("stim", "d1"), ("ctrl", "d2"), ("stim", "d2")])]
PB = {"groupby": "cell_type", "sample_key": "sample", "design": "~ donor + condition",
      "reference_levels": {"condition": "ctrl"}, "contrasts": {"stim_vs_ctrl": ["condition", "stim", "ctrl"]}}


def _rows(rows, **changes):
    out = [dict(r) for r in rows]
    for key, value in changes.items():
        i, col = key.rsplit("__", 1)
        out[int(i.lstrip("r"))][col] = value
    return out


# name: (rows, keyword arguments of make_sc_experiment, expected fragments)
SC_CASES = {
    "empty_singlecell_section": (None, {}, ["config section 'singlecell' is empty"]),
    "sheet_missing": ("nosheet", {}, ["single-cell sample sheet not found", "singlecell.samples"]),
    "sheet_is_excel": ("xlsx_sheet", {}, ["sc_samples.xlsx", "not a text table", "export spreadsheets as TSV"]),
    "sheet_latin1": ("latin1_sheet", {}, ["sc_samples.tsv", "line 3", "not UTF-8", "save the sheet as UTF-8 TSV"]),
    "sheet_row_with_extra_field": ("extra_field_sheet", {}, ["sc_samples.tsv", "line 3", "6 fields where the header "
                                                             "has 5", "save the sheet as UTF-8 TSV"]),
    "no_path_column": ([{"sample": "a", "where": PBMC}], {}, ["no 'path' column"]),
    "path_missing": (_rows(ONE, r0__path="/nonexistent/pbmc"), {}, ["row 2 (sample 'pbmc3k')", "does not exist"]),
    "empty_path": (_rows(ONE, r0__path=""), {}, ["row 2", "the path is empty"]),
    "empty_sample_name": (_rows(ONE, r0__sample=""), {}, ["row 2", "the sample name is empty"]),
    "sample_name_with_space": (_rows(ONE, r0__sample="pbmc 3k"), {}, ["row 2", "'pbmc 3k'", "no spaces"]),
    "sample_name_with_slash": (_rows(ONE, r0__sample="a/b"), {}, ["row 2", "'a/b'"]),
    "duplicate_sample": (ONE + ONE, {}, ["'pbmc3k' appears more than once", "rows [2, 3]"]),
    "unknown_format": (_rows(ONE, r0__format="loom"), {}, ["row 2", "'loom'", "10x_mtx"]),
    "qc_override_not_number": (_rows(ONE, r0__max_pct_mt="five"), {}, ["row 2", "max_pct_mt='five'"]),
    "mtx_folder_declared_10x_h5": (_rows(ONE, r0__format="10x_h5"), {}, ["format 10x_h5 takes a file",
                                                                         "is a folder", "10x_mtx"]),
    "h5_declared_10x_mtx": ("h5_as_mtx", {}, ["format 10x_mtx takes the folder", "s101_ctrl.h5", "is a file",
                                              "HDF5 file: use format 10x_h5"]),
    "truncated_h5_auto": ("truncated_h5", {}, ["s101_ctrl.h5", "not a readable HDF5 file", "truncated"]),
    "markers_file_missing": (ONE, {"markers": False, "_markers_path": "/nonexistent/markers.yaml"},
                             ["/nonexistent/markers.yaml", "marker file not found"]),
    "n_pcs_above_n_comps": (ONE, {"pca": {"n_comps": 30}, "neighbors": {"n_pcs": 40}},
                            ["singlecell.neighbors.n_pcs", "40 is more than the 30 components"]),
    "batch_key_not_a_column": (ONE, {"batch_key": "batch"}, ["singlecell.batch_key", "'batch'"]),
    "regress_out_typo": (ONE, {"pca": {"regress_out": ["pct_count_mt"]}}, ["singlecell.pca.regress_out",
                                                                          "did you mean 'pct_counts_mt'"]),
    "annotation_resolution_not_run": (ONE, {"leiden_resolutions": [0.5], "annotation": {"resolution": 1.0}},
                                      ["singlecell.annotation.resolution", "1.0 is not one of"]),
    "seurat_v3_without_n_top_genes": (ONE, {"hvg": {"flavor": "seurat_v3", "n_top_genes": None}},
                                      ["singlecell.hvg.n_top_genes", "seurat_v3"]),
    "harmony_with_one_batch": (ONE, {"integration": "harmony"}, ["singlecell.integration", "at least two batches"]),
    "bd_sample_tags_missing": (_rows(ONE, r0__bd_sample_tags="/nonexistent/tags.csv"), {},
                               ["bd_sample_tags file '/nonexistent/tags.csv' does not exist"]),
    "sc_config_typo": (ONE, {"leiden_resolution": [1.0]}, ["'singlecell.leiden_resolution'", "did you mean"]),
    # pseudobulk
    "pb_cell_type_without_markers": (FOUR, {"markers": False, "pseudobulk": PB},
                                     ["singlecell.pseudobulk.groupby", "cell_type needs singlecell.markers"]),
    "pb_groupby_unknown": (FOUR, {"pseudobulk": {**PB, "groupby": "leiden_2.0"}},
                           ["singlecell.pseudobulk.groupby", "'leiden_2.0'"]),
    "pb_sample_key_unknown": (FOUR, {"pseudobulk": {**PB, "sample_key": "replicate"}},
                              ["singlecell.pseudobulk.sample_key", "'replicate'"]),
    "pb_design_column_missing": (FOUR, {"pseudobulk": {**PB, "design": "~ donr + condition"}},
                                 ["singlecell.pseudobulk.design", "'donr'", "did you mean 'donor'"]),
    "pb_na_in_design_column": (_rows(FOUR, r2__donor="NA"), {"pseudobulk": PB},
                               ["sample 's2'", "column 'donor'", "'NA'"]),
    "pb_contrast_level_absent": (FOUR, {"pseudobulk": {**PB, "contrasts": {"x": ["condition", "IFN", "ctrl"]}}},
                                 ["singlecell.pseudobulk.contrasts.x", "'IFN'"]),
    "pb_too_few_replicates": (_rows(FOUR, r2__condition="stim"), {"pseudobulk": {**PB, "design": "~ condition"}},
                              ["singlecell.pseudobulk.contrasts.stim_vs_ctrl", "ctrl'", "1 replicate"]),
    "pb_saturated_design": (FOUR, {"pseudobulk": {**PB, "design": "~ donor * condition"}},
                            ["singlecell.pseudobulk.design", "no residual degrees of freedom"]),
    "pb_formula_syntax": (FOUR, {"pseudobulk": {**PB, "design": "~ donor + condition +"}},
                          ["singlecell.pseudobulk.design", "no column on one side"]),
    "pb_confounded": (_rows(FOUR, r1__donor="d2", r2__donor="d1"), {"pseudobulk": PB},
                      ["singlecell.pseudobulk.design", "not of full rank"]),
}


def _prepare(tmp_path, repo, core_data, case):
    rows, kwargs, fragments = SC_CASES[case]
    kwargs = dict(kwargs)
    markers_path = kwargs.pop("_markers_path", None)
    if rows is None:  # `singlecell:` with nothing under it
        path = tmp_path / "config.yaml"
        path.write_text(f"results: {tmp_path / 'results'}\nsinglecell:\n")
        return path, fragments
    if rows in ("h5_as_mtx", "truncated_h5"):
        h5 = tmp_path / "s101_ctrl.h5"  # scanpy's real 10x v3 test file (tests/data, core suite)
        src = (core_data / "10x_scanpy_testdata" / "3.0.0" / "filtered_feature_bc_matrix.h5").read_bytes()
        h5.write_bytes(src if rows == "h5_as_mtx" else src[: len(src) // 3])  # a copy cut short
        rows = [{"sample": "s101", "path": str(h5), "format": "10x_mtx" if rows == "h5_as_mtx" else "auto"}]
    if rows == "xlsx_sheet":  # the sheet kept in Excel
        cfg = make_sc_experiment(tmp_path, repo, ONE, **kwargs)
        pd.read_csv(tmp_path / "sc_samples.tsv", sep="\t").to_excel(tmp_path / "sc_samples.xlsx", index=False)
        data = yaml.safe_load(cfg.read_text())
        data["singlecell"]["samples"] = str(tmp_path / "sc_samples.xlsx")
        cfg.write_text(yaml.safe_dump(data))
        return cfg, fragments
    if rows in ("latin1_sheet", "extra_field_sheet"):  # Excel's "Text (Tab delimited)" export; a stray tab in a row
        cfg = make_sc_experiment(tmp_path, repo, FOUR, **kwargs)
        sheet = tmp_path / "sc_samples.tsv"
        lines = sheet.read_text(encoding="utf-8").splitlines()
        if rows == "latin1_sheet":  # a German lab's condition name on line 3, saved as Latin-1
            lines[2] = lines[2].replace("stim", "stimuliert_gel\u00f6st")
            sheet.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
        else:
            lines[2] += "\tthawed late"
            sheet.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return cfg, fragments
    if rows == "nosheet":
        cfg = make_sc_experiment(tmp_path, repo, ONE, **kwargs)
        (tmp_path / "sc_samples.tsv").unlink()
        return cfg, fragments
    cfg = make_sc_experiment(tmp_path, repo, rows, **kwargs)
    if markers_path:
        data = yaml.safe_load(cfg.read_text())
        data["singlecell"]["markers"] = markers_path
        cfg.write_text(yaml.safe_dump(data))
    return cfg, fragments


def test_good_input_plans(tmp_path, repo):
    plan = _plan(make_sc_experiment(tmp_path, repo, FOUR, pseudobulk=PB))
    assert plan.samples == ["s0", "s1", "s2", "s3"] and plan.annotation_key == "leiden_1.0"


def test_non_ascii_sample_names_are_accepted(tmp_path, repo):
    """A German lab's sample names (issue 18): letters of any alphabet are letters."""
    plan = _plan(make_sc_experiment(tmp_path, repo, _rows(ONE, r0__sample="Probe_ä1")))
    assert plan.samples == ["Probe_ä1"]


def test_unused_sheet_column_with_na_is_fine(tmp_path, repo):
    rows = [{**r, "note": "NA" if i % 2 else "thawed late"} for i, r in enumerate(FOUR)]
    plan = _plan(make_sc_experiment(tmp_path, repo, rows, pseudobulk=PB))
    assert len(plan.samples) == 4


@pytest.mark.parametrize("case", list(SC_CASES), ids=list(SC_CASES))
def test_bad_sc_input_is_refused(tmp_path, repo, core_data, case):
    cfg, fragments = _prepare(tmp_path, repo, core_data, case)
    with pytest.raises(DegflowInputError) as info:
        _plan(cfg)
    msg = str(info.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


CLI_CASES = ["truncated_h5_auto", "pb_na_in_design_column"]


@pytest.mark.parametrize("case", CLI_CASES, ids=CLI_CASES)
def test_bad_sc_input_stops_snakemake_with_one_line(repo, tmp_path, core_data, case):
    cfg, fragments = _prepare(tmp_path, repo, core_data, case)
    proc = run_snakemake(repo, tmp_path, cfg)
    assert_clean_stop(proc, *fragments, tmp=tmp_path)
