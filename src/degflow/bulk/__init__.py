"""Bulk RNA-seq: count datasets, sample QC, batch correction, genes of interest, LRT patterns.

de: the workflow's bulk DE steps (fit the design once, a contrast's and an LRT's tables, the summary, workbook).
figures: the workflow's bulk figure steps (sample QC, PCA, distances, batch removed, volcano/MA, DEG and
    genes-of-interest heatmaps, overview).
"""
