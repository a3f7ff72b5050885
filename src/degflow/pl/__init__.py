"""Figures (drawing only): each function returns a Figure; :func:`degflow.pl.base.save` writes it.

base        the house style (colours, fonts), the Figure canvas, non-overlapping labels, save, message figures
de          DE results, bulk and pseudobulk: volcano, MA, DEG counts per contrast, DEG-set overlap (Venn/UpSet)
bulk        bulk samples and genes: sample QC bars, PCA, distance and expression heatmaps, gene counts, LRT patterns
singlecell  single cell: UMAPs, QC violins and scatter, marker dot plots, genes of interest, cell-type composition
pseudobulk  pseudobulk: cell-type proportions per sample, DEG counts per cell type
compound    the compound study: rescue plot, pathway scores, enrichment dot plot, qPCR concordance
"""
