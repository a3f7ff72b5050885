"""Figures (degflow.pl.de, degflow.pl.bulk) on the real airway data: right content, no label overlaps, reproducible files."""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.collections as mcoll
import matplotlib.text as mtext
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Rectangle

from degflow import DegflowInputError
from degflow.bulk import degs, qc
from degflow.bulk.vst import variance_stabilised
from degflow.pl import base as pl_base
from degflow.pl import bulk as plots
from degflow.pl import de as pl_de

REPORT = Path(__file__).resolve().parents[1] / "workflow" / "report"
CAPTIONS = [
    "volcano.rst", "ma.rst", "pca.rst", "distance_heatmap.rst", "deg_heatmap.rst", "deg_counts.rst",
    "deg_overlap.rst", "sample_qc.rst", "deg_table.rst", "results_table.rst",
]


@pytest.fixture(scope="module")
def res(core_data, airway):
    """DESeq2 (R) results for dex trt vs untrt, with gene symbols as gene_name."""
    r = pd.read_csv(core_data / "airway" / "deseq2_r" / "airway.results_alpha0.05.tsv.gz", sep="\t", index_col=0)
    r["gene_name"] = airway[2]["symbol"].reindex(r.index)
    return r


@pytest.fixture(scope="module")
def vst(airway):
    return variance_stabilised(airway[0])


def _labels(fig: Figure) -> list:
    return [t for ax in fig.axes for t in ax.texts if t.get_gid() == pl_base.LABEL_GID]


def _assert_no_overlap(fig: Figure) -> None:
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    for ax in fig.axes:
        labs = [t for t in ax.texts if t.get_gid() == pl_base.LABEL_GID]
        boxes = [mtext.Text.get_window_extent(t, r) for t in labs]  # the text only, not its leader line
        axbox = ax.get_window_extent(r)
        for b in boxes:
            assert axbox.x0 <= b.x0 and b.x1 <= axbox.x1 and axbox.y0 <= b.y0 and b.y1 <= axbox.y1
        for (i, a), (j, b) in itertools.combinations(enumerate(boxes), 2):
            assert not a.overlaps(b), (labs[i].get_text(), labs[j].get_text())


def _legend_texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


# ---------------------------------------------------------------- volcano / MA
def test_volcano_counts_labels_and_thresholds(res):
    fig = pl_de.volcano(res, lfc=1, padj=0.05, top_n=15, title="trt vs untrt")
    assert isinstance(fig, Figure)
    texts = _legend_texts(fig)
    # airway.summary.txt: padj < 0.05 & |log2FC| > 1 -> up 512, down 472
    assert "up (512)" in texts and "down (472)" in texts
    assert any(t.startswith("padj NA, not shown (47,309)") for t in texts)
    labels = _labels(fig)
    assert len(labels) == 15
    top = degs.top_genes(res, 15)
    assert [t.get_text() for t in labels] == top["gene_name"].fillna(pd.Series(top.index, index=top.index)).tolist()
    assert labels[0].get_text() == "SPARCL1"  # ENSG00000152583, R's top gene
    ax = fig.axes[0]
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    ys = {round(ln.get_ydata()[0], 6) for ln in dashed if ln.get_ydata()[0] == ln.get_ydata()[1]}
    xs = {round(ln.get_xdata()[0], 6) for ln in dashed if ln.get_xdata()[0] == ln.get_xdata()[1]}
    assert round(-np.log10(0.05), 6) in ys and {-1.0, 1.0} <= xs
    _assert_no_overlap(fig)


def test_volcano_crowded_labels_do_not_overlap():
    rng = np.random.default_rng(0)  # 200 DE genes in one tight clump, 40 labels
    clump = pd.DataFrame(
        {"log2FoldChange": rng.normal(3, 0.05, 200), "padj": 10.0 ** -rng.normal(50, 0.5, 200)},
        index=[f"GENE{i}" for i in range(200)],
    )
    fig = pl_de.volcano(clump, top_n=40)
    assert len(_labels(fig)) == 40
    _assert_no_overlap(fig)


