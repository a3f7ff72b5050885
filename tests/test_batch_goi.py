"""Batches in the figures (limma removeBatchEffect, against R) and bulk genes of interest, unit and end to end.

R references: ``tests/_scripts/limma_remove_batch_airway.R`` (DESeq2 1.38.3, limma 3.54.1) on the bundled airway
counts, design ``~ cell + dex``, batch ``cell``; tables in ``tests/data/airway_remove_batch``. The end-to-end run
uses 3,000 expressed airway genes plus the genes of interest (one snakemake run shared by the tests below).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from degflow.bulk import genes_of_interest as goi
from degflow.bulk import qc
from degflow.bulk.batch import batch_corrected, remove_batch_effect
from degflow.bulk.vst import variance_stabilised
from degflow.errors import DegflowInputError
from degflow.pl import bulk as plots
from degflow.pl.base import LABEL_GID, save
from degflow.pl.de import ma, volcano
from degflow.plan.bulk import plan_bulk
from degflow.plan.design import batch_design_terms
from degflow.plan.schema import validate_config

REPO = Path(__file__).resolve().parents[1]
REF = REPO / "tests" / "data" / "airway_remove_batch"
AIRWAY = REPO / "resources" / "airway"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
GOI = ["DUSP1", "KLF15", "PER1", "TSC22D3", "CRISPLD2", "FKBP5", "ZBTB16"]


def _sheet() -> pd.DataFrame:
    sheet = pd.read_csv(AIRWAY / "samples.tsv", sep="\t", index_col=0)[["cell", "dex"]]
    sheet["dex"] = pd.Categorical(sheet["dex"], ["untrt", "trt"])
    return sheet


def _same_up_to_sign(ours: pd.Series, ref: pd.Series) -> float:
    sign = np.sign(float((ours * ref).sum()))
    return float(np.abs(sign * ours - ref).max())


# --------------------------------------------------------------------------------------
# removeBatchEffect and the corrected PCA against R
# --------------------------------------------------------------------------------------
def test_remove_batch_effect_matches_limma_on_r_vst():
    """R's VST in, limma's corrected values out: the port alone, to rounding."""
    vst = pd.read_csv(REF / "vst_top500.tsv", sep="\t", index_col=0)
    expected = pd.read_csv(REF / "corrected_top500.tsv", sep="\t", index_col=0)
    ours = batch_corrected(vst, _sheet(), design="~ cell + dex", batch=["cell"])
    assert ours.attrs["degflow"]["design_kept"] == "~ dex"
    np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-12)
    # these are plotPCA's 500 genes: its coordinates follow from them alone
    coords, ratio = qc.pca(ours, n_top=None)
    r = pd.read_csv(REF / "pca.tsv", sep="\t", index_col=0)
    for pc in ("PC1", "PC2"):
        assert _same_up_to_sign(coords[pc], r[pc]) < 1e-10, pc
    r_var = pd.read_csv(REF / "percent_var.tsv", sep="\t", index_col=0)["percentVar"]
    np.testing.assert_allclose(ratio[["PC1", "PC2"]], r_var, rtol=1e-10)


def test_batch_corrected_pca_from_counts_matches_r():
    """Counts -> VST (blind) -> removeBatchEffect -> top-500 PCA, all in degflow, against vst/plotPCA in R."""
    counts = pd.read_csv(AIRWAY / "counts.tsv", sep="\t", index_col=0)
    vst = variance_stabilised(counts)
    r_vst = pd.read_csv(REF / "vst_top500.tsv", sep="\t", index_col=0)
    assert np.abs(vst.loc[r_vst.index] - r_vst).to_numpy().max() < 1e-9  # R's own gene-wise dispersions and trend
    corrected = batch_corrected(vst, _sheet(), design="~ cell + dex", batch=["cell"])
    coords, ratio = qc.pca(corrected, n_top=500)
    r = pd.read_csv(REF / "pca.tsv", sep="\t", index_col=0)
    for pc in ("PC1", "PC2"):
        assert _same_up_to_sign(coords[pc], r[pc]) < 1e-8, pc
    np.testing.assert_allclose(ratio[["PC1", "PC2"]], [0.93734135378271266, 0.034248006878772795], rtol=1e-8)
    measured, _ = qc.pca(vst, n_top=500)
    r_measured = pd.read_csv(REF / "pca_measured.tsv", sep="\t", index_col=0)
    for pc in ("PC1", "PC2"):
        assert _same_up_to_sign(measured[pc], r_measured[pc]) < 1e-8, pc
    # what the correction is for: untreated and treated samples of one cell line sit apart by the same PC1 step
    step = coords.loc[r.index[r.dex == "trt"], "PC1"].to_numpy() - coords.loc[r.index[r.dex == "untrt"], "PC1"].to_numpy()
    assert np.ptp(np.abs(step)) < 0.2 * np.abs(step).mean()


def test_remove_batch_effect_keeps_gene_means_and_refuses_confounding():
    vst = pd.read_csv(REF / "vst_top500.tsv", sep="\t", index_col=0)
    sheet = _sheet()
    only_batch = remove_batch_effect(vst, batch=sheet["cell"])  # intercept kept: batch means made equal
    np.testing.assert_allclose(only_batch.mean(axis=1), vst.mean(axis=1), atol=1e-12)
    by_cell = only_batch.T.groupby(sheet["cell"]).mean().T
    np.testing.assert_allclose(by_cell.sub(by_cell.mean(axis=1), axis=0).to_numpy(), 0, atol=1e-12)
    with pytest.raises(DegflowInputError, match="cannot be told apart"):
        remove_batch_effect(vst, batch=sheet["dex"].astype(str), design=np.column_stack(
            [np.ones(8), (sheet["dex"] == "trt").to_numpy(dtype=float)]))
    with pytest.raises(DegflowInputError, match="one level"):
        remove_batch_effect(vst, batch=pd.Series("a", index=vst.columns))


def test_batch_must_be_a_main_effect_of_the_design():
    assert batch_design_terms("~ cell + dex", ["cell"]) == ["dex"]
    assert batch_design_terms("~ batch + genotype * treatment", ["batch"]) == ["genotype", "treatment",
                                                                             "genotype:treatment"]
    with pytest.raises(DegflowInputError, match=r"^config key 'bulk.batch': 'lane' is not a variable of the design"):
        batch_design_terms("~ cell + dex", ["lane"])
    with pytest.raises(DegflowInputError, match="interaction 'cell:dex'"):
        batch_design_terms("~ cell * dex", ["cell"])


# --------------------------------------------------------------------------------------
# genes of interest: reading and matching
# --------------------------------------------------------------------------------------
def test_gene_list_from_a_file_and_its_errors(tmp_path):
    f = tmp_path / "genes.txt"
    f.write_text("# my genes\nDUSP1\n\nPER1\tclock gene\nDUSP1\n  KLF15  # dexamethasone\n")
    assert goi.read_gene_list(str(f)) == ["DUSP1", "PER1", "KLF15"]
    assert goi.read_gene_list(["A", "B", "A"]) == ["A", "B"]
    assert goi.read_gene_list(None) == [] and goi.read_gene_list([]) == []
    with pytest.raises(DegflowInputError, match="does not exist"):
        goi.read_gene_list(str(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    with pytest.raises(DegflowInputError, match="names no gene"):
        goi.read_gene_list(str(tmp_path / "empty.txt"))


def test_match_genes_by_id_name_version_and_case():
    names = pd.read_csv(AIRWAY / "genes.tsv", sep="\t", index_col=0)["symbol"]
    ids = pd.read_csv(AIRWAY / "counts.tsv", sep="\t", index_col=0, usecols=[0]).index
    lookup = goi.match_genes(["DUSP1", "per1", "ENSG00000103196", "ENSG00000000003.14", "NOTAGENE"], ids,
                             names.reindex(ids))
    got = {q: (g, m) for q, g, m in lookup[["query", "gene_id", "matched_by"]].itertuples(index=False)}
    assert got == {"DUSP1": ("ENSG00000120129", "gene_name"), "per1": ("ENSG00000179094", "gene_name ignoring case"),
                   "ENSG00000103196": ("ENSG00000103196", "gene_id"),
                   "ENSG00000000003.14": ("ENSG00000000003", "gene_id without version"),
                   "NOTAGENE": ("", "not found")}
    dup = names[names.duplicated(keep=False) & names.notna()].iloc[:1]  # a symbol carried by several IDs
    both = goi.match_genes([dup.iloc[0]], ids, names.reindex(ids))
    assert len(both) == int((names == dup.iloc[0]).sum()) >= 2


# --------------------------------------------------------------------------------------
# bad input, before the DAG
# --------------------------------------------------------------------------------------
def _bulk_cfg(tmp: Path, **overrides) -> dict:
    bulk = {"counts": str(AIRWAY / "counts.tsv"), "samples": str(REPO / "config" / "samples.tsv"),
            "design": "~ cell + dex", "reference_levels": {"dex": "untrt"},
            "contrasts": {"dex_vs_untrt": ["dex", "trt", "untrt"]}}
    bulk.update(overrides)
    return {"results": str(tmp / "results"), "bulk": bulk}


@pytest.mark.parametrize("overrides, message", [
    ({"batch": ["lane"]}, "config key 'bulk.batch': 'lane' is not a variable of the design '~ cell + dex'"),
    ({"batch": ["cell"], "design": "~ cell + dex + cell:dex"}, "'cell' is part of the interaction 'cell:dex'"),
    ({"genes_of_interest": "missing_genes.txt"}, "config key 'bulk.genes_of_interest': file 'missing_genes.txt'"),
], ids=["batch-not-in-design", "batch-in-interaction", "gene-file-missing"])
def test_bad_batch_or_gene_list_is_refused_before_the_dag(tmp_path, overrides, message):
    cfg = validate_config(_bulk_cfg(tmp_path, **overrides), schema_dir=REPO / "workflow" / "schemas")
    with pytest.raises(DegflowInputError) as err:
        plan_bulk(cfg["bulk"])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_batch_not_in_design_stops_snakemake_with_one_line(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(_bulk_cfg(tmp_path, batch=["lane"])))
    proc = subprocess.run([str(SNAKEMAKE), "-n", "-s", str(REPO / "Snakefile"), "--configfile", str(cfg), "--cores",
                           "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("degflow:")]
    assert lines == ["degflow: config key 'bulk.batch': 'lane' is not a variable of the design '~ cell + dex'; "
                     "batches must be in the design (e.g. design: \"~ lane + dex\") so the tests account for them, "
                     "or remove it from batch"], proc.stderr[-2000:]
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------------------
# end to end: airway, 3,000 expressed genes + the genes of interest, batch = cell
# --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("batch_goi")
    counts = pd.read_csv(AIRWAY / "counts.tsv", sep="\t", index_col=0)
    names = pd.read_csv(AIRWAY / "genes.tsv", sep="\t", index_col=0)["symbol"]
    wanted = [g for g in names.index[names.isin(GOI)] if g in counts.index]
    expressed = counts.index[counts.sum(axis=1) > 0][:3000]
    counts.loc[list(expressed) + [g for g in wanted if g not in expressed]].to_csv(base / "counts.tsv", sep="\t")
    cfg = _bulk_cfg(base, counts=str(base / "counts.tsv"), annotation=str(AIRWAY / "genes.tsv"), batch=["cell"],
                    genes_of_interest=[*GOI, "NOTAGENE", "ENSG00000000003"])
    cfg["bulk"]["contrasts"]["N061011_vs_N61311"] = ["cell", "N061011", "N61311"]
    (base / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = base / "results" / "bulk"
    targets = [res / "qc" / "pca_batch_corrected.tsv", res / "de" / "deg_tables.xlsx",
               res / "genes_of_interest" / "heatmap.png", res / "plots" / "dex_vs_untrt" / "volcano.png",
               res / "plots" / "dex_vs_untrt" / "deg_heatmap.png", res / "plots" / "N061011_vs_N61311" / "deg_heatmap.png"]
    proc = subprocess.run([str(SNAKEMAKE), *map(str, targets), "-s", str(REPO / "Snakefile"), "--configfile",
                           str(base / "config.yaml"), "--cores", "2", "--nolock"], cwd=base, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return base, res, proc


def test_batch_corrected_qc_outputs(run):
    base, res, _ = run
    table = pd.read_csv(res / "qc" / "pca_batch_corrected.tsv", sep="\t")
    assert list(table.columns[:3]) == ["sample", "PC1", "PC2"] and len(table) == 8
    # the table is the library's corrected PCA of the run's own counts and size factors
    counts = pd.read_csv(base / "counts.tsv", sep="\t", index_col=0)
    sf = pd.read_csv(res / "counts" / "size_factors.tsv", sep="\t", index_col=0)["size_factor"]
    corrected = batch_corrected(variance_stabilised(counts, sf), _sheet(), design="~ cell + dex", batch=["cell"])
    coords, _ = qc.pca(corrected, n_top=500)
    for pc in ("PC1", "PC2"):
        assert _same_up_to_sign(table.set_index("sample")[pc], coords[pc]) < 1e-8
    # dexamethasone alone separates the samples on PC1 once the cell lines are removed
    t = table.set_index("sample")
    trt, untrt = t.loc[t.dex == "trt", "PC1"], t.loc[t.dex == "untrt", "PC1"]
    assert trt.min() > untrt.max() or trt.max() < untrt.min()
    dist = pd.read_csv(res / "qc" / "sample_distances_batch_corrected.tsv", sep="\t", index_col=0)
    assert dist.shape == (8, 8)
    nearest = dist.where(dist > 0).idxmin()
    assert all(t.loc[s, "dex"] == t.loc[n, "dex"] for s, n in nearest.items())
    for stem in ("pca_batch_corrected", "distance_heatmap_batch_corrected"):
        assert (res / "qc" / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
        assert (res / "qc" / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"


def test_deg_heatmaps_use_corrected_values_except_for_a_batch_contrast(run):
    base, _, _ = run
    logs = base / "results" / "logs" / "bulk" / "plots"
    assert "batch removed (limma removeBatchEffect): cell" in (logs / "dex_vs_untrt.deg_heatmap.log").read_text()
    assert "batch removed" not in (logs / "N061011_vs_N61311.deg_heatmap.log").read_text()


def test_genes_of_interest_table_covers_every_contrast(run):
    _, res, proc = run
    d = res / "genes_of_interest"
    table = pd.read_csv(d / "results.tsv", sep="\t", dtype={"gene_id": str})
    assert list(table["query"]) == [*GOI, "ENSG00000000003"]
    for contrast in ("dex_vs_untrt", "N061011_vs_N61311"):
        full = pd.read_csv(res / "de" / contrast / "results.tsv", sep="\t", index_col=0)
        for col in ("log2FoldChange", "lfcSE", "stat", "pvalue", "padj"):
            np.testing.assert_array_equal(table[f"{contrast}_{col}"].to_numpy(),
                                          full.loc[table["gene_id"], col].to_numpy())
        np.testing.assert_array_equal(table["baseMean"], full.loc[table["gene_id"], "baseMean"])
    assert (table.set_index("query").loc[GOI, "dex_vs_untrt_regulation"] == "up").all()  # Himes et al. 2014
    assert pd.read_csv(d / "not_found.tsv", sep="\t")["query"].tolist() == ["NOTAGENE"]
    lookup = pd.read_csv(d / "lookup.tsv", sep="\t", keep_default_na=False)
    assert lookup.set_index("query").loc["NOTAGENE", "matched_by"] == "not found"
    assert "degflow: warning: genes_of_interest: 1 of 9 not found among the analysed genes: NOTAGENE" in proc.stderr
    book = pd.read_excel(res / "de" / "deg_tables.xlsx", sheet_name=None)
    assert list(book) == ["summary", "dex_vs_untrt", "N061011_vs_N61311", "genes_of_interest",
                          "genes_of_interest_lookup"]
    np.testing.assert_allclose(book["genes_of_interest"]["dex_vs_untrt_log2FoldChange"],
                               table["dex_vs_untrt_log2FoldChange"], rtol=1e-12)
    assert "NOTAGENE" in (d / "results.html").read_text()


def test_genes_of_interest_figures(run):
    _, res, _ = run
    d = res / "genes_of_interest"
    table = pd.read_csv(d / "results.tsv", sep="\t")
    pngs = sorted(p.name for p in (d / "counts").glob("*.png"))
    assert pngs == sorted(f"{n}_{g}.png" for n, g in zip(table["gene_name"], table["gene_id"], strict=True))
    assert len(list((d / "counts").glob("*.pdf"))) == len(pngs)
    assert (d / "heatmap.png").stat().st_size > 20_000 and (d / "heatmap.pdf").read_bytes()[:5] == b"%PDF-"
    # the volcano and MA plots of the run's table label every gene of interest (ringed), besides the top genes
    full = pd.read_csv(res / "de" / "dex_vs_untrt" / "results.tsv", sep="\t", index_col=0)
    for fig in (volcano(full, highlight=list(table["gene_id"]), top_n=5), ma(full, highlight=list(table["gene_id"]))):
        labels = {t.get_text() for t in fig.findobj(lambda a: a.get_gid() == LABEL_GID)}
        assert set(table["gene_name"]) <= labels
        legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
        assert "genes of interest (8)" in legend
        save(fig, res / "_check.png")
    # the counts plot: samples by dex (reference first), every contrast's log2FC and padj under it
    row = table.set_index("gene_name").loc["DUSP1"]
    lines = goi.report_lines(row, ["dex_vs_untrt", "N061011_vs_N61311"])
    assert lines[0] == f"dex_vs_untrt: log2FC {row['dex_vs_untrt_log2FoldChange']:+.2f}, padj {row['dex_vs_untrt_padj']:.1e}"
    assert lines[1].startswith("N061011_vs_N61311: log2FC ")
    norm = pd.read_csv(res / "counts" / "normalized_counts.tsv", sep="\t", index_col=0)
    fig = plots.gene_counts(norm.loc[row["gene_id"]], _sheet(), group_by=["dex"], color_by="cell", notes=lines)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["untrt", "trt"]
    dots = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    np.testing.assert_allclose(np.sort(dots), np.sort(norm.loc[row["gene_id"]].to_numpy() + 0.5))
    assert "\n".join(lines) in [t.get_text() for t in ax.texts]
    save(fig, res / "_check.png")


def test_results_table_takes_any_test_table_such_as_an_lrt(run):
    """An LRT's table (no log2FC of its own here) is one more entry of the list: its columns are added, no more."""
    _, res, _ = run
    lookup = pd.read_csv(res / "genes_of_interest" / "lookup.tsv", sep="\t", keep_default_na=False)
    wald = pd.read_csv(res / "de" / "dex_vs_untrt" / "results.tsv", sep="\t")
    lrt_like = wald[["gene_id", "baseMean", "stat", "pvalue", "padj"]]
    table = goi.results_table(lookup, {"dex_vs_untrt": wald, "lrt": lrt_like})
    assert [c for c in table.columns if c.startswith("lrt_")] == ["lrt_stat", "lrt_pvalue", "lrt_padj"]
    assert goi.report_lines(table.iloc[0], ["lrt"])[0].startswith("lrt: padj ")


