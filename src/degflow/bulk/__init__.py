"""Bulk RNA-seq, computing only (figures: :mod:`degflow.pl.bulk` and :mod:`degflow.pl.de`).

dataset            from a validated config to the count dataset, DEG tables and the summary
qc                 sample QC: library size, detected genes, % top genes, % mito; PCA; distances; outlier flags
vst                DESeq2's median-of-ratios size factors and variance-stabilising transformation
batch              batch effects removed from expression for figures (limma's removeBatchEffect)
degs               DE result summaries: up/down/ns classes, counts, overlaps, top genes, z-scores
genes_of_interest  genes of interest: the list, matched to the data, their results in one table
patterns           the LRT table, its significant genes and their expression patterns (degPatterns style)
de                 the workflow's bulk DE steps: fit the design once, a contrast's and an LRT's tables, summary, workbook
figures            the workflow's bulk figure steps: sample QC, PCA, distances, batch removed, volcano/MA, heatmaps
"""
