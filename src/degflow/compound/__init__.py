"""Compound studies: does the treatment reverse the disease? (figures: :mod:`degflow.pl.compound`).

rescue    rescue classes per gene (reversed, partially reversed, aggravated ...), global reversal, label permutation
pathways  gene sets (bundled GMT files), pathway panels and scores, offline ORA and preranked GSEA
qpcr      qRT-PCR Ct tables, delta-delta-Ct, concordance with RNA-seq fold changes
steps     the workflow's compound-study steps: rescue, ORA/GSEA, pathway panels, qPCR, the workbook
"""
