"""Bulk RNA-seq: count datasets, sample QC, batch correction, genes of interest, LRT patterns."""