def test_volcano_padj_zero_clipped_and_marked(res):
    r = res.copy()
    top3 = degs.top_genes(r, 3).index
    r.loc[top3, "padj"] = 0.0
    fig = pl_de.volcano(r, top_n=5)
    ax = fig.axes[0]
    tri = [c for c in ax.collections if isinstance(c, mcoll.PathCollection) and len(c.get_offsets()) == 3]
    assert tri, "padj = 0 genes drawn as their own triangle layer"
    y = np.asarray(tri[0].get_offsets())[:, 1]
    assert np.isfinite(y).all() and (y < ax.get_ylim()[1]).all()
    assert any("padj = 0, drawn at top (3)" in t for t in _legend_texts(fig))
    _assert_no_overlap(fig)


def test_volcano_64k_genes_small_and_capped(res, tmp_path):
    rng = np.random.default_rng(0)
    r = res.copy()  # 64,102 genes; give the untested ones values so all are drawn candidates
    miss = r["padj"].isna()
    r.loc[miss, "log2FoldChange"] = rng.normal(0, 0.4, miss.sum())
    r.loc[miss, "padj"] = rng.uniform(0.06, 1, miss.sum())
    fig = pl_de.volcano(r, max_points=20_000)
    n_drawn = sum(len(c.get_offsets()) for c in fig.axes[0].collections)
    assert n_drawn == 20_000 + 512 + 472
    assert all(c.get_rasterized() for c in fig.axes[0].collections)
    pl_base.save(fig, tmp_path / "v.png", tmp_path / "v.pdf")
    assert (tmp_path / "v.png").stat().st_size < 1_000_000
    assert (tmp_path / "v.pdf").stat().st_size < 1_000_000


def test_volcano_rejects_bad_input(res):
    with pytest.raises(DegflowInputError, match="padj"):
        pl_de.volcano(res.drop(columns="padj"))
    with pytest.raises(DegflowInputError, match="padj threshold"):
        pl_de.volcano(res, padj=0)


def test_ma_counts_and_hidden(res):
    fig = pl_de.ma(res, ylim=5)
    texts = _legend_texts(fig)
    assert "up (512)" in texts and "down (472)" in texts
    assert any(t.startswith("baseMean 0, not shown (30,633)") for t in texts)  # SOURCE.md: 30633 all-zero genes
    assert any(t.startswith("|log2FC| > 5, at edge") for t in texts)
    assert fig.axes[0].get_ylim() == pytest.approx((-5.4, 5.4))


# ---------------------------------------------------------------- sample figures
def test_pca_panels_variance_and_labels(airway, vst):
    _, samples, _ = airway
    coords, ratio = qc.pca(vst)
    fig = plots.pca(coords, ratio, samples, color_by=["dex", "cell"])
    axes = [ax for ax in fig.axes if ax.get_legend()]
    assert len(axes) == 2
    assert axes[0].get_xlabel() == f"PC1: {100 * ratio['PC1']:.0f}% variance"
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == sorted(samples["cell"].unique())
    labs = _labels(fig)
    assert len(labs) == 16 and {t.get_text() for t in labs} == set(samples.index)
    _assert_no_overlap(fig)
    with pytest.raises(DegflowInputError, match="no column"):
        plots.pca(coords, ratio, samples, color_by=["batch"])


def test_distance_heatmap_follows_clustering(airway, vst):
    _, samples, _ = airway
    sd = qc.sample_distances(vst)
    fig = plots.distance_heatmap(sd, samples, annotate_by=["dex", "cell"])
    heat = max(fig.axes, key=lambda ax: len(ax.get_xticklabels()))
    assert [t.get_text() for t in heat.get_xticklabels()] == sd.order
    mesh = [c for c in heat.collections if isinstance(c, mcoll.QuadMesh)][0]
    got = np.asarray(mesh.get_array()).reshape(8, 8)
    np.testing.assert_allclose(got, sd.distances.loc[sd.order, sd.order].to_numpy())
    legend_titles = {lg.get_title().get_text() for lg in fig.legends}
    assert legend_titles == {"dex", "cell"}


