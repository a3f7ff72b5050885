"""Parse-time planning: every check of the config and the sheets, before the DAG; one module per stage.

schema       the JSON schemas (workflow/schemas): unknown keys, types, defaults (validate_config)
design       design formulas and contrasts against the sample sheet; DESeq2's resultsNames and contrast vectors
common       what common.smk computes for every stage (resource requests that grow with the data)
bulk         the bulk section against its sheet and counts (plan_bulk, LRTs, count inputs)
singlecell   the singlecell section and what its rules read (plan_singlecell, targets, process parameters)
pseudobulk   singlecell.pseudobulk (plan_pseudobulk, grouping and replicate checks)
composition  singlecell.composition (plan_composition) and the tests it plans
compound     bulk.rescue / pathways / enrichment / qpcr (plan_compound, treatment arms, targets)
"""
