"""degflow.de.inference.NumbaInference against pydeseq2's DefaultInference.

Two kinds of checks:

* **Same inputs, each routine** (``lin_reg_mu``, ``irls``, ``alpha_mle``, ``wald_test``, rough and
  moments dispersions, apeGLM shrinkage): stock pydeseq2 is fitted once per data set and every
  NumbaInference routine is given exactly the inputs DefaultInference got at that step. The
  tolerances are the issue's: dispersions 1e-4 relative, log fold changes 1e-6 absolute (genes with
  baseMean > 1), and the same p-values to 1e-6 relative. Dispersions below 1e-5 (1000 x
  ``min_disp``; pydeseq2 leaves those below 1e-6 out of its prior) sit on a likelihood flat to
  ~1e-10, where L-BFGS-B's stopping point moves with the last bits of the gradient (LAPACK vs our
  p x p algebra); they are compared with ``atol = 1e-8`` (measured: at most 4e-10 apart).
* **End to end**: ``DeseqDataSet(..., inference=NumbaInference())`` + ``DeseqStats`` vs the same
  with ``DefaultInference`` on PyDESeq2's synthetic data (single and multi factor), asserting the
  same tolerances and identical DEG calls.

Plus each kernel on edge cases (an all-zero gene, a group with one sample) against pydeseq2's per-gene
functions, and bit-identical results on 1 and 2 threads. Airway is subsampled (300 genes) because
stock pydeseq2 needs minutes for all of it on a shared 2-core machine.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydeseq2 import utils
from pydeseq2.dds import DeseqDataSet
from pydeseq2.default_inference import DefaultInference
from pydeseq2.ds import DeseqStats

from degflow.de.fit import fit_deseq
from degflow.de.inference import NumbaInference
from degflow.de.results import contrast_results
from degflow.errors import DegflowInputError

DISP_RTOL, DISP_ATOL = 1e-4, 1e-8
LFC_ATOL = 1e-6


def _stock(counts: pd.DataFrame, meta: pd.DataFrame, design: str, contrast: list[str], inference) -> tuple:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dds = DeseqDataSet(counts=counts, metadata=meta, design=design, inference=inference, quiet=True)
        dds.deseq2()
        ds = DeseqStats(dds, contrast=contrast, inference=inference, quiet=True)
        ds.summary()
    return dds, ds


@pytest.fixture(scope="module")
def synthetic(core_data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    base = core_data / "pydeseq2_synthetic" / "datasets" / "synthetic"
    counts = pd.read_csv(base / "test_counts.csv", index_col=0).T  # samples x genes
    meta = pd.read_csv(base / "test_metadata.csv", index_col=0)
    return counts, meta


@pytest.fixture(scope="module")
def airway_sub(airway) -> tuple[pd.DataFrame, pd.DataFrame]:
    counts, samples, _ = airway
    nz = counts.index[counts.sum(axis=1) > 0]
    rng = np.random.default_rng(0)
    genes = nz[np.sort(rng.choice(nz.size, 300, replace=False))]
    return counts.loc[genes].T, samples[["cell", "dex"]]


CASES = {
    "synthetic_single": ("synthetic", "~condition", ["condition", "B", "A"]),
    "synthetic_multi": ("synthetic", "~condition + group", ["condition", "B", "A"]),
    "airway_300": ("airway_sub", "~ cell + dex", ["dex", "trt", "untrt"]),
}


@pytest.fixture(scope="module", params=list(CASES))
def stock_fit(request):
    data, design, contrast = CASES[request.param]
    counts, meta = request.getfixturevalue(data)
    dds, ds = _stock(counts, meta, design, contrast, DefaultInference(n_cpus=1))
    return request.param, counts, meta, design, contrast, dds, ds


def assert_disp_close(ours: np.ndarray, theirs: np.ndarray) -> None:
    np.testing.assert_allclose(ours, theirs, rtol=DISP_RTOL, atol=DISP_ATOL)
    well = theirs >= 1e-5
    np.testing.assert_allclose(ours[well], theirs[well], rtol=DISP_RTOL)


# ---------------------------------------------------------------------------------------------
# Same inputs, each routine
# ---------------------------------------------------------------------------------------------


def test_each_routine_equals_default_inference(stock_fit):
    name, counts, meta, design, contrast, dds, ds = stock_fit
    ni = NumbaInference(n_cpus=2)
    X = dds.obsm["design_matrix"].to_numpy(dtype=float)
    Y = dds.X[:, dds.non_zero_idx]
    sf = dds.obs["size_factors"].to_numpy()
    v = dds.var[dds.var["non_zero"]]
    normed = dds.layers["normed_counts"][:, dds.non_zero_idx]

    # rough, moments and least-squares means
    np.testing.assert_allclose(ni.fit_rough_dispersions(normed, dds.obsm["design_matrix"]),
                               utils.fit_rough_dispersions(normed, dds.obsm["design_matrix"]), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ni.fit_moments_dispersions(normed, sf), utils.fit_moments_dispersions(normed, sf),
                               rtol=1e-9)
    di = DefaultInference(n_cpus=1)
    np.testing.assert_allclose(ni.lin_reg_mu(Y, sf, X, 0.5), di.lin_reg_mu(Y, sf, X, 0.5), rtol=1e-9)

    # IRLS with the final dispersions: coefficients, means, hat diagonals
    beta, mu, hat, conv = ni.irls(Y, sf, X, v["dispersions"].to_numpy(), 0.5, 1e-8)
    lfc = dds.varm["LFC"].to_numpy()[dds.non_zero_idx]
    np.testing.assert_allclose(beta, lfc, atol=LFC_ATOL, rtol=0)
    np.testing.assert_allclose(mu, dds.obsm["_mu_LFC"], rtol=1e-6)
    np.testing.assert_allclose(hat, dds.obsm["_hat_diagonals"], atol=1e-8)
    assert conv.all()

    # gene-wise dispersions from pydeseq2's own means and starts
    mu_hat = dds.layers["_mu_hat"][:, dds.non_zero_idx]
    gw, _ = ni.alpha_mle(Y, X, mu_hat, v["_MoM_dispersions"].to_numpy(), dds.min_disp, dds.max_disp)
    assert_disp_close(np.clip(gw, dds.min_disp, dds.max_disp), v["genewise_dispersions"].to_numpy())
    # MAP dispersions
    mp, _ = ni.alpha_mle(Y, X, mu_hat, v["fitted_dispersions"].to_numpy(), dds.min_disp, dds.max_disp,
                         prior_disp_var=float(dds.uns["prior_disp_var"]), cr_reg=True, prior_reg=True)
    assert_disp_close(np.clip(mp, dds.min_disp, dds.max_disp), v["MAP_dispersions"].to_numpy())

    # Wald tests, all alternative hypotheses
    mu_w = np.exp(ds.design_matrix.to_numpy() @ ds.LFC.to_numpy().T) * sf[:, None]
    ridge = np.diag(np.repeat(1e-6, X.shape[1]))
    for alt, null in [(None, 0.0), ("greaterAbs", 0.3), ("lessAbs", 0.3), ("greater", 0.3), ("less", 0.3)]:
        args = (X, dds.var["dispersions"].to_numpy(), ds.LFC.to_numpy(), mu_w, ridge, ds.contrast_vector, null, alt)
        ours = ni.wald_test(*args)
        theirs = di.wald_test(*args)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-300, err_msg=str(alt))


def test_shrinkage_equals_default_inference(synthetic):
    """apeGLM shrinkage on one data set (the synthetic single-factor one; scipy's reference is slow)."""
    data, design, contrast = CASES["synthetic_single"]
    assert data == "synthetic"
    counts, meta = synthetic
    dds, ds = _stock(counts, meta, design, contrast, DefaultInference(n_cpus=1))
    ni = NumbaInference(n_cpus=2)
    X = dds.obsm["design_matrix"].to_numpy(dtype=float)
    Y = dds.X[:, dds.non_zero_idx]
    size = 1.0 / dds.var["dispersions"].to_numpy()[dds.non_zero_idx]
    offset = np.log(dds.obs["size_factors"].to_numpy())
    ours = ni.lfc_shrink_nbinom_glm(X, Y, size, offset, 15.0, 0.5, "L-BFGS-B", 1)
    theirs = DefaultInference(n_cpus=1).lfc_shrink_nbinom_glm(X, Y, size, offset, 15.0, 0.5, "L-BFGS-B", 1)
    # scipy stops at ftol = gtol = 1e-8 of the scaled objective; ours runs Newton to the optimum
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-4)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-3, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["synthetic_single", "synthetic_multi"])
def test_end_to_end_equals_default_inference(case, request):
    data, design, contrast = CASES[case]
    counts, meta = request.getfixturevalue(data)
    d_dds, d_ds = _stock(counts, meta, design, contrast, DefaultInference(n_cpus=1))
    n_dds, n_ds = _stock(counts, meta, design, contrast, NumbaInference(n_cpus=2))
    for key in ("genewise_dispersions", "fitted_dispersions", "MAP_dispersions", "dispersions"):
        assert_disp_close(n_dds.var[key].to_numpy(), d_dds.var[key].to_numpy())
    a, b = n_ds.results_df, d_ds.results_df
    ok = (b["baseMean"] > 1).to_numpy()
    np.testing.assert_allclose(a["log2FoldChange"][ok], b["log2FoldChange"][ok], atol=LFC_ATOL, rtol=0)
    for col in ("lfcSE", "stat", "pvalue", "padj"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-5, err_msg=col)
    np.testing.assert_array_equal((a["padj"] < 0.05).to_numpy(), (b["padj"] < 0.05).to_numpy())


