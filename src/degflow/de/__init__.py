"""The DESeq2 engine shared by bulk and pseudobulk: public API, NumPy reference port, compiled inference.

run: the fit and a contrast's tables with the options of the workflow's ``de`` block (bulk and pseudobulk).
results: the public results table of a contrast, its DEGs, a summary row.
"""
