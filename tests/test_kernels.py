"""degflow.kernels.sparse and degflow.kernels.sizefactors against scanpy 1.11, pydeseq2 0.5.4, R DESeq2 and the plain-NumPy ``_ref_*`` twins.

Real data: pbmc3k (10x, 2,700 cells x 13,714 genes) and airway (8 samples x 64,102 genes, with
DESeq2 1.38.3 size factors), plus pydeseq2's synthetic set with DESeq2 1.34.0 size factors.
Tolerances: rtol 1e-6 in float64, 1e-5 in float32.
"""

from __future__ import annotations

import os
import warnings

import anndata as ad
import numba
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from numpy.testing import assert_allclose, assert_array_equal
from scanpy.preprocessing._utils import _get_mean_var
from scipy import sparse
from threadpoolctl import threadpool_info, threadpool_limits

from degflow.errors import DegflowInputError
from degflow.kernels import math as kmath
from degflow.kernels import sizefactors
from degflow.kernels import sparse as kernels
from degflow.runtime import configure_runtime, resolve_threads, set_threads, threads

RTOL = {np.float32: 1e-5, np.float64: 1e-6}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])


# ------------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pbmc(repo) -> sparse.csr_matrix:
    """pbmc3k raw counts, cells x genes, float32 CSR (as scanpy reads them)."""
    adata = sc.read_10x_mtx(repo / "resources" / "pbmc3k" / "filtered_min3cells_v3")
    x = sparse.csr_matrix(adata.X)
    assert x.shape == (2700, 13714) and x.nnz == 2_282_976
    return x


@pytest.fixture(scope="module")
def airway(repo) -> pd.DataFrame:
    """airway counts, samples x genes (the TSV is genes x samples)."""
    return pd.read_csv(repo / "resources" / "airway" / "counts.tsv", sep="\t", index_col=0).T


@pytest.fixture(scope="module")
def synthetic(core_data) -> pd.DataFrame:
    base = core_data / "pydeseq2_synthetic"
    return pd.read_csv(base / "datasets" / "synthetic" / "test_counts.csv", index_col=0).T


def scanpy_norm_log1p(x, **kw) -> sparse.csr_matrix:
    a = ad.AnnData(x.copy())
    sc.pp.normalize_total(a, **kw)
    sc.pp.log1p(a)
    return a.X


def small_counts(seed: int = 0, shape=(40, 30), density=0.3, dtype=np.float32) -> sparse.csr_matrix:
    rng = np.random.default_rng(seed)
    x = sparse.random(*shape, density=density, format="csr", random_state=rng, dtype=np.float64)
    x.data = np.ceil(x.data * 20)
    return x.astype(dtype)


def assert_csr_close(actual, desired, rtol) -> None:
    actual, desired = sparse.csr_matrix(actual), sparse.csr_matrix(desired)
    actual.sort_indices()
    desired.sort_indices()
    assert actual.shape == desired.shape
    assert_array_equal(actual.indptr, desired.indptr)
    assert_array_equal(actual.indices, desired.indices)
    assert_allclose(actual.data, desired.data, rtol=rtol, atol=0)


# ------------------------------------------------------------------------------------------------
# the vectorised log1p / log
# ------------------------------------------------------------------------------------------------

SPECIALS = np.array([0.0, -0.0, 5e-324, 1e-300, 1e-10, 0.4142, 0.4143, -0.2928, -0.293, -0.5, -0.9999, -1.0,
                     -2.0, 3.0, 2.0**53, 1e300, np.inf, -np.inf, np.nan])  # fmt: skip


def test_log1p_f64_within_one_ulp():
    rng = np.random.default_rng(0)
    x = np.concatenate([SPECIALS, np.logspace(-320, 308, 200_000), -np.logspace(-300, -1e-16, 50_000),
                        rng.uniform(0, 1e4, 200_000)])  # fmt: skip
    out = np.empty_like(x)
    kmath.log1p_array(x, out)
    with np.errstate(all="ignore"):
        ref = np.log1p(x)
    assert_array_equal(np.isnan(out), np.isnan(ref))
    finite = np.isfinite(ref)
    assert_array_equal(out[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)])
    assert np.max(np.abs(out[finite] - ref[finite]) / np.spacing(np.abs(ref[finite]))) <= 1.0
    assert np.signbit(out[1]) and out[0] == 0.0  # log1p(-0.0) == -0.0


