"""Single cell, step by step (the scanpy recipe, reproducibly); reading the samples is :mod:`degflow.io.singlecell`.

common          what every step shares: parameters in ``uns["degflow"]``, timed logging, thread cap, raw counts
qc              per-cell QC metrics, thresholds (fixed, MAD, per sample), scrublet doublets
process         normalise + log1p, highly variable genes, PCA, Harmony, neighbours, Leiden, UMAP
annotate        marker genes, cell types from a marker YAML, label transfer from a reference, cluster sizes
genes           the genes of interest: the configured list or file, matched to the data's symbols
composition     differential cell-type composition (propeller)
make_reference  command line: a labelled reference AnnData for label transfer
steps           the workflow's single-cell steps that combine several calls (one function per sc_* script)
scale           in memory or on disk: each step's switch by the cell count (singlecell.scale.on_disk)
ondisk          the on-disk path for atlas size: streamed merge, chunked normalise/HVG/PCA, capped markers, sums
"""
