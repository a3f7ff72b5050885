"""Pseudobulk: per-cell-type sums of counts and their design."""