def test_log1p_f32_within_one_ulp_of_exact():
    # 1M random positive float32 bit patterns plus (-1, 0); exhaustively (all 2**31) the error is < 0.84 ulp.
    rng = np.random.default_rng(1)
    bits = np.concatenate([rng.integers(0, 0x7F800000, 1_000_000), rng.integers(0x80000001, 0xBF800000, 200_000)])
    with np.errstate(over="ignore"):  # 1e300 -> inf
        specials = SPECIALS.astype(np.float32)
    x = np.concatenate([specials, bits.astype(np.uint32).view(np.float32)])
    out = np.empty_like(x)
    kmath.log1p_array(x, out)
    with np.errstate(all="ignore"):
        exact = np.log1p(x.astype(np.float64))
    assert out.dtype == np.float32
    assert_array_equal(np.isnan(out), np.isnan(exact))
    ok = np.isfinite(exact) & (exact != 0)
    ulp = np.spacing(np.abs(exact[ok]).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out[ok] - exact[ok]) / ulp) < 1.0


def test_log_within_one_ulp():
    x = np.concatenate([[0.0, 5e-324, 1e-310, 1.0, np.inf, -1.0, np.nan], np.logspace(-320, 308, 200_000)])
    out = np.empty_like(x)
    kmath.log_array(x, out)
    with np.errstate(all="ignore"):
        ref = np.log(x)
    assert_array_equal(np.isnan(out), np.isnan(ref))
    ok = np.isfinite(ref) & (ref != 0)
    assert np.max(np.abs(out[ok] - ref[ok]) / np.spacing(np.abs(ref[ok]))) <= 1.0
    assert out[0] == -np.inf and out[3] == 0.0 and out[4] == np.inf


# ------------------------------------------------------------------------------------------------
# normalize_log1p
# ------------------------------------------------------------------------------------------------


@DTYPES
@pytest.mark.parametrize("target_sum", [None, 1e4], ids=["median", "1e4"])
@pytest.mark.parametrize("exclude", [False, True], ids=["all-genes", "exclude-high"])
def test_normalize_matches_scanpy_pbmc3k(pbmc, dtype, target_sum, exclude):
    x = pbmc.astype(dtype)
    got = kernels.normalize_log1p(x, target_sum=target_sum, exclude_highly_expressed=exclude)
    want = scanpy_norm_log1p(x, target_sum=target_sum, exclude_highly_expressed=exclude)
    assert got.dtype == dtype and isinstance(got, sparse.csr_matrix)
    assert_csr_close(got, want, RTOL[dtype])
    ref = kernels._ref_normalize_log1p(x, target_sum=target_sum, exclude_highly_expressed=exclude)
    assert_csr_close(got, ref, RTOL[dtype])
    assert_array_equal(x.data, pbmc.data.astype(dtype))  # input untouched


@DTYPES
def test_normalize_inplace_and_totals(pbmc, dtype):
    x = pbmc.astype(dtype)
    want = kernels.normalize_log1p(x)
    y = x.copy()
    data_before = y.data
    out, totals = kernels.normalize_log1p(y, inplace=True, return_totals=True)
    assert out is y and y.data is data_before
    assert_array_equal(y.data, want.data)
    assert_allclose(totals, np.asarray(pbmc.sum(axis=1)).ravel(), rtol=1e-12)


def _empty_rows(dtype):
    x = small_counts(dtype=dtype).tolil()
    x[[0, 7, 39], :] = 0
    return x.tocsr()


def _zero_genes(dtype):
    x = small_counts(dtype=dtype).tolil()
    x[:, [0, 5, 29]] = 0
    return x.tocsr()


def _unsorted(dtype):
    x = small_counts(dtype=dtype)
    rng = np.random.default_rng(3)
    for i in range(x.shape[0]):
        a, b = x.indptr[i], x.indptr[i + 1]
        p = rng.permutation(b - a)
        x.indices[a:b], x.data[a:b] = x.indices[a:b][p], x.data[a:b][p]
    x.has_sorted_indices = False
    return x


def _duplicates(dtype):
    """The first entry of each of the first 10 non-empty rows stored twice (scipy keeps them apart)."""
    x = small_counts(dtype=dtype)
    indptr, indices, data = [0], [], []
    for i in range(x.shape[0]):
        a, b = x.indptr[i], x.indptr[i + 1]
        idx, val = list(x.indices[a:b]), list(x.data[a:b])
        if i < 10 and b > a:
            idx.append(idx[0])
            val.append(val[0])
        indices += idx
        data += val
        indptr.append(len(indices))
    return sparse.csr_matrix(
        (np.array(data, dtype), np.array(indices, np.int32), np.array(indptr, np.int32)), shape=x.shape
    )


