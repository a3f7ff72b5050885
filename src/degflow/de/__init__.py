"""The DESeq2 engine shared by bulk and pseudobulk (numba kernels: :mod:`degflow.kernels`).

fit        fit_deseq: input checks, stock pydeseq2 or the R-faithful port (the engine's overview is here)
results    contrast_results, lrt_results, coefficient_names: DESeq2's results() tables
driver     the port's DESeq() steps in R's order (size factors ... Cook's refit), stored on the data set
reference  the NumPy port of DESeq2's C++ loops (fitDisp, fitDispGrid, fitBeta, optim) + engine dispatch
rcompat    R functions emulated bit for bit: lowess, loess, hist, quantile, p.adjust, mad, trimmed mean
inference  NumbaInference: pydeseq2's Inference on the kernels of degflow.kernels.inference
run        fit_from_config / contrast_tables: the fit and a contrast's tables with the workflow's de block
tables     the public results table of a contrast (annotated), its DEG table, a summary row
"""
