"""Single cell: QC, doublets, normalisation, clustering, UMAP, markers, annotation, composition."""