def _int64_index(x):
    """Same matrix with int64 indptr/indices (scipy's choice beyond 2**31 non-zeros)."""
    y = x.copy()
    y.indices, y.indptr = x.indices.astype(np.int64), x.indptr.astype(np.int64)  # the constructor would downcast
    return y


EDGE_CASES = {
    "empty-rows": _empty_rows,
    "all-zero-genes": _zero_genes,
    "single-cell": lambda dt: small_counts(dtype=dt)[3],
    "unsorted-indices": _unsorted,
    "csc-input": lambda dt: small_counts(dtype=dt).tocsc(),
    "csr-array": lambda dt: sparse.csr_array(small_counts(dtype=dt)),
    "int64-counts": lambda dt: small_counts(dtype=dt).astype(np.int64),
    "int32-counts": lambda dt: small_counts(dtype=dt).astype(np.int32),
    "one-gene": lambda dt: small_counts(dtype=dt)[:, :1],
    "int64-index": lambda dt: _int64_index(small_counts(dtype=dt)),
}


@DTYPES
@pytest.mark.parametrize("case", EDGE_CASES.values(), ids=EDGE_CASES.keys())
@pytest.mark.parametrize("target_sum", [None, 1e4], ids=["median", "1e4"])
def test_normalize_edge_cases(case, dtype, target_sum):
    x = case(dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "[0-9]+ of [0-9]+ cells have zero counts", UserWarning)
        got = kernels.normalize_log1p(x, target_sum=target_sum)
        got_ex = kernels.normalize_log1p(x, target_sum=target_sum, exclude_highly_expressed=True, max_fraction=0.2)
    out_dtype = np.float32 if x.dtype.kind == "i" else dtype
    assert got.dtype == out_dtype
    assert isinstance(got, sparse.csr_array if isinstance(x, sparse.sparray) else sparse.csr_matrix)
    assert_csr_close(got, kernels._ref_normalize_log1p(x, target_sum=target_sum), RTOL[out_dtype])
    ref_ex = kernels._ref_normalize_log1p(x, target_sum=target_sum, exclude_highly_expressed=True, max_fraction=0.2)
    assert_csr_close(got_ex, ref_ex, RTOL[out_dtype])
    # scanpy on the dense matrix (its dense path takes the median over non-empty cells, as degflow does)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Some cells have zero counts", UserWarning)
        want = scanpy_norm_log1p(x.toarray().astype(out_dtype), target_sum=target_sum)
    assert_allclose(got.toarray(), want, rtol=RTOL[out_dtype], atol=0)


def test_normalize_duplicates_are_summed():
    x = _duplicates(np.float64)
    assert not x.has_canonical_format
    got = kernels.normalize_log1p(x, target_sum=1e4)
    assert got.has_canonical_format and got.nnz == x.copy().tocoo().tocsr().nnz
    assert_csr_close(got, kernels._ref_normalize_log1p(x, target_sum=1e4), 1e-12)


def test_normalize_zero_count_cells_warn_and_stay_zero():
    x = _empty_rows(np.float64)
    with pytest.warns(UserWarning, match="3 of 40 cells have zero counts"):
        got, totals = kernels.normalize_log1p(x, return_totals=True)
    assert got[[0, 7, 39]].nnz == 0 and np.all(totals[[0, 7, 39]] == 0)


def test_normalize_threads_give_identical_results(pbmc):
    one = kernels.normalize_log1p(pbmc, n_threads=1)
    assert_array_equal(one.data, kernels.normalize_log1p(pbmc, n_threads=2).data)


BAD_NORMALIZE = {
    "dense": (lambda: np.ones((3, 3), np.float32), {}, TypeError, "scipy.sparse CSR or CSC"),
    "coo": (lambda: sparse.coo_matrix(np.ones((3, 3))), {}, TypeError, "CSR or CSC, got COO"),
    "complex64": (lambda: sparse.csr_matrix(np.ones((3, 3), np.complex64)), {}, TypeError, "dtype complex64"),
    "bool": (lambda: sparse.csr_matrix(np.ones((3, 3), bool)), {}, TypeError, "dtype bool"),
    "inplace-csc": (lambda: small_counts().tocsc(), {"inplace": True}, ValueError, "inplace=True needs"),
    "inplace-int": (lambda: small_counts().astype(np.int64), {"inplace": True}, ValueError, "inplace=True needs"),
    "target-sum-0": (small_counts, {"target_sum": 0}, ValueError, "target_sum must be"),
    "max-fraction": (small_counts, {"max_fraction": 1.5}, ValueError, "max_fraction must be"),
    "threads-0": (small_counts, {"n_threads": 0}, ValueError, "n_threads must be >= 1"),
}


