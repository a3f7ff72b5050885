# Reference for degflow.bulk.batch.remove_batch_effect / batch-corrected PCA (tests/test_batch_goi.py).
# limma::removeBatchEffect on DESeq2's VST, as the DESeq2 vignette ("Batch effects" / plotPCA):
#   mat <- assay(vsd); mm <- model.matrix(~condition, colData(vsd))
#   mat <- limma::removeBatchEffect(mat, batch = vsd$batch, design = mm); assay(vsd) <- mat; plotPCA(vsd)
# Data: the bundled airway example (resources/airway), design ~ cell + dex, batch = cell, kept term dex.
# Run from the repository root (DESeq2 1.38.3, limma 3.54.1):
#   Rscript tests/_scripts/limma_remove_batch_airway.R
# Writes tests/data/airway_remove_batch/:
#   vst_top500.tsv        R's vst(blind = TRUE) of the 500 genes plotPCA uses on the corrected matrix (input)
#   corrected_top500.tsv  removeBatchEffect of those genes (output to match)
#   pca.tsv               plotPCA(returnData = TRUE) of the corrected VST: sample, PC1, PC2, dex, cell
#   percent_var.tsv       attr(, "percentVar") of PC1, PC2
#   pca_measured.tsv      plotPCA of the uncorrected VST (for contrast: the batch dominates PC2 there)
suppressPackageStartupMessages({library(DESeq2); library(limma)})
out <- "tests/data/airway_remove_batch"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
counts <- as.matrix(read.delim("resources/airway/counts.tsv", row.names = 1, check.names = FALSE))
sheet <- read.delim("resources/airway/samples.tsv", row.names = 1, stringsAsFactors = TRUE)
sheet <- sheet[colnames(counts), c("cell", "dex")]
sheet$dex <- relevel(sheet$dex, "untrt")
dds <- DESeqDataSetFromMatrix(counts, sheet, design = ~ cell + dex)
dds <- estimateSizeFactors(dds)
vsd <- vst(dds, blind = TRUE)
measured <- plotPCA(vsd, intgroup = c("dex", "cell"), returnData = TRUE)
mat <- assay(vsd)
mm <- model.matrix(~dex, colData(vsd))
corrected <- removeBatchEffect(mat, batch = vsd$cell, design = mm)
vsc <- vsd
assay(vsc) <- corrected
pc <- plotPCA(vsc, intgroup = c("dex", "cell"), returnData = TRUE)
rv <- rowVars(corrected)
top <- order(rv, decreasing = TRUE)[seq_len(500)]   # plotPCA's ntop = 500 selection
w <- function(x, f) write.table(x, file.path(out, f), sep = "\t", quote = FALSE, row.names = FALSE)
g17 <- function(x) sprintf("%.17g", x)
fmt <- function(m) data.frame(gene_id = rownames(m), apply(m, 2, g17), check.names = FALSE)
w(fmt(mat[top, ]), "vst_top500.tsv")
w(fmt(corrected[top, ]), "corrected_top500.tsv")
w(data.frame(sample = rownames(pc), PC1 = g17(pc$PC1), PC2 = g17(pc$PC2),
             dex = pc$dex, cell = pc$cell), "pca.tsv")
w(data.frame(sample = rownames(measured), PC1 = g17(measured$PC1),
             PC2 = g17(measured$PC2), dex = measured$dex, cell = measured$cell), "pca_measured.tsv")
w(data.frame(PC = c("PC1", "PC2"), percentVar = g17(attr(pc, "percentVar"))), "percent_var.tsv")
writeLines(c(paste("DESeq2", packageVersion("DESeq2")), paste("limma", packageVersion("limma")),
             R.version.string), file.path(out, "VERSIONS"))
