"""Figures (drawing only): bulk, compound, single-cell and pseudobulk plots share one style."""