@pytest.mark.parametrize(("make", "kw", "exc", "match"), BAD_NORMALIZE.values(), ids=BAD_NORMALIZE.keys())
def test_normalize_rejects(make, kw, exc, match):
    with pytest.raises(exc, match=match):
        kernels.normalize_log1p(make(), **kw)


@pytest.mark.parametrize("flag", [False, True], ids=["checked", "stale-canonical-flag"])
@pytest.mark.parametrize(
    "call",
    [
        lambda x: kernels.normalize_log1p(x, exclude_highly_expressed=True),
        lambda x: kernels.mean_var(x, axis=0),
    ],
    ids=["normalize-exclude", "mean_var"],
)
def test_out_of_range_indices_raise(call, flag):
    # with scipy's cached "canonical" flag set, the structure check is skipped: the kernels'
    # own bound checks must still refuse to index outside the gene arrays
    x = small_counts()
    x.indices[x.indptr[1] - 1] = 30
    if flag:
        x.has_canonical_format = True
    with pytest.raises(ValueError, match=r"column indices outside \[0, 30\)"):
        call(x)


# ------------------------------------------------------------------------------------------------
# mean_var
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pbmc_log(pbmc) -> sparse.csr_matrix:
    return kernels._ref_normalize_log1p(pbmc.astype(np.float64), target_sum=1e4)


@DTYPES
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("axis", [0, 1], ids=["per-gene", "per-cell"])
@pytest.mark.parametrize("which", ["counts", "log-normalised"])
def test_mean_var_matches_scanpy_pbmc3k(pbmc, pbmc_log, dtype, fmt, axis, which):
    x = (pbmc if which == "counts" else pbmc_log).astype(dtype).asformat(fmt)
    mean, var = kernels.mean_var(x, axis=axis)
    s_mean, s_var = _get_mean_var(x, axis=axis)
    r_mean, r_var = kernels._ref_mean_var(x, axis=axis)
    assert mean.dtype == var.dtype == np.float64 and mean.shape == (x.shape[1 - axis],)
    # statistics are float64 even for float32 data: hold them to the float64 tolerance
    assert_allclose(mean, r_mean, rtol=1e-12, atol=0)
    assert_allclose(var, r_var, rtol=1e-10, atol=0)
    assert_allclose(mean, s_mean, rtol=1e-6, atol=0)
    assert_allclose(var, s_var, rtol=1e-6, atol=1e-12)


def test_mean_var_int_and_dense(pbmc):
    counts = pbmc.astype(np.int64)
    mean, var = kernels.mean_var(counts)
    r_mean, r_var = kernels._ref_mean_var(pbmc)
    assert_allclose(mean, r_mean, rtol=1e-12)
    assert_allclose(var, r_var, rtol=1e-10)
    dense = pbmc[:300].toarray()
    d_mean, d_var = kernels.mean_var(dense, axis=0)
    assert_allclose(d_mean, dense.mean(axis=0, dtype=np.float64), rtol=1e-12)
    assert_allclose(d_var, dense.var(axis=0, ddof=1, dtype=np.float64), rtol=1e-10)


def test_mean_var_exact_when_mean_dominates():
    # every value near 1e4: the one-pass formula loses ~8 digits; the refinement pass restores them
    rng = np.random.default_rng(5)
    dense = 1e4 + rng.normal(0, 1e-3, (500, 20))
    dense[:, 3] = 7.0  # a constant gene: variance exactly 0
    x = sparse.csr_matrix(dense)
    mean, var = kernels.mean_var(x)
    assert_allclose(var, dense.var(axis=0, ddof=1), rtol=1e-9)
    assert var[3] == 0.0
    _, s_var = _get_mean_var(x)
    keep = np.arange(20) != 3
    assert np.max(np.abs(s_var[keep] / dense.var(axis=0, ddof=1)[keep] - 1)) > 1e-6  # scanpy's one-pass error


MV_EDGES = {
    "empty-rows": _empty_rows,
    "all-zero-genes": _zero_genes,
    "unsorted-indices": _unsorted,
    "duplicates": _duplicates,
}


