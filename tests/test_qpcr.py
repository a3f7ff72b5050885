"""degflow.compound.qpcr: 2^-ddCt arithmetic on a hand-checkable table, bad-input rows, concordance with RNA-seq."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from degflow.compound import qpcr
from degflow.errors import DegflowInputError

SHEET = pd.DataFrame({"group": ["ctrl", "ctrl", "trt", "trt"]}, index=pd.Index(["c1", "c2", "t1", "t2"], name="sample"))
CONTRAST = {"trt_vs_ctrl": ["group", "trt", "ctrl"]}

# Reference R, target G. dCt: c1 = 25-20 = 5, c2 = 27-20 = 7 (mean 6); t1 = 24-21 = 3, t2 = 25-20 = 5.
# ddCt: t1 = -3 (fold 8), t2 = -1 (fold 2): mean fold 5, SD sqrt(18), log2FC = -mean(ddCt) = 2.
# t1's G is measured twice (23.9, 24.1): technical replicates are averaged first.
GOOD = """sample\tgene\tct
c1\tR\t20
c1\tG\t25
c2\tR\t20
c2\tG\t27
t1\tR\t21
t1\tG\t23.9
t1\tG\t24.1
t2\tR\t20
t2\tG\t25
"""


def _write(tmp_path, text, name="ct.tsv"):
    f = tmp_path / name
    f.write_text(text)
    return f


def test_ddct_hand_checked(tmp_path):
    ct = qpcr.read_ct_table(_write(tmp_path, GOOD), SHEET)
    out = qpcr.ddct(ct, SHEET, CONTRAST, reference_genes=["R"])
    assert len(out) == 1
    r = out.iloc[0]
    assert (r["contrast"], r["gene"], r["n_test"], r["n_reference"]) == ("trt_vs_ctrl", "G", 2, 2)
    assert r["mean_ddct"] == pytest.approx(-2.0)
    assert r["fold_change_mean"] == pytest.approx(5.0)
    assert r["fold_change_sd"] == pytest.approx(np.sqrt(18.0))
    assert r["log2FC"] == pytest.approx(2.0)


def test_ddct_two_reference_genes_use_their_mean(tmp_path):
    # a second reference H at R + 2 everywhere except t2 (R + 4): reference means c1 21, c2 21, t1 22, t2 22
    text = GOOD + "c1\tH\t22\nc2\tH\t22\nt1\tH\t23\nt2\tH\t24\n"
    ct = qpcr.read_ct_table(_write(tmp_path, text), SHEET)
    r = qpcr.ddct(ct, SHEET, CONTRAST, reference_genes=["R", "H"]).iloc[0]
    # dCt: c1 4, c2 6 (mean 5); t1 24-22 = 2, t2 25-22 = 3 -> ddCt -3, -2 -> log2FC 2.5
    assert r["log2FC"] == pytest.approx(2.5)
    assert r["fold_change_mean"] == pytest.approx((8 + 4) / 2)


def test_csv_is_read(tmp_path):
    ct = qpcr.read_ct_table(_write(tmp_path, GOOD.replace("\t", ","), "ct.csv"), SHEET)
    assert len(ct) == 9 and ct["ct"].dtype == float
    assert ct["row"].tolist() == list(range(2, 11))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (GOOD.replace("t2\tG\t25", "t2\tG\tUndetermined"),
         r"line 10 \(sample 't2', gene 'G'\): Ct 'Undetermined' is not a number"),
        (GOOD.replace("c2\tG\t27", "c2\tG\t2,7"), r"line 5 \(sample 'c2', gene 'G'\): Ct '2,7' is not a number"),
        (GOOD.replace("c2\tG\t27", "c2\tG\t"), r"line 5 .*Ct '' is not a number"),
        (GOOD.replace("t2\tG\t25", "t2\tG\tinf"), r"line 10 .*Ct 'inf' is not a number"),
        (GOOD + "x9\tG\t25\n", "line 11: sample 'x9' is not in the sample sheet"),
        (GOOD.replace("c2\tG", "c2\t"), "line 5: empty 'gene'"),
        (GOOD.replace("sample\tgene\tct", "sample\tgene\tCq"), r"lacks column\(s\) \['ct'\]"),
    ],
    ids=["undetermined", "decimal-comma", "empty", "infinite", "unknown-sample", "empty-gene", "missing-column"],
)
def test_bad_rows_are_named(tmp_path, text, match):
    with pytest.raises(DegflowInputError, match=match):
        qpcr.read_ct_table(_write(tmp_path, text), SHEET, label="config key 'bulk.qpcr.ct_table'")


def test_missing_file(tmp_path):
    with pytest.raises(DegflowInputError, match="does not exist"):
        qpcr.read_ct_table(tmp_path / "none.tsv", SHEET)


def test_reference_gene_missing_in_a_sample(tmp_path):
    ct = qpcr.read_ct_table(_write(tmp_path, GOOD.replace("t1\tR\t21\n", "")), SHEET)
    with pytest.raises(DegflowInputError, match="sample 't1' has no Ct for reference gene 'R'"):
        qpcr.ddct(ct, SHEET, CONTRAST, reference_genes=["R"])


def test_reference_gene_never_measured(tmp_path):
    ct = qpcr.read_ct_table(_write(tmp_path, GOOD), SHEET)
    with pytest.raises(DegflowInputError, match="reference gene 'Gapdh' is not measured in any sample"):
        qpcr.ddct(ct, SHEET, CONTRAST, reference_genes=["Gapdh"])
    with pytest.raises(DegflowInputError, match="no reference gene given"):
        qpcr.ddct(ct, SHEET, CONTRAST, reference_genes=[])


def test_concordance():
    fc = pd.DataFrame({"contrast": ["a"] * 4, "gene": ["G1", "G2", "G3", "G9"], "log2FC": [1.0, 2.0, -1.0, 0.5]})
    res = {"a": pd.DataFrame({"gene_name": ["G1", "G2", "G3"], "log2FoldChange": [1.2, 1.9, -0.8],
                              "padj": [0.01, 0.01, 0.2]})}
    pairs, st = qpcr.concordance(fc, res)
    assert pairs["gene"].tolist() == ["G1", "G2", "G3"]  # G9 is not in the RNA-seq table
    row = st.set_index("contrast").loc["a"]
    assert row["n"] == 3
    assert row["pearson_r"] == pytest.approx(np.corrcoef([1, 2, -1], [1.2, 1.9, -0.8])[0, 1])
    assert row["spearman_r"] == pytest.approx(1.0)
    assert st["contrast"].tolist() == ["a", "all"]
    with pytest.raises(DegflowInputError, match="qPCR contrast 'b' has no RNA-seq results"):
        qpcr.concordance(fc.assign(contrast="b"), res)
