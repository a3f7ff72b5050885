"""Pseudobulk: per-cell-type sums of counts and their design.

steps: the workflow's pseudobulk steps (aggregation, one cell type's fit, contrasts and figures, the summaries).
"""