@DTYPES
@pytest.mark.parametrize("case", MV_EDGES.values(), ids=MV_EDGES.keys())
@pytest.mark.parametrize("axis", [0, 1], ids=["per-gene", "per-cell"])
def test_mean_var_edge_cases(case, dtype, axis):
    x = case(dtype)
    mean, var = kernels.mean_var(x, axis=axis)
    dense = x.toarray().astype(np.float64)
    assert_allclose(mean, dense.mean(axis=axis), rtol=1e-12, atol=0)
    assert_allclose(var, dense.var(axis=axis, ddof=1), rtol=1e-10, atol=1e-300)


def test_mean_var_single_cell_and_ddof():
    x = small_counts()[:1]
    mean, var = kernels.mean_var(x, axis=0)
    assert_allclose(mean, x.toarray()[0])
    assert np.all(np.isnan(var))  # n - ddof = 0: undefined (scanpy returns 0)
    _, var0 = kernels.mean_var(x, axis=0, ddof=0)
    assert np.all(var0 == 0)


@pytest.mark.parametrize(
    ("x", "kw", "exc", "match"),
    [
        (sparse.coo_matrix(np.ones((2, 2))), {}, TypeError, "CSR/CSC matrix or a 2-D ndarray"),
        (np.ones((2, 2), np.float16), {}, TypeError, "dtype float16"),
        (np.ones(3), {}, ValueError, "must be 2-D"),
        (np.ones((2, 2)), {"axis": 2}, ValueError, "axis must be 0 or 1"),
        (np.ones((2, 2)), {"ddof": -1}, ValueError, "ddof must be >= 0"),
    ],
    ids=["coo", "float16", "1-d", "axis-2", "ddof-negative"],
)
def test_mean_var_rejects(x, kw, exc, match):
    with pytest.raises(exc, match=match):
        kernels.mean_var(x, **kw)


# ------------------------------------------------------------------------------------------------
# size factors
# ------------------------------------------------------------------------------------------------


def read_r(path) -> np.ndarray:
    sep = "\t" if ".tsv" in path.name else ","
    return pd.read_csv(path, sep=sep, index_col=0).iloc[:, 0].to_numpy()


def test_size_factors_ratio_airway_vs_r_and_pydeseq2(airway, core_data):
    from pydeseq2.preprocessing import deseq2_norm

    r = pd.read_csv(core_data / "airway/deseq2_r/airway.size_factors.tsv.gz", sep="\t", index_col=0)
    sf = sizefactors.size_factors_ratio(airway)
    assert_allclose(sf, r.loc[airway.index, "size_factor"].to_numpy(), rtol=1e-10)
    assert_allclose(sf, deseq2_norm(airway.to_numpy())[1], rtol=1e-12)
    assert_allclose(sf, sizefactors._ref_size_factors_ratio(airway), rtol=1e-12)


def test_size_factors_synthetic_vs_r(synthetic, core_data):
    d = core_data / "pydeseq2_synthetic/tests/data/single_factor"
    assert_allclose(sizefactors.size_factors_ratio(synthetic), read_r(d / "r_test_size_factors.csv"), rtol=1e-10)
    pos = sizefactors.size_factors_poscounts(synthetic)
    assert_allclose(pos, read_r(d / "r_test_size_factors_poscount.csv"), rtol=1e-10)


def test_size_factors_poscounts_airway(airway):
    from pydeseq2.dds import DeseqDataSet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydeseq2's own construction warnings are not under test
        dds = DeseqDataSet(
            counts=airway, metadata=pd.DataFrame({"c": ["a", "b"] * 4}, index=airway.index), design="~c", quiet=True
        )
        dds.fit_size_factors(fit_type="poscounts")
    got = sizefactors.size_factors_poscounts(airway, flavor="pydeseq2")
    assert_allclose(got, dds.obs["size_factors"].to_numpy(), rtol=1e-12)
    deseq2 = sizefactors.size_factors_poscounts(airway)
    assert_allclose(deseq2, sizefactors._ref_size_factors_poscounts(airway), rtol=1e-12)
    assert np.exp(np.mean(np.log(deseq2))) == pytest.approx(1.0, rel=1e-14)
    # pydeseq2 also drops the genes whose positive counts are all 1: a real difference on airway
    assert np.max(np.abs(deseq2 / got - 1)) > 0.01


