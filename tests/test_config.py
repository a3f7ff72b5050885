"""degflow.plan.schema / design, degflow.io.sheets: keys, defaults, types, sample sheet and design checks (library level)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from degflow.errors import DegflowInputError
from degflow.io.sheets import read_sample_sheet
from degflow.plan.bulk import check_samples_match
from degflow.plan.design import check_design, design_variables
from degflow.plan.schema import validate_config


@pytest.fixture
def example_config(repo):
    return yaml.safe_load((repo / "config" / "config.yaml").read_text())


def test_bundled_config_is_valid_and_defaults_filled(example_config, repo):
    cfg = validate_config(example_config)
    assert cfg["bulk"]["counts"] == {"path": "resources/airway/counts.tsv", "format": "matrix",
                                     "strandedness": "auto", "tx2gene": None, "counts_from_abundance": "no",
                                     "gene_name_column": None}
    minimal = {"bulk": {k: example_config["bulk"][k] for k in ("counts", "samples", "design", "contrasts")}}
    filled = validate_config(minimal)
    assert filled["results"] == "results"
    assert filled["bulk"]["thresholds"] == {"lfc": 1.0, "padj": 0.05}
    assert filled["bulk"]["de"]["flavor"] == "deseq2" and filled["bulk"]["de"]["alpha"] == 0.05
    assert filled["bulk"]["filter"] == {"min_count": 0, "min_samples": 0}
    # the de block is defined once (workflow/schemas/defs.schema.yaml); pseudobulk overrides one default only
    kang = yaml.safe_load((repo / "config" / "examples" / "kang2018.yaml").read_text())
    del kang["singlecell"]["pseudobulk"]["de"]  # every pseudobulk de key from the schema
    pb_de = validate_config(kang)["singlecell"]["pseudobulk"]["de"]
    assert list(pb_de) == list(filled["bulk"]["de"]) and pb_de["size_factors"] == "poscounts"
    assert filled["bulk"]["de"]["size_factors"] == "ratio"
    assert {k: v for k, v in pb_de.items() if k != "size_factors"} == {
        k: v for k, v in filled["bulk"]["de"].items() if k != "size_factors"}


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (("bulk", "thresholds", "padjj"), 0.1, "did you mean 'bulk.thresholds.padj'"),
        (("bulk", "de", "flavour"), "deseq2", "did you mean 'bulk.de.flavor'"),
        (("reslts",), "x", "did you mean 'results'"),
        (("bulk", "de", "flavor"), "edgeR", "bulk.de.flavor"),
        (("bulk", "thresholds", "padj"), 1.5, "bulk.thresholds.padj"),
        (("bulk", "contrasts", "a b"), ["dex", "trt", "untrt"], "bulk.contrasts"),
        (("bulk", "contrasts", "x"), ["dex", "trt"], "bulk.contrasts.x"),
        (("bulk", "design"), "dex", "bulk.design"),
    ],
    ids=["nested_typo", "british_spelling", "top_level_typo", "bad_enum", "out_of_range", "bad_contrast_name",
         "short_contrast", "formula_without_tilde"],
)
def test_bad_config_values(example_config, path, value, fragment):
    node = example_config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(DegflowInputError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        validate_config(example_config)


def test_empty_config():
    with pytest.raises(DegflowInputError, match="config is empty"):
        validate_config({})


def test_design_variables():
    assert design_variables("~ cell + dex") == ["cell", "dex"]
    assert design_variables("~batch+condition+batch:condition") == ["batch", "condition"]
    with pytest.raises(DegflowInputError, match="not a plain column name"):
        design_variables("~ log(dose)")


def test_sample_sheet_numeric_columns_and_csv(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("sample,condition,age\na,ctrl,30\nb,trt,41.5\nc,trt,\n")
    sheet = read_sample_sheet(p)
    assert list(sheet.index) == ["a", "b", "c"]
    assert pd.api.types.is_numeric_dtype(sheet["age"]) and sheet["age"].isna().sum() == 1
    bad = tmp_path / "s2.tsv"
    bad.write_text("name\tcondition\na\tctrl\n")
    with pytest.raises(DegflowInputError, match="must be named 'sample' or 'sample_id'"):
        read_sample_sheet(bad)
    empty = tmp_path / "s3.tsv"
    empty.write_text("")
    with pytest.raises(DegflowInputError, match="is empty"):
        read_sample_sheet(empty)


def _sheet():
    return pd.DataFrame(
        {"dose": [0.0, 1.0, 2.0, 0.0, 1.0, 2.0], "cond": ["ctrl", "A", "B", "ctrl", "A", "B"],
         "donor": ["d1", "d1", "d1", "d2", "d2", "d2"]},
        index=[f"s{i}" for i in range(6)],
    )


def test_design_levels_reference_first_and_covariates():
    factors, covariates, meta = check_design(
        _sheet(), "~ donor + cond", {"cond": "ctrl"}, {"A_vs_B": ["cond", "A", "B"]}
    )
    assert factors == ["donor", "cond"] and covariates == []
    assert list(meta["cond"].cat.categories) == ["ctrl", "A", "B"]
    factors, covariates, meta = check_design(_sheet(), "~ donor + dose", {}, {})
    assert covariates == ["dose"]


def test_missing_value_in_design_column():
    sheet = _sheet()
    sheet.loc["s2", "cond"] = ""
    with pytest.raises(DegflowInputError, match="sample 's2': column 'cond' of the design is missing"):
        check_design(sheet, "~ cond", {}, {})


def test_contrast_factor_not_in_design():
    with pytest.raises(DegflowInputError, match="factor 'donor' is not in the design"):
        check_design(_sheet(), "~ cond", {}, {"x": ["donor", "d1", "d2"]})


def test_samples_match_with_exclude():
    got = check_samples_match(["a", "b", "c"], ["a", "b", "c", "d"], ["d"], sheet_path="s", counts_path="c")
    assert got == ["a", "b", "c"]
    got = check_samples_match(["a", "b", "c"], ["a", "b"], ["c"], sheet_path="s", counts_path="c")
    assert got == ["a", "b"]
    with pytest.raises(DegflowInputError, match="'z' is neither"):
        check_samples_match(["a"], ["a"], ["z"], sheet_path="s", counts_path="c")
