"""Reading and writing: bulk count formats, single-cell readers, sample sheets, tables.

counts       read_counts (the one entry point for bulk counts: format detection, sample naming) and FORMATS
genecounts   readers of gene-level integer counts: count matrix, featureCounts, HTSeq-count, STAR (strandedness)
quantifiers  salmon, kallisto and RSEM outputs summed per gene as tximport does; tx2gene maps
counttable   CountTable (what every count reader returns) and collapse_replicates (technical replicates)
annotation   gene names/biotypes from a GTF or gene table, matched to count IDs (Ensembl versions)
text         text-file checks (check_text_file) and helpers: gzip by magic bytes, separators, tables of strings
sheets       the one sample-sheet reader (text cells, missing values, names) and the bulk sample sheet
_textparse   the numba parser of large plain-integer count matrices
singlecell   single-cell readers: 10x mtx/HDF5, h5ad, BD Rhapsody; one sample or a sample sheet
tables       deterministic TSV writing/reading, pickles, the bulk dataset written by the workflow

Checks of count values shared with the analyses are in degflow.checks.
"""