@pytest.mark.parametrize(
    "convert",
    [
        lambda c: c.to_numpy().astype(np.float32),
        lambda c: c.to_numpy().astype(np.float64),
        lambda c: c.to_numpy().astype(np.int32),
        lambda c: c.to_numpy().astype(np.uint16),
        lambda c: np.asfortranarray(c.to_numpy()),
    ],
    ids=["float32", "float64", "int32", "uint16", "fortran-order"],
)
def test_size_factors_input_types(synthetic, convert):
    counts = convert(synthetic)
    ref = sizefactors._ref_size_factors_ratio(synthetic)
    assert_allclose(sizefactors.size_factors_ratio(counts), ref, rtol=1e-12)
    pos = sizefactors._ref_size_factors_poscounts(synthetic)
    assert_allclose(sizefactors.size_factors_poscounts(counts), pos, rtol=1e-12)


def test_size_factors_threads_identical(airway):
    assert_array_equal(
        sizefactors.size_factors_ratio(airway, n_threads=1), sizefactors.size_factors_ratio(airway, n_threads=2)
    )


def test_size_factors_single_sample_and_gene():
    assert_allclose(sizefactors.size_factors_ratio(np.array([[3, 5, 8]])), [1.0])
    assert_allclose(sizefactors.size_factors_ratio(np.array([[3], [6]])), [np.sqrt(0.5), np.sqrt(2.0)])


BAD_COUNTS = {
    "every-gene-has-a-zero": (np.array([[0, 4], [3, 0]]), "ratio", DegflowInputError, "use the 'poscounts'"),
    "negative": (np.array([[1, -2], [3, 4]]), "ratio", DegflowInputError, "negative, NaN or infinite"),
    "nan": (np.array([[1.0, np.nan], [3, 4]]), "poscounts", DegflowInputError, r"sample row 0, gene column 1"),
    "inf": (np.array([[1.0, np.inf], [3, 4]]), "ratio", DegflowInputError, "negative, NaN or infinite"),
    "all-zero-sample": (np.array([[0, 0], [3, 4]]), "poscounts", DegflowInputError, "sample row 0 has no positive"),
    "all-zero": (np.zeros((2, 3)), "poscounts", DegflowInputError, "no gene has a positive count"),
    "empty": (np.zeros((0, 3)), "ratio", DegflowInputError, "is empty"),
    "1-d": (np.ones(3), "ratio", ValueError, "must be 2-D"),
    "bool": (np.ones((2, 2), bool), "ratio", TypeError, "dtype bool"),
    "sparse": (sparse.csr_matrix(np.ones((2, 2))), "ratio", TypeError, "toarray"),
}


@pytest.mark.parametrize(("counts", "method", "exc", "match"), BAD_COUNTS.values(), ids=BAD_COUNTS.keys())
def test_size_factors_reject(counts, method, exc, match):
    fn = sizefactors.size_factors_ratio if method == "ratio" else sizefactors.size_factors_poscounts
    with pytest.raises(exc, match=match):
        fn(counts)


def test_poscounts_rejects_unknown_flavor():
    with pytest.raises(ValueError, match="flavor must be"):
        sizefactors.size_factors_poscounts(np.ones((2, 2)), flavor="edgeR")


def nb_counts(n_samples: int = 12, n_genes: int = 24_000, seed: int = 0) -> np.ndarray:
    """NB counts (dispersion 0.2), samples x genes, with zeros, counts > 2**16 and depth differences.

    Wide enough (>= 16,000 genes) for the sampled windows of the size-factor kernels.
    """
    rng = np.random.default_rng(seed)
    mu = rng.lognormal(3.0, 2.2, n_genes)[None, :] * rng.lognormal(0.0, 0.4, n_samples)[:, None]
    return rng.negative_binomial(5, 5 / (5 + mu))


SF_KERNELS = {  # (kernel, reference, keywords, mode of sizefactors._median_log_ratios)
    "ratio": (sizefactors.size_factors_ratio, sizefactors._ref_size_factors_ratio, {}, "ratio"),
    "poscounts": (sizefactors.size_factors_poscounts, sizefactors._ref_size_factors_poscounts, {}, "deseq2"),
    "poscounts-pydeseq2": (
        sizefactors.size_factors_poscounts,
        sizefactors._ref_size_factors_poscounts,
        {"flavor": "pydeseq2"},
        "pydeseq2",
    ),
}
SF_IDS = list(SF_KERNELS)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float32, np.float64], ids=["i32", "i64", "f32", "f64"])
@pytest.mark.parametrize("which", SF_KERNELS.values(), ids=SF_IDS)
def test_size_factors_layouts_and_dtypes_read_in_place(which, dtype, order):
    fn, ref, kw, _ = which
    base = nb_counts()
    assert (base == 0).any() and base.max() >= 2**16  # zeros and counts past the log table
    counts = np.array(base, dtype=dtype, order=order)
    assert np.shares_memory(sizefactors._as_count_array(counts), counts)  # no copy, no transpose
    expected = ref(base, **kw)
    assert_allclose(fn(counts, **kw), expected, rtol=1e-12)
    # every layout and dtype gives the same bits (the logs come from one table / np.log)
    assert_array_equal(fn(counts, **kw), fn(base, **kw))


