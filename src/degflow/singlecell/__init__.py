"""Single cell: QC, doublets, normalisation, clustering, UMAP, markers, annotation, composition.

steps: the workflow's single-cell steps that combine several calls (one function per sc_* script).
"""
