"""Compound studies: rescue classes, pathway panels, enrichment (ORA/GSEA), qRT-PCR.

steps: the workflow's compound-study steps (rescue, ORA/GSEA, pathway panels, qPCR, the workbook).
"""