def test_size_factors_ratio_matches_pydeseq2_on_wide_counts():
    from pydeseq2.preprocessing import deseq2_norm

    counts = nb_counts(seed=3)
    assert_allclose(sizefactors.size_factors_ratio(counts), deseq2_norm(counts)[1], rtol=1e-12)
    # genes x samples tables are usually passed transposed (F-ordered), as qc.py does
    assert_allclose(sizefactors.size_factors_ratio(counts.T.copy().T), deseq2_norm(counts)[1], rtol=1e-12)


@pytest.mark.parametrize("mode", ["ratio", "deseq2", "pydeseq2"])
def test_size_factors_windows_hold_the_median(mode):
    """On representative counts every sample's median is found inside its sampled window."""
    res = sizefactors._median_log_ratios(sizefactors._as_count_array(nb_counts(seed=1)), mode, 2)
    assert res["n_exact"] == 0
    assert np.all(res["n_used"] > 0)


def _windows_that_miss(real):
    def windows(hist, z, min_sampled):
        lo, hi, inside = real(hist, z, min_sampled)
        return lo + 20.0, hi + 20.0, inside  # above every ratio: "below" exceeds the middle rank

    return windows


def _windows_that_overflow(real):
    def windows(hist, z, min_sampled):
        lo, hi, inside = real(hist, z, min_sampled)
        return np.full_like(lo, -np.inf), np.full_like(hi, np.inf), np.zeros_like(inside)  # buffers of 64

    return windows


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("fault", [_windows_that_miss, _windows_that_overflow], ids=["miss", "overflow"])
@pytest.mark.parametrize("which", SF_KERNELS.values(), ids=SF_IDS)
def test_size_factors_fallback_is_exact(monkeypatch, which, fault, order):
    fn, ref, kw, mode = which
    counts = np.asarray(nb_counts(seed=2), order=order)
    expected = fn(counts, **kw)
    monkeypatch.setattr(sizefactors, "_sf_windows", fault(sizefactors._sf_windows))
    res = sizefactors._median_log_ratios(sizefactors._as_count_array(counts), mode, 2)
    assert res["n_exact"] == counts.shape[0]  # every sample redone over all its genes
    assert_array_equal(fn(counts, **kw), expected)
    assert_allclose(expected, ref(counts, **kw), rtol=1e-12)


def test_size_factors_sample_with_few_positive_counts():
    """A sample with too few sampled ratios for a window keeps all its ratios; the others use windows."""
    counts = nb_counts(seed=4)
    counts[0, 600:] = 0
    res = sizefactors._median_log_ratios(sizefactors._as_count_array(counts), "deseq2", 2)
    assert res["n_exact"] == 0
    assert_allclose(sizefactors.size_factors_poscounts(counts), sizefactors._ref_size_factors_poscounts(counts), rtol=1e-12)


def test_size_factors_fractional_and_huge_counts():
    """Non-integer and > 2**16 values are logged by np.log, not the table."""
    counts = nb_counts(seed=5).astype(np.float64) * 1000.25 + 0.5
    assert_allclose(sizefactors.size_factors_ratio(counts), sizefactors._ref_size_factors_ratio(counts), rtol=1e-12)
    pos = sizefactors.size_factors_poscounts(counts.astype(np.float32))
    assert_allclose(pos, sizefactors._ref_size_factors_poscounts(counts.astype(np.float32)), rtol=1e-12)


def test_size_factors_threads_identical_with_windows():
    counts = nb_counts(seed=6)
    for fn in (sizefactors.size_factors_ratio, sizefactors.size_factors_poscounts):
        assert_array_equal(fn(counts, n_threads=1), fn(counts, n_threads=2))