def test_deg_heatmap_names_and_zscores(airway, vst, res):
    _, samples, genes = airway
    top = degs.top_genes(res, 30).index
    fig = plots.deg_heatmap(vst, top, samples, annotate_by=["dex"], gene_names=genes["symbol"])
    heat = max(fig.axes, key=lambda ax: len(ax.get_yticklabels()))
    names = {t.get_text() for t in heat.get_yticklabels()}
    assert "SPARCL1" in names and len(names) == 30
    mesh = [c for c in heat.collections if isinstance(c, mcoll.QuadMesh)][0]
    z = np.asarray(mesh.get_array()).reshape(30, 8)
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-9)
    big = plots.deg_heatmap(vst, degs.top_genes(res, 100).index, samples, annotate_by=["dex"])
    heat = max(big.axes, key=lambda ax: len(ax.get_xticklabels()))
    assert all(t.get_text() == "" for t in heat.get_yticklabels())  # > 60 genes: no row labels
    with pytest.raises(DegflowInputError, match="not in matrix"):
        plots.deg_heatmap(vst, ["ENSG_NOPE"], samples, annotate_by=["dex"])


def test_deg_heatmap_of_a_contrast_without_degs_says_so(airway, vst, res):
    # the bundled salmon example has a contrast with no DEG: the rule must draw, not fail
    _, samples, _ = airway
    none = degs.top_genes(res.assign(padj=1.0), 50).index
    assert len(none) == 0
    fig = plots.deg_heatmap(vst, none, samples, annotate_by=["dex"], title="empty")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("No gene passes the DEG thresholds" in t for t in texts)


def test_qc_bars_values(airway):
    counts, _, _ = airway
    q = qc.sample_qc(counts)
    fig = plots.qc_bars(q, highlight=["SRR1039513"])
    assert len(fig.axes) == 3  # pct_mito is NaN on airway symbols: no panel
    widths = [p.get_width() for p in fig.axes[0].patches if isinstance(p, Rectangle)]
    np.testing.assert_allclose(widths, q["library_size"].to_numpy() / 1e6)
    colors = [p.get_facecolor() for p in fig.axes[0].patches]
    assert sum(c != colors[0] for c in colors) == 1


# ---------------------------------------------------------------- DEG summaries
def test_deg_counts_bar(res):
    summary = degs.deg_counts({"trt_vs_untrt": res, "strict": res.assign(padj=res["padj"] * 100)})
    fig = pl_de.deg_counts_bar(summary)
    widths = sorted(p.get_width() for p in fig.axes[0].patches)
    expected = sorted([512, -472, *summary.loc["strict", ["up"]].tolist(), -summary.loc["strict", "down"]])
    np.testing.assert_allclose(widths, expected)


def test_accepts_workflow_table_layouts(res):
    """bulk.results_table: gene_id as a column, '' for missing names; summary.tsv: n_up/n_down."""
    table = res.assign(gene_name=res["gene_name"].fillna("")).reset_index()
    table.loc[table["gene_id"] == "ENSG00000165995", "gene_name"] = ""  # the 2nd gene, CACNB2, unnamed
    fig = pl_de.volcano(table, top_n=15)
    labels = [t.get_text() for t in _labels(fig)]
    assert labels[:2] == ["SPARCL1", "ENSG00000165995"]  # an unnamed gene keeps its id, not the row number
    summary = pd.DataFrame({"contrast": ["dex"], "n_up": [512], "n_down": [472]})
    widths = sorted(p.get_width() for p in pl_de.deg_counts_bar(summary).axes[0].patches)
    assert widths == [-472, 512]