def test_no_gene_found_is_a_clear_warning_not_a_failure(run):
    """None of the names found (e.g. mouse names on human data without an annotation): a warning, empty outputs."""
    base, _, _ = run
    other = base / "results_none"
    shutil.copytree(base / "results", other, copy_function=shutil.copy2)  # mtimes kept: only the GOI rules run
    shutil.rmtree(other / "bulk" / "genes_of_interest")
    cfg = yaml.safe_load((base / "config.yaml").read_text())
    cfg["results"] = str(other)
    cfg["bulk"]["genes_of_interest"] = ["Hmox1x", "NOTAGENE"]
    (base / "config_none.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    d = other / "bulk" / "genes_of_interest"
    proc = subprocess.run([str(SNAKEMAKE), str(d / "heatmap.png"), "-s", str(REPO / "Snakefile"), "--configfile",
                           str(base / "config_none.yaml"), "--cores", "1", "--nolock", "--rerun-triggers", "mtime"],
                          cwd=base, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_genes = len(pd.read_csv(base / "results" / "bulk" / "counts" / "normalized_counts.tsv", sep="\t", usecols=[0]))
    assert (f"degflow: warning: genes_of_interest: NONE of the 2 genes was found among the {n_genes:,} analysed genes"
            in proc.stderr)
    assert "bulk_fit" not in proc.stderr  # nothing else ran again
    assert pd.read_csv(d / "results.tsv", sep="\t").empty
    assert pd.read_csv(d / "not_found.tsv", sep="\t")["query"].tolist() == ["Hmox1x", "NOTAGENE"]
    assert (d / "heatmap.png").read_bytes()[:4] == b"\x89PNG" and not list((d / "counts").glob("*.png"))


def test_genes_of_interest_over_a_numeric_covariate(repo, tmp_path):
    """A design of covariates only (``~ avgLength`` with a ``{name: avgLength}`` contrast): the count plots put the
    covariate on the x axis (a scatter of the normalised counts over its values) instead of stopping at run time."""
    from degflow.de.driver import _r_size_factors

    d = repo / "resources" / "airway"
    counts = pd.read_csv(d / "counts.tsv", sep="\t", index_col=0).iloc[:3000]
    sheet = pd.read_csv(d / "samples.tsv", sep="\t")[["sample_id", "avgLength"]]
    counts.to_csv(tmp_path / "counts.tsv", sep="\t")
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    bulk = {"counts": str(tmp_path / "counts.tsv"), "samples": str(tmp_path / "samples.tsv"), "design": "~ avgLength",
            "contrasts": {"length": {"name": "avgLength"}}, "genes_of_interest": [str(counts.index[0])]}
    plan, _ = plan_bulk(validate_config({"results": str(tmp_path / "results"), "bulk": bulk})["bulk"])
    assert plan.factors == [] and plan.covariates == ["avgLength"]
    group_by = goi.default_group_by(plan.contrasts, plan.factors, plan.batch, covariates=plan.covariates)
    assert group_by == ["avgLength"]
    assert goi.default_group_by({"c": ["dex", "trt", "untrt"]}, ["dex"], covariates=["avgLength"]) == ["dex"]
    norm = counts / _r_size_factors(counts.to_numpy(dtype=float))
    gene = norm.index[0]
    fig = plots.gene_counts(norm.loc[gene], plan.sheet, group_by=group_by)
    ax = fig.axes[0]
    dots = np.concatenate([c.get_offsets() for c in ax.collections])
    order = np.argsort(dots[:, 0], kind="stable")
    expect = pd.DataFrame({"x": plan.sheet["avgLength"], "y": norm.loc[gene] + 0.5}).sort_values("x", kind="stable")
    np.testing.assert_allclose(dots[order], expect.to_numpy(dtype=float))
    assert ax.get_xlabel() == "avgLength" and ax.get_yscale() == "log"
    save(fig, tmp_path / "counts.png")


def test_contrast_batch_variables_finds_a_tested_batch():
    """The DEG heatmap keeps the measured values when the contrast tests a batch column, in any contrast form."""
    from degflow.plan.design import check_design, contrast_batch_variables, results_names

    sheet = pd.read_csv(AIRWAY / "samples.tsv", sep="\t", index_col=0)
    design = "~ cell + dex"
    _, _, meta = check_design(sheet, design, {"dex": "untrt", "cell": "N61311"}, {})
    names = results_names(design, meta)
    cell_coef = next(n for n in names if n.startswith("cell_"))
    assert names[-1] == "dex_trt_vs_untrt"

    def tested(spec, batch=("cell",)):
        return contrast_batch_variables(spec, list(batch), design=design, meta=meta)

    assert tested(["cell", "N061011", "N61311"]) == ["cell"] and tested(["dex", "trt", "untrt"]) == []
    assert tested({"name": cell_coef}) == ["cell"] and tested({"name": "dex_trt_vs_untrt"}) == []
    assert tested({"vector": [0.0 if n != cell_coef else 1.0 for n in names]}) == ["cell"]
    assert tested({"vector": [0, 0, 0, 0, 1]}) == []
    assert tested({"list": [["dex_trt_vs_untrt"], [cell_coef]]}) == ["cell"]
    assert tested({"list": [["dex_trt_vs_untrt"]]}) == [] and tested({"name": cell_coef}, batch=()) == []
    # a numeric covariate as the batch: its one coefficient is found by its name
    _, _, meta2 = check_design(sheet, "~ avgLength + dex", {"dex": "untrt"}, {})
    assert contrast_batch_variables({"name": "avgLength"}, ["avgLength"], design="~ avgLength + dex",
                                    meta=meta2) == ["avgLength"]
