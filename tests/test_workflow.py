"""Real snakemake runs of the bundled example (airway): every public output, R concordance, determinism."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from example_run import run_example

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
pytestmark = pytest.mark.workflow

CONTRAST = "dex_vs_untrt"
PUBLIC_OUTPUTS = [
    "bulk/counts/size_factors.tsv",
    "bulk/counts/normalized_counts.tsv",
    "bulk/de/summary.tsv",
    f"bulk/de/{CONTRAST}/results.tsv",
    f"bulk/de/{CONTRAST}/deg.tsv",
    f"bulk/plots/{CONTRAST}/volcano.png",
    f"bulk/plots/{CONTRAST}/ma.png",
    "bulk/qc/pca.tsv",
    "bulk/qc/pca.png",
]
FIGURES = [  # every figure as PNG (report, slides) and PDF (papers)
    f"bulk/plots/{c}/{kind}" for c in (CONTRAST, "N061011_vs_N61311") for kind in ("volcano", "ma", "deg_heatmap")
] + ["bulk/qc/pca", "bulk/qc/distance_heatmap", "bulk/qc/sample_qc", "bulk/plots/deg_counts", "bulk/plots/deg_overlap"]


@pytest.fixture(scope="module")
def runs(repo, example_results, tmp_path_factory):
    """The example as the README runs it (2 cores; the session's one run, see tests/example_run.py), and its bulk
    tables made again with 1 core.

    (The single-cell part's 1-vs-2-core check is in test_singlecell_workflow.py.)
    """
    one, two = example_results, tmp_path_factory.mktemp("example") / "cores1"
    tables = sorted(str(p.relative_to(one)) for p in (one / "bulk").rglob("*.tsv"))
    run_example(repo, two, 1, targets=[str(two / rel) for rel in tables])
    return one, two


def test_every_public_output_is_filled(runs):
    one, _ = runs
    for rel in PUBLIC_OUTPUTS:
        f = one / rel
        assert f.is_file() and f.stat().st_size > 0, rel


def test_every_figure_as_png_and_pdf(runs):
    one, _ = runs
    for fig in FIGURES:
        png, pdf = one / f"{fig}.png", one / f"{fig}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000, fig
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5_000, fig
        assert png.stat().st_size < 1_500_000, f"{fig}.png is too heavy for the report"


def test_results_columns_and_deg_rule(runs):
    one, _ = runs
    res = pd.read_csv(one / f"bulk/de/{CONTRAST}/results.tsv", sep="\t")
    assert list(res.columns) == ["gene_id", "gene_name", "baseMean", "log2FoldChange", "lfcSE", "stat",
                                 "pvalue", "padj", "regulation"]
    deg = pd.read_csv(one / f"bulk/de/{CONTRAST}/deg.tsv", sep="\t")
    expect = res[(res.padj < 0.05) & (res.log2FoldChange.abs() > 1)]
    assert set(deg.gene_id) == set(expect.gene_id)
    assert deg.padj.is_monotonic_increasing
    summary = pd.read_csv(one / "bulk/de/summary.tsv", sep="\t").set_index("contrast")
    assert summary.loc[CONTRAST, "n_up"] == (deg.log2FoldChange > 0).sum()
    assert summary.loc[CONTRAST, "n_down"] == (deg.log2FoldChange < 0).sum()
    # the famous glucocorticoid-responsive genes (Himes et al. 2014) are up
    named = deg.set_index("gene_name")
    for gene in ["DUSP1", "KLF15", "PER1", "TSC22D3", "CRISPLD2"]:
        assert named.loc[gene, "regulation"] == "up", gene


def test_pipeline_matches_deseq2_in_r(runs, core_data):
    """The workflow's own tables against DESeq2 1.38.3 (R) on the same counts."""
    one, _ = runs
    r = pd.read_csv(core_data / "airway/deseq2_r/airway.results_alpha0.05.tsv.gz", sep="\t", index_col=0)
    ours = pd.read_csv(one / f"bulk/de/{CONTRAST}/results.tsv", sep="\t", index_col=0)
    both = ours.join(r, rsuffix="_r", how="inner").dropna(subset=["log2FoldChange", "log2FoldChange_r"])
    assert len(both) == (r.baseMean > 0).sum()
    pearson = np.corrcoef(both.log2FoldChange, both.log2FoldChange_r)[0, 1]
    assert pearson >= 0.999
    sig = lambda d, s="": set(d.index[(d["padj" + s] < 0.05) & (d["log2FoldChange" + s].abs() > 1)])  # noqa: E731
    ours_deg, r_deg = sig(ours), sig(r.dropna(subset=["padj"]))
    agreement = len(ours_deg & r_deg) / len(ours_deg | r_deg)
    assert agreement >= 0.97, (agreement, len(ours_deg), len(r_deg))
    sf_r = pd.read_csv(core_data / "airway/deseq2_r/airway.size_factors.tsv.gz", sep="\t", index_col=0).iloc[:, 0]
    sf = pd.read_csv(one / "bulk/counts/size_factors.tsv", sep="\t", index_col=0)["size_factor"]
    np.testing.assert_allclose(sf.loc[sf_r.index], sf_r, rtol=1e-6)


def test_byte_identical_with_1_and_2_cores(runs):
    one, two = runs
    tables = sorted(p.relative_to(one) for p in (one / "bulk").rglob("*.tsv"))
    assert len(tables) >= 5 and sorted(p.relative_to(two) for p in (two / "bulk").rglob("*.tsv")) == tables
    for rel in tables:
        assert (one / rel).read_bytes() == (two / rel).read_bytes(), rel


def test_xlsx_workbook_holds_every_deg_table(runs):
    one, _ = runs
    book = pd.read_excel(one / "bulk/de/deg_tables.xlsx", sheet_name=None)
    assert list(book) == ["summary", CONTRAST, "N061011_vs_N61311", "genes_of_interest", "genes_of_interest_lookup"]
    for name in (CONTRAST, "N061011_vs_N61311"):
        deg = pd.read_csv(one / f"bulk/de/{name}/deg.tsv", sep="\t")
        assert list(book[name].gene_id) == list(deg.gene_id)
        np.testing.assert_allclose(book[name].log2FoldChange, deg.log2FoldChange, rtol=1e-9)


def test_qc_tables(runs, repo):
    one, _ = runs
    qc = pd.read_csv(one / "bulk/qc/sample_qc.tsv", sep="\t", index_col=0)
    counts = pd.read_csv(repo / "resources/airway/counts.tsv", sep="\t", index_col=0)
    assert qc["library_size"].to_dict() == counts.sum().to_dict()
    outliers = pd.read_csv(one / "bulk/qc/outliers.tsv", sep="\t", index_col=0)
    assert len(outliers) == 8 and not outliers["outlier"].any()
    dist = pd.read_csv(one / "bulk/qc/sample_distances.tsv", sep="\t", index_col=0)
    assert dist.shape == (8, 8) and np.allclose(np.diag(dist), 0)


def test_pca_separates_dexamethasone(runs):
    one, _ = runs
    pca = pd.read_csv(one / "bulk/qc/pca.tsv", sep="\t", index_col=0)
    assert {"PC1", "PC2"} <= set(pca.columns)
    assert "dex" in pca.columns
    separated = False
    for pc in ("PC1", "PC2"):
        trt, untrt = pca.loc[pca.dex == "trt", pc], pca.loc[pca.dex == "untrt", pc]
        separated |= trt.max() < untrt.min() or trt.min() > untrt.max()
    assert separated, pca


def _severe(browser) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def _displayed(browser, css: str) -> list:
    """The elements matching ``css`` that ``WebElement.is_displayed()`` calls visible, in document order.

    The same test (Selenium's isDisplayed atom, which ``is_displayed()`` runs in the page), but one round trip
    for all of them instead of one per element: ~1,000 table rows took 12 s per look that way.
    """
    import pkgutil

    atom = pkgutil.get_data("selenium.webdriver.remote", "isDisplayed.js").decode("utf8")
    return browser.execute_script(
        f"var isDisplayed = ({atom});\n"
        "return Array.prototype.filter.call(document.querySelectorAll(arguments[0]),"
        " function (e) { return isDisplayed.apply(null, [e]); });", css)


def test_report_renders_in_a_real_browser(repo, runs, browser, tmp_path):
    """`snakemake --report` on the example; Chromium shows every category, figure and table, no JS errors."""
    import time

    from selenium.webdriver.common.by import By

    one, _ = runs
    report = tmp_path / "report.html"
    proc = subprocess.run([str(SNAKEMAKE), "--cores", "1", "--config", f"results={one}", "--report", str(report)],
                          cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ERROR/" not in proc.stderr, proc.stderr[-3000:]  # a caption with broken RST
    assert report.stat().st_size < 15e6
    source = report.read_text()
    for name in ["volcano.png", "ma.png", "deg_heatmap.png", "pca.png", "distance_heatmap.png", "sample_qc.png",
                 "deg_counts.png", "deg_overlap.png", "deg.html", "summary.html", "sample_qc.html",
                 "outliers.tsv", "run_info.html"]:
        assert name in source, f"{name} missing from the report"
    browser.get(report.as_uri())
    time.sleep(2)
    body = browser.find_element(By.TAG_NAME, "body").text
    for category in ["00. About this run", "01. Bulk sample QC", "02. Bulk differential expression",
                     "03. Bulk contrasts compared"]:
        assert category in body
    browser.find_element(By.XPATH, "//*[contains(text(), '02. Bulk differential expression')]").click()
    time.sleep(1)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert CONTRAST in body and "N061011_vs_N61311" in body
    browser.save_screenshot(str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert _severe(browser) == []


def test_deg_table_page_sorts_and_searches(runs, browser):
    """The per-contrast DEG page works by itself: the search box filters, a header click sorts."""
    import time

    from selenium.webdriver.common.by import By

    one, _ = runs
    page = one / f"bulk/de/{CONTRAST}/deg.html"
    browser.get(page.as_uri())
    rows = lambda: _displayed(browser, "#t tbody tr")  # noqa: E731
    deg = pd.read_csv(one / f"bulk/de/{CONTRAST}/deg.tsv", sep="\t")
    assert len(rows()) == len(deg)
    box = browser.find_element(By.ID, "q")
    box.send_keys("CRISPLD2")
    time.sleep(0.3)
    visible = rows()
    assert len(visible) == 1 and "CRISPLD2" in visible[0].text
    browser.execute_script("var q=document.getElementById('q'); q.value=''; q.dispatchEvent(new Event('input'));")
    time.sleep(0.3)
    assert len(rows()) == len(deg)
    header = browser.find_element(By.XPATH, "//th[text()='baseMean']")
    header.click()
    header.click()  # descending
    time.sleep(0.3)
    first = rows()[0].find_elements(By.TAG_NAME, "td")
    top = deg.sort_values("baseMean", ascending=False).iloc[0]
    assert first[0].text == top.gene_id
    assert _severe(browser) == []