def test_deg_overlap_venn_and_upset(res):
    reg = degs.classify(res)
    sets = {
        "up": set(res.index[reg == "up"]),
        "down": set(res.index[reg == "down"]),
        "padj<1e-10": set(res.index[res["padj"] < 1e-10]),
    }
    m = degs.deg_overlap(sets)
    fig = pl_de.deg_overlap(m)
    ax = fig.axes[0]
    assert sum(isinstance(p, Circle) for p in ax.patches) == 3
    texts = [t.get_text() for t in ax.texts]
    n_up_only = len(sets["up"] - sets["padj<1e-10"])
    assert f"{n_up_only:,}" in texts and "up\n(512)" in texts
    sets["big"] = set(res.index[res["baseMean"] > 1000])
    up = pl_de.deg_overlap(degs.deg_overlap(sets))
    assert len(up.axes) == 3
    bars = [p.get_height() for p in up.axes[0].patches]
    assert bars == sorted(bars, reverse=True) and bars[0] == degs.overlap_counts(degs.deg_overlap(sets))["n_genes"].iloc[0]
    with pytest.raises(DegflowInputError, match="2 or 3 sets"):
        pl_de.deg_overlap(degs.deg_overlap(sets), kind="venn")


# ---------------------------------------------------------------- files
def test_saved_files_are_byte_identical(res, airway, vst, tmp_path):
    _, samples, _ = airway
    coords, ratio = qc.pca(vst)
    makers = {
        "volcano": lambda: pl_de.volcano(res, max_points=5_000),
        "pca": lambda: plots.pca(coords, ratio, samples, color_by=["dex"]),
        "heat": lambda: plots.deg_heatmap(vst, degs.top_genes(res, 20).index, samples, annotate_by=["dex", "cell"]),
    }
    for name, make in makers.items():
        for k in (1, 2):
            pl_base.save(make(), tmp_path / f"{name}{k}.png", tmp_path / f"{name}{k}.pdf")
        for ext in ("png", "pdf"):
            a = (tmp_path / f"{name}1.{ext}").read_bytes()
            b = (tmp_path / f"{name}2.{ext}").read_bytes()
            assert a == b, f"{name}.{ext} differs between two saves"
        assert b"Matplotlib" not in (tmp_path / f"{name}1.pdf").read_bytes()
        assert b"Software" not in (tmp_path / f"{name}1.png").read_bytes()


# ---------------------------------------------------------------- captions
@pytest.mark.parametrize("name", CAPTIONS)
def test_caption_renders_like_snakemake_report(name):
    """Render as snakemake 9's report does (jinja2, then docutils), erroring on any RST warning."""
    from docutils.core import publish_parts
    from jinja2 import Environment
    from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, ResourceList, Snakemake, Wildcards

    text = (REPORT / name).read_text()
    env = Environment(trim_blocks=True, lstrip_blocks=True)  # snakemake/report/__init__.py
    cases = [
        ({"lfc": 1.5, "padj": 0.01}, {"contrast": "trt_vs_untrt"}, {}, ("1.5", "0.01")),
        ({}, {}, {"bulk": {"thresholds": {"lfc": 2, "padj": 0.1}}}, ("2", "0.1")),
        ({}, {}, {}, ("1", "0.05")),
    ]
    for params, wildcards, config, (lfc, padj) in cases:
        sm = Snakemake(InputFiles(), OutputFiles(), Params(fromdict=params), Wildcards(fromdict=wildcards),
                       1, ResourceList(), Log(), config, "rule", None)
        rst = env.from_string(text).render(snakemake=sm, categories=[], files=[])
        html = publish_parts(rst, writer="html", settings_overrides={"halt_level": 2, "report_level": 2})["body"]
        assert len(html) > 300
        if "padj" in text:
            assert f"<strong>{padj}</strong>" in html and f"<strong>{lfc}</strong>" in html
        if wildcards and "{{ contrast }}" in text:
            assert "trt_vs_untrt" in html