def test_fit_deseq_engines_agree(synthetic):
    counts, meta = synthetic
    out = {}
    for engine in ("numba", "pydeseq2"):
        dds = fit_deseq(counts.T, meta, "~ condition", {"condition": "A"}, flavor="pydeseq2", engine=engine,
                        n_cpus=2)
        assert dds.uns["degflow"]["engine"] == engine
        out[engine] = contrast_results(dds, ["condition", "B", "A"], alpha=0.05, n_cpus=2)
    a, b = out["numba"], out["pydeseq2"]
    np.testing.assert_allclose(a["log2FoldChange"], b["log2FoldChange"], atol=LFC_ATOL, rtol=0)
    np.testing.assert_allclose(a["pvalue"], b["pvalue"], rtol=1e-5)
    np.testing.assert_array_equal((a["padj"] < 0.05).to_numpy(), (b["padj"] < 0.05).to_numpy())
    with pytest.raises(DegflowInputError, match="engine"):
        fit_deseq(counts.T, meta, "~ condition", {"condition": "A"}, engine="cuda")


# ---------------------------------------------------------------------------------------------
# Edge cases and threads
# ---------------------------------------------------------------------------------------------


def _edge_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """6 samples; group C has a single sample. Genes: all zero, one count, typical, large, spiky."""
    X = np.array([[1, 0, 0], [1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 0], [1, 0, 1]], dtype=float)
    sf = np.array([0.8, 1.1, 1.0, 0.9, 1.25, 1.05])
    Y = np.array(
        [
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 1],
            [12, 9, 15, 30, 41, 7],
            [5000, 5400, 4800, 9000, 8800, 100],
            [0, 0, 250, 3, 1, 0],
        ],
        dtype=float,
    ).T  # samples x genes
    return X, sf, Y


