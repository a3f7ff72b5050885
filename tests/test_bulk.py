"""degflow.bulk.dataset and the kernel wiring of the bulk fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from degflow.de.fit import fit_deseq
from degflow.de.results import contrast_results
from degflow.kernels.sizefactors import size_factors_ratio


@pytest.fixture(scope="module")
def airway_subset(repo):
    counts = pd.read_csv(repo / "resources" / "airway" / "counts.tsv", sep="\t", index_col=0)
    counts = counts.loc[counts.sum(axis=1) > 0].iloc[::4]  # 8,368 expressed genes, every 4th
    sheet = pd.read_csv(repo / "resources" / "airway" / "samples.tsv", sep="\t", index_col=0)[["cell", "dex"]]
    return counts, sheet


def test_kernel_size_factors_give_the_same_de_results(airway_subset):
    """The workflow feeds the numba size factors into the fit: results equal letting the fit compute them."""
    counts, sheet = airway_subset
    sf = size_factors_ratio(counts.T.to_numpy())
    own = fit_deseq(counts, sheet, "~ cell + dex", {"dex": "untrt"})
    fed = fit_deseq(counts, sheet, "~ cell + dex", {"dex": "untrt"}, size_factors=sf)
    np.testing.assert_allclose(fed.obs["size_factors"], own.obs["size_factors"], rtol=1e-12)
    a = contrast_results(own, ["dex", "trt", "untrt"], alpha=0.05)
    b = contrast_results(fed, ["dex", "trt", "untrt"], alpha=0.05)
    # Size factors agree to ~1e-13. Genes whose iterative fits stop near a convergence threshold amplify
    # that (measured: up to 2.4e-6 relative on one gene's statistics), so the check uses the tolerances of
    # the R-parity tests: log2FC 1e-6 absolute where baseMean > 1, other columns 1e-4 relative, same NaNs.
    assert a.index.equals(b.index)
    for col in a.columns:
        assert (a[col].isna() == b[col].isna()).all(), col
    expressed = a.baseMean > 1
    np.testing.assert_allclose(b.log2FoldChange[expressed], a.log2FoldChange[expressed], rtol=0, atol=1e-6)
    for col in ["baseMean", "lfcSE", "stat", "pvalue", "padj"]:
        np.testing.assert_allclose(b[col], a[col], rtol=1e-4, err_msg=col)
    sig = lambda r: set(r.index[(r.padj < 0.05) & (r.log2FoldChange.abs() > 1)])  # noqa: E731
    assert sig(a) == sig(b) and len(sig(a)) > 100
