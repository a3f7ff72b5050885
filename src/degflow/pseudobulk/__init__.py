"""Pseudobulk: per-cell-type sums of counts and their design.

de: the workflow's pseudobulk DE steps (one cell type's fit and contrasts, the summary over cell types).
"""
