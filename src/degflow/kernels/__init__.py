"""All numba code of degflow, compiled by one decorator (:func:`degflow.kernels.jit.jit`).

jit          the one decorator: njit(parallel, nogil, cache=True), numpy error model, no fastmath
math         scalar math inlined into the kernels: lgamma/digamma/betaln, pairwise sum, LU/Cholesky, fast logs
sparse       normalize_log1p and mean_var on sparse matrices (single cell)
sizefactors  DESeq2 median-of-ratios / poscounts size factors
deseq        the R-faithful DESeq2 port's C++ loops (fitDisp, fitDispGrid, fitBeta, optim objective)
inference    the per-gene kernels of degflow.de.inference.NumbaInference (means, IRLS, Wald, apeGLM shrinkage)
lbfgsb       its alpha MLE: scipy's L-BFGS-B ported for one variable, then pydeseq2's grid
rsim         R's RNG (set.seed, rnorm, rgamma) for DESeq2's dispersion prior-variance simulation
"""
