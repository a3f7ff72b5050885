"""Pseudobulk: per-cell-type sums of counts and their design (planning: :mod:`degflow.plan.pseudobulk`).

aggregate  raw counts summed per cell type and sample, testable cell types, design data, size factors, proportions
steps      the workflow's pseudobulk steps: aggregation, one cell type's fit, contrasts, figures, summaries
"""