@pytest.mark.parametrize("gene", [0, 1, 2, 3, 4], ids=["all_zero", "one_count", "typical", "large", "spiky"])
def test_kernels_on_edge_cases(gene):
    X, sf, Y = _edge_data()
    y = Y[:, [gene]]
    ni = NumbaInference(n_cpus=1)
    disp = np.array([0.1])
    beta, mu, hat, conv = ni.irls(y, sf, X, disp, 0.5, 1e-8)
    rb, rmu, rh, rc = utils.irls_solver(y[:, 0], sf, X, 0.1, 0.5, 1e-8)
    np.testing.assert_allclose(beta[0], rb, atol=1e-6)
    np.testing.assert_allclose(mu[:, 0], rmu, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(hat[:, 0], rh, atol=1e-8)
    assert conv[0] == rc
    mu_in = np.maximum(rmu, 0.5)[:, None]
    for start in (1e-8, 0.05, 2.0):
        ours, _ = ni.alpha_mle(y, X, mu_in, np.array([start]), 1e-8, 10.0)
        theirs, _ = utils.fit_alpha_mle(y[:, 0], X, mu_in[:, 0], start, 1e-8, 10.0)
        np.testing.assert_allclose(np.clip(ours[0], 1e-8, 10), np.clip(theirs, 1e-8, 10), rtol=DISP_RTOL,
                                   atol=DISP_ATOL)
    p, s, se = ni.wald_test(X, disp, beta, np.maximum(mu, 1e-300), np.diag([1e-6] * 3), np.array([0.0, 1.0, 0.0]),
                            0.0, None)
    rp, rs, rse = utils.wald_test(X, 0.1, beta[0], np.maximum(mu[:, 0], 1e-300), np.diag([1e-6] * 3),
                                  np.array([0.0, 1.0, 0.0]), 0.0, None)
    np.testing.assert_allclose([p[0], s[0], se[0]], [rp, rs, rse], rtol=1e-8)


def test_same_results_on_1_and_2_threads(airway_sub):
    counts, meta = airway_sub
    Y = counts.to_numpy()
    X = np.column_stack([np.ones(8), (meta["dex"] == "trt").to_numpy(float)])
    sf = Y.sum(axis=1) / Y.sum(axis=1).mean()
    disp = np.full(Y.shape[1], 0.05)
    r1 = NumbaInference(n_cpus=1).irls(Y, sf, X, disp, 0.5, 1e-8)
    r2 = NumbaInference(n_cpus=2).irls(Y, sf, X, disp, 0.5, 1e-8)
    for a, b in zip(r1, r2, strict=True):
        np.testing.assert_array_equal(a, b)
    mu = np.maximum(r1[1], 0.5)
    a1 = NumbaInference(n_cpus=1).alpha_mle(Y, X, mu, disp, 1e-8, 10.0)
    a2 = NumbaInference(n_cpus=2).alpha_mle(Y, X, mu, disp, 1e-8, 10.0)
    np.testing.assert_array_equal(a1[0], a2[0])
    np.testing.assert_array_equal(a1[1], a2[1])
