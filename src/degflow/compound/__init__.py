"""Compound studies: rescue classes, pathway panels, enrichment (ORA/GSEA), qRT-PCR."""
