"""Sample QC and figure inputs (degflow.bulk.qc, degflow.bulk.vst, degflow.bulk.degs) on the real airway data."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from degflow import DegflowInputError

# airway/SOURCE.md: column sums of counts.tsv, in sample order
from degflow.bulk import qc
from degflow.bulk.degs import classify, deg_counts, deg_overlap, overlap_counts, top_genes, zscore_rows
from degflow.bulk.vst import _dispersion_mle, _nb_cr_loss, _trend_fit, median_of_ratios, variance_stabilised

AIRWAY_LIBRARY_SIZES = [20637971, 18809481, 25348649, 15163415, 24448408, 30818215, 19126151, 21164133]
# the 13 mitochondrially encoded protein-coding genes (Ensembl 75 ids; org.Hs.eg.db calls them COX1, ND1, ...)
MT_GENES = [
    "ENSG00000198695", "ENSG00000198712", "ENSG00000198727", "ENSG00000198763", "ENSG00000198786",
    "ENSG00000198804", "ENSG00000198840", "ENSG00000198886", "ENSG00000198888", "ENSG00000198899",
    "ENSG00000198938", "ENSG00000212907", "ENSG00000228253",
]
# airway/deseq2_r/airway.summary.txt: top 10 genes by p-value (all have |log2FC| > 1.9)
R_TOP10 = [
    "ENSG00000152583", "ENSG00000165995", "ENSG00000120129", "ENSG00000101347", "ENSG00000189221",
    "ENSG00000211445", "ENSG00000157214", "ENSG00000162614", "ENSG00000125148", "ENSG00000154734",
]


@pytest.fixture(scope="module")
def r_results(core_data):
    return pd.read_csv(core_data / "airway" / "deseq2_r" / "airway.results_alpha0.05.tsv.gz", sep="\t", index_col=0)


@pytest.fixture(scope="module")
def vst(airway):
    return variance_stabilised(airway[0])


# ---------------------------------------------------------------- sample_qc
def test_sample_qc_library_sizes_match_source(airway):
    counts, _, _ = airway
    q = qc.sample_qc(counts)
    assert list(q.index) == list(counts.columns)
    assert q["library_size"].astype(np.int64).tolist() == AIRWAY_LIBRARY_SIZES


def test_sample_qc_detected_and_top_share(airway):
    counts, _, _ = airway
    q = qc.sample_qc(counts, top_n=100)
    s = counts["SRR1039513"]
    assert q.loc["SRR1039513", "detected_genes"] == int((s > 0).sum())
    expected = 100 * s.sort_values(ascending=False).iloc[:100].sum() / s.sum()
    assert q.loc["SRR1039513", "pct_top100"] == pytest.approx(expected, rel=1e-12)
    assert ((q["pct_top100"] > 20) & (q["pct_top100"] < 40)).all()  # airway: 28-32 %


def test_sample_qc_mito_nan_with_ncbi_symbols_and_explained(airway):
    counts, _, genes = airway
    q = qc.sample_qc(counts, gene_names=genes["symbol"])
    # org.Hs.eg.db symbols have no MT- prefix: nothing matches, and the table says so
    assert q["pct_mito"].isna().all()
    assert (q["n_mito_genes"] == 0).all()
    assert "not computed" in q.attrs["pct_mito"]


def test_sample_qc_mito_from_ids_and_from_prefixed_names(airway):
    counts, _, genes = airway
    q = qc.sample_qc(counts, mito_genes=MT_GENES)
    assert (q["n_mito_genes"] == 13).all()
    expected = 100 * counts.loc[MT_GENES].sum() / counts.sum()
    np.testing.assert_allclose(q["pct_mito"], expected, rtol=1e-12)
    assert ((q["pct_mito"] > 1) & (q["pct_mito"] < 10)).all()
    # Ensembl-style names: the same genes found by prefix
    names = genes["symbol"].copy()
    names.loc[MT_GENES] = "MT-" + names.loc[MT_GENES]
    q2 = qc.sample_qc(counts, gene_names=names)
    np.testing.assert_allclose(q2["pct_mito"], q["pct_mito"], rtol=1e-12)


def test_sample_qc_merges_quantifier_table(airway):
    counts, _, _ = airway
    rates = pd.DataFrame({"assigned_pct": np.linspace(70, 90, 8)}, index=counts.columns[::-1])
    q = qc.sample_qc(counts, quantifier_qc=rates)
    assert q.loc["SRR1039508", "assigned_pct"] == rates.loc["SRR1039508", "assigned_pct"]
    with pytest.raises(DegflowInputError, match="no row for sample"):
        qc.sample_qc(counts, quantifier_qc=rates.iloc[1:])
    with pytest.raises(DegflowInputError, match="clash"):
        qc.sample_qc(counts, quantifier_qc=rates.rename(columns={"assigned_pct": "library_size"}))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (pd.DataFrame({"a": [1.0, np.nan]}), "missing values"),
        (pd.DataFrame({"a": [1, -1]}), "negative"),
        (pd.DataFrame({"a": ["x", "y"]}), "non-numeric"),
        (np.ones((3, 2)), "pandas DataFrame"),
        (pd.DataFrame(), "empty"),
    ],
    ids=["nan", "negative", "text", "ndarray", "empty"],
)
def test_sample_qc_rejects_bad_counts(bad, match):
    with pytest.raises(DegflowInputError, match=match):
        qc.sample_qc(bad)


# ---------------------------------------------------------------- normalisation / VST
def test_size_factors_match_deseq2_r(airway, core_data):
    r = pd.read_csv(core_data / "airway" / "deseq2_r" / "airway.size_factors.tsv.gz", sep="\t", index_col=0)
    sf = median_of_ratios(airway[0])
    np.testing.assert_allclose(sf.to_numpy(), r.loc[sf.index, "size_factor"].to_numpy(), rtol=1e-9)


def test_vst_is_log2_scale_for_high_counts_and_monotone(airway, vst):
    counts = airway[0]
    p = vst.attrs["degflow"]
    assert p["method"] == "vst" and p["n_genes_trend"] == 1000
    assert 0 < p["a0"] < 1 and 0 < p["a1"] < 20
    sf = median_of_ratios(counts)
    normed = counts / sf
    high = normed.to_numpy() > 1e4
    # VST(q) -> log2(q) for large q
    assert np.abs(vst.to_numpy()[high] - np.log2(normed.to_numpy()[high])).max() < 0.01
    # a monotone transform of normalised counts: same per-sample ranks
    a = normed["SRR1039508"].to_numpy()
    b = vst["SRR1039508"].to_numpy()
    o = np.argsort(a, kind="stable")
    assert (np.diff(b[o]) >= -1e-12).all()
    # variance is stabilised: sd over samples of mid-expressed genes is much lower than log2(q + 1)'s at low counts
    low = (normed.mean(axis=1) > 1) & (normed.mean(axis=1) < 5)
    lg = np.log2(normed + 1)
    assert vst[low].std(axis=1).median() < 0.6 * lg[low].std(axis=1).median()


def test_trend_fit_reproduces_deseq2_r(core_data):
    d = pd.read_csv(core_data / "airway" / "deseq2_r" / "airway.dispersions.tsv.gz", sep="\t", index_col=0)
    d = d[d["dispGeneEst"] > 1e-6]  # R: useForFit <- dispGeneEst > 100 * minDisp
    a0, a1 = _trend_fit(d["baseMean"].to_numpy(), d["dispGeneEst"].to_numpy())
    # airway.summary.txt: dispersion trend coefficients (asymptDisp, extraPois): 0.00952224034 3.60010273359
    assert a0 == pytest.approx(0.00952224034, rel=1e-6)
    assert a1 == pytest.approx(3.60010273359, rel=1e-6)


def test_dispersion_mle_matches_pydeseq2(airway):
    from pydeseq2.default_inference import DefaultInference

    counts = airway[0].to_numpy(dtype=float)
    sf = median_of_ratios(airway[0]).to_numpy()
    normed = counts / sf
    mean = normed.mean(axis=1)
    cand = np.flatnonzero(mean > 5)
    cand = cand[np.argsort(mean[cand], kind="stable")]
    sel = cand[np.linspace(0, cand.size - 1, 80).round().astype(int)]
    y, ny = counts[sel].T, normed[sel].T
    mu = np.maximum(sf[:, None] * ny.mean(axis=0)[None, :], 0.5)
    ours = _dispersion_mle(y, mu, min_disp=1e-8, max_disp=10.0)
    inf = DefaultInference(n_cpus=1)
    start = np.clip(np.minimum(inf.fit_rough_dispersions(ny, pd.DataFrame(np.ones((8, 1)))),
                               inf.fit_moments_dispersions(ny, sf)), 1e-8, 10)
    theirs, _ = inf.alpha_mle(counts=y, design_matrix=np.ones((8, 1)), mu=mu, alpha_hat=start,
                              min_disp=1e-8, max_disp=10.0)
    # never a worse optimum of the same objective, and the same estimate where pydeseq2 converges inside
    assert (_nb_cr_loss(y, mu, np.log(ours)) <= _nb_cr_loss(y, mu, np.log(theirs)) + 1e-8).all()
    inside = theirs > 1e-6
    assert inside.sum() > 60
    np.testing.assert_allclose(ours[inside], theirs[inside], rtol=1e-3)


def test_vst_uses_given_size_factors_and_log2_option(airway):
    counts = airway[0].iloc[:2000]
    sf = pd.Series(2.0, index=counts.columns)
    lg = variance_stabilised(counts, sf, method="log2")
    np.testing.assert_allclose(lg.to_numpy(), np.log2(counts.to_numpy() / 2.0 + 1))
    with pytest.raises(DegflowInputError, match="no value for sample"):
        variance_stabilised(counts, sf.iloc[1:], method="log2")
    with pytest.raises(DegflowInputError, match="method"):
        variance_stabilised(counts, method="rlog")


# ---------------------------------------------------------------- PCA, distances, outliers
def test_pca_vst_top500_separates_dex(airway, vst):
    _, samples, _ = airway
    coords, ratio = qc.pca(vst, n_top=500)
    assert coords.attrs["degflow"]["n_genes_used"] == 500
    assert list(coords.columns) == [f"PC{i}" for i in range(1, 8)]
    assert (np.diff(ratio.to_numpy()) <= 1e-12).all() and ratio.sum() <= 1 + 1e-12
    trt = samples.loc[coords.index, "dex"].eq("trt").to_numpy()
    separated = []
    for pc in ("PC1", "PC2"):
        x = coords[pc].to_numpy()
        separated.append(x[trt].min() > x[~trt].max() or x[trt].max() < x[~trt].min())
    assert any(separated)
    assert separated[0]  # on airway the treatment is the main axis of variation (PC1)


def test_pca_is_deterministic_and_matches_sklearn(vst):
    from sklearn.decomposition import PCA

    c1, r1 = qc.pca(vst)
    c2, _ = qc.pca(vst)
    pd.testing.assert_frame_equal(c1, c2)
    top = vst.loc[vst.var(axis=1).sort_values(ascending=False, kind="stable").index[:500]]
    sk = PCA(n_components=7).fit(top.T.to_numpy())
    # same explained variance, same coordinates up to sign
    np.testing.assert_allclose(r1.to_numpy(), sk.explained_variance_ratio_, rtol=1e-6)
    skc = sk.transform(top.T.to_numpy())
    np.testing.assert_allclose(np.abs(c1.to_numpy()), np.abs(skc), rtol=1e-6, atol=1e-8)


def test_nearest_neighbour_shares_cell_line_or_treatment(airway, vst):
    _, samples, _ = airway
    sd = qc.sample_distances(vst)
    d = sd.distances
    assert np.allclose(d.to_numpy(), d.to_numpy().T) and np.allclose(np.diag(d.to_numpy()), 0)
    assert sorted(sd.order) == sorted(d.index)
    for s in d.index:
        nn = d.loc[s].drop(s).idxmin()
        shares = samples.loc[s, "cell"] == samples.loc[nn, "cell"] or samples.loc[s, "dex"] == samples.loc[nn, "dex"]
        assert shares, (s, nn)


def test_outliers_none_in_airway_but_corrupted_sample_flagged(airway, vst):
    counts, _, _ = airway
    flags = qc.outlier_flags(qc.pca(vst)[0])
    assert not flags["outlier"].any()
    assert flags["z"].max() < 2.5
    assert flags["threshold"].iloc[0] == pytest.approx(5.09, abs=0.01)  # sqrt(2 * F(2, 12) 0.999 quantile)
    assert "leave-one-out" in flags.attrs["rule"]
    # shuffle one sample's counts across genes: its profile is destroyed, its library size kept.
    # (log2 instead of a second VST fit, to keep the test fast; the rule only sees PCA coordinates)
    bad = counts.copy()
    rng = np.random.default_rng(0)
    bad["SRR1039520"] = rng.permutation(bad["SRR1039520"].to_numpy())
    f2 = qc.outlier_flags(qc.pca(variance_stabilised(bad, method="log2"))[0])
    # only the corrupted sample: not its donor partner SRR1039521, which then stands apart on PC2
    # (a per-PC median/MAD rule flags that pair too)
    assert f2.index[f2["outlier"]].tolist() == ["SRR1039520"]
    assert f2.loc["SRR1039520", "z"] > 10 * f2.loc["SRR1039520", "threshold"]
    assert len(f2) == len(bad.columns)  # flags, never drops


def test_outliers_sequential_deletion_unmasks_second_outlier():
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(10, 2))
    pts[0] = [40.0, 0.0]  # gross outlier: dominates the spread of the others
    pts[1] = [0.0, 9.0]   # moderate outlier, hidden while pts[0] is in the reference set
    coords = pd.DataFrame(pts, columns=["PC1", "PC2"], index=[f"s{i}" for i in range(10)])
    f = qc.outlier_flags(coords)
    assert f.index[f["outlier"]].tolist() == ["s0", "s1"]


def test_outliers_few_samples(caplog):
    coords = pd.DataFrame({"PC1": [1.0, 2.0, 30.0], "PC2": [0.0, 1.0, 0.0]}, index=list("abc"))
    with caplog.at_level(logging.WARNING, logger="degflow.bulk.qc"):
        f = qc.outlier_flags(coords)
    assert not f["outlier"].any() and f["z"].isna().all()
    assert "only 3 samples" in f.attrs["note"] and "only 3 samples" in caplog.text
    with pytest.raises(DegflowInputError, match="n_pcs"):
        qc.outlier_flags(coords, n_pcs=3)


# ---------------------------------------------------------------- DE summaries
def test_classify_matches_r_summary(r_results):
    reg = classify(r_results, lfc=1, padj=0.05)
    # airway.summary.txt: "DEG rule padj < 0.05 & |log2FC| > 1 on this table: up 512 down 472"
    assert (reg == "up").sum() == 512 and (reg == "down").sum() == 472
    counts = deg_counts({"trt_vs_untrt": r_results})
    assert counts.loc["trt_vs_untrt"].tolist() == [512, 472, int(r_results["padj"].notna().sum())]


def test_top_genes_match_r_ranking(r_results):
    top = top_genes(r_results, 10)
    assert top.index.tolist() == R_TOP10
    assert set(top["regulation"]) == {"up"}
    down = top_genes(r_results, 5, direction="down")
    assert (down["log2FoldChange"] < -1).all() and down["padj"].is_monotonic_increasing


def test_regulation_column_is_used_and_checked(r_results):
    res = r_results.assign(regulation="ns")
    assert deg_counts({"x": res}).loc["x", "up"] == 0
    with pytest.raises(DegflowInputError, match="up/down/ns"):
        deg_counts({"x": r_results.assign(regulation="UP")})


def test_deg_overlap_membership_and_counts():
    m = deg_overlap({"A": {"g1", "g2", "g3"}, "B": {"g2", "g3", "g4"}, "C": set()})
    assert m.index.tolist() == ["g1", "g2", "g3", "g4"] and m.columns.tolist() == ["A", "B", "C"]
    assert m.loc["g2"].tolist() == [True, True, False] and not m["C"].any()
    c = overlap_counts(m)
    got = {tuple(r[["A", "B", "C"]]): r["n_genes"] for _, r in c.iterrows()}
    assert got == {(True, True, False): 2, (True, False, False): 1, (False, True, False): 1}
    assert c["n_genes"].iloc[0] == 2
    with pytest.raises(DegflowInputError):
        deg_overlap({})


def test_zscore_rows_constant_gene_is_zero():
    z = zscore_rows(pd.DataFrame({"a": [1.0, 5.0], "b": [3.0, 5.0], "c": [5.0, 5.0]}, index=["g", "flat"]))
    np.testing.assert_allclose(z.loc["g"], [-1, 0, 1])
    assert (z.loc["flat"] == 0).all()