@pytest.mark.parametrize("order", ["C", "F"])
def test_size_factors_bad_count_in_wide_counts(order):
    counts = np.asarray(nb_counts(seed=7), order=order)
    counts[3, 20_001] = -1
    match = r"1 negative, NaN or infinite values \(first at sample row 3, gene column 20001"
    with pytest.raises(DegflowInputError, match=match):
        sizefactors.size_factors_ratio(counts)
    floats = counts.astype(np.float64)
    floats[3, 20_001] = np.nan
    with pytest.raises(DegflowInputError, match="sample row 3, gene column 20001"):
        sizefactors.size_factors_poscounts(floats)


@pytest.mark.parametrize("n", [1, 2, 3, 10, 64, 65, 1000, 10_001])
def test_select_pair_is_the_median(n):
    rng = np.random.default_rng(n)
    for values in (rng.normal(size=n), rng.integers(0, 5, n).astype(np.float64), np.full(n, 2.5)):
        got = sizefactors._select_pair(values.copy(), n, (n - 1) // 2, n // 2)
        assert got == np.median(values)
        k = n // 3
        assert sizefactors._select_pair(values, n, k, k) == np.sort(values)[k]


# ------------------------------------------------------------------------------------------------
# threads and runtime
# ------------------------------------------------------------------------------------------------


def test_threads_context_restores():
    before = numba.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info()]
    with threads(1) as n:
        assert n == 1 and numba.get_num_threads() == 1
        assert [p["num_threads"] for p in threadpool_info()] == blas_before  # BLAS untouched by default
    with threads(1, blas_threads=1):
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert numba.get_num_threads() == before
    assert [p["num_threads"] for p in threadpool_info()] == blas_before


def test_set_threads_caps_numba_and_blas():
    before = numba.get_num_threads()
    with threadpool_limits(limits=None):  # restores the BLAS pools on exit
        try:
            assert set_threads(1) == 1
            assert numba.get_num_threads() == 1
            assert all(p["num_threads"] == 1 for p in threadpool_info())  # BLAS capped at 1 by default
            assert set_threads(None, blas_threads=None) == numba.config.NUMBA_NUM_THREADS
        finally:
            numba.set_num_threads(before)


def test_resolve_threads():
    pool = numba.config.NUMBA_NUM_THREADS
    assert resolve_threads(None) == numba.get_num_threads()
    with pytest.warns(RuntimeWarning, match="more than numba's thread pool"):
        assert resolve_threads(pool + 1) == pool
    with pytest.raises(TypeError, match="positive int"):
        resolve_threads(1.5)
    with pytest.raises(TypeError, match="positive int"):
        resolve_threads(True)


def test_configure_runtime(tmp_path, monkeypatch):
    for var in ("NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(numba.config, "CACHE_DIR", numba.config.CACHE_DIR)
    before = numba.get_num_threads()
    with threadpool_limits(limits=None):
        try:
            # numba and degflow.kernels.jit are already imported here: the cache dir is still set, with a warning
            with pytest.warns(RuntimeWarning, match="after degflow.kernels.jit was imported"):
                configure_runtime(n_threads=1, cache_dir=tmp_path / "numba_cache")
            assert os.environ["NUMBA_CACHE_DIR"] == str((tmp_path / "numba_cache").resolve())
            assert (tmp_path / "numba_cache").is_dir()
            assert numba.config.CACHE_DIR == os.environ["NUMBA_CACHE_DIR"]
            assert os.environ["OPENBLAS_NUM_THREADS"] == "1" and numba.get_num_threads() == 1
            # numba's pool is running: the env var is left alone (changing it would break numba's next compile)
            assert "NUMBA_NUM_THREADS" not in os.environ
        finally:
            numba.set_num_threads(before)


def test_configure_runtime_before_numba_import(tmp_path):
    """In a fresh interpreter (as a workflow script): the settings reach numba and OpenBLAS."""
    import subprocess
    import sys

    code = (
        "import sys; from degflow.runtime import configure_runtime\n"
        "assert 'numba' not in sys.modules and 'numpy' not in sys.modules\n"
        f"configure_runtime(n_threads=1, cache_dir={str(tmp_path / 'cache')!r})\n"
        "import numba, threadpoolctl\n"
        "assert numba.config.NUMBA_NUM_THREADS == 1, numba.config.NUMBA_NUM_THREADS\n"
        f"assert numba.config.CACHE_DIR == {str((tmp_path / 'cache').resolve())!r}\n"
        "assert all(p['num_threads'] == 1 for p in threadpoolctl.threadpool_info())\n"
        "import os; assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE'\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "OMP_", "OPENBLAS_", "MKL_"))}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
