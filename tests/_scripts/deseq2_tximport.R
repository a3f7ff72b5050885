# DESeq2 on tximport-style input (countsFromAbundance = "no"): the reference for degflow's
# normalization_factors path (tests/test_formats_workflow.py::test_length_offset_matches_deseq2_in_r).
# Inputs: tests/data/salmon_yeast_tximport/{counts,avg_tx_length,samples}.tsv, written from
# shared/data/count_formats/salmon/yeast_nfcore_test by degflow.io.counts.read_counts (tximport's
# summarizeToGene: estimated counts rounded half to even, abundance-weighted average lengths).
# Run from the repository root: Rscript tests/_scripts/deseq2_tximport.R   (R 4.x, DESeq2 1.38.3)
suppressPackageStartupMessages(library(DESeq2))
d <- "tests/data/salmon_yeast_tximport"
cts <- as.matrix(read.delim(file.path(d, "counts.tsv"), row.names = 1, check.names = FALSE))
len <- as.matrix(read.delim(file.path(d, "avg_tx_length.tsv"), row.names = 1, check.names = FALSE))
cd <- read.delim(file.path(d, "samples.tsv"), row.names = 1)
cd$condition <- relevel(factor(cd$condition), ref = "WT")
stopifnot(identical(colnames(cts), rownames(cd)), identical(dimnames(cts), dimnames(len)))
mode(cts) <- "integer"
# exactly what DESeqDataSetFromTximport does for countsFromAbundance = "no"
dds <- DESeqDataSetFromMatrix(cts, cd, ~ condition)
assays(dds)[["avgTxLength"]] <- len
dds <- DESeq(dds)
write.table(data.frame(gene_id = rownames(dds), normalizationFactors(dds), check.names = FALSE),
            file.path(d, "normalization_factors.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
mc <- mcols(dds)
write.table(data.frame(gene_id = rownames(dds), baseMean = mc$baseMean, dispGeneEst = mc$dispGeneEst,
                       dispFit = mc$dispFit, dispersion = mc$dispersion),
            file.path(d, "dispersions.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
res <- results(dds, contrast = c("condition", "RAP1_UNINDUCED", "WT"), alpha = 0.05)
write.table(data.frame(gene_id = rownames(res), as.data.frame(res)),
            file.path(d, "results_RAP1_UNINDUCED_vs_WT.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
writeLines(c(R.version.string, paste("DESeq2", packageVersion("DESeq2"))), file.path(d, "versions.txt"))
