# DESeq2 1.38 references for degflow's LRT, coefficient-name / numeric-vector / list contrasts and numeric
# covariates (tests/test_lrt.py). Real data bundled in the repository, nothing derived but the subsets written:
#  * GSE121659 (resources/gse121659; config/examples/gse121659_samples.tsv): 4 arms x 3 mice, ~ group.
#    LRT ~ group vs ~ 1; Wald contrasts by name, numeric vector and list (with and without listValues).
#  * airway (resources/airway; 8 samples): the sheet's real avgLength column (mean read length of each run, a
#    technical covariate) as a numeric covariate, ~ cell + avgLength + dex (Wald by name, LRT for dex), and an
#    interaction of a factor with it, ~ dex + avgLength + dex:avgLength (Wald of the interaction coefficient,
#    LRT against ~ dex + avgLength).
# Each results table is written (gzipped) for every 50th tested gene (baseMean > 0, in count-file order) to keep the
# files small; counts over all genes (n_padj_*) go to summary.tsv.
# Run from the repository root: Rscript tests/_scripts/deseq2_lrt_contrasts.R   (R 4.x, DESeq2 1.38.3)
suppressPackageStartupMessages(library(DESeq2))
out <- "tests/data/deseq2_lrt_contrasts"
dir.create(out, showWarnings = FALSE)
summary <- list()
keep_rows <- function(res) {
  tested <- which(!is.na(res$baseMean) & res$baseMean > 0)
  tested[seq(1, length(tested), by = 50)]
}
write_res <- function(res, name, padj_alpha = 0.05) {
  rows <- keep_rows(res)
  df <- data.frame(gene_id = rownames(res)[rows], as.data.frame(res)[rows, ], check.names = FALSE)
  for (col in names(df)[-1]) df[[col]] <- signif(df[[col]], 10)
  con <- gzfile(file.path(out, paste0(name, ".tsv.gz")), "w")
  write.table(df, con, sep = "\t", quote = FALSE, row.names = FALSE, na = "NA")
  close(con)
  summary[[length(summary) + 1]] <<- data.frame(
    table = name, n_tested = sum(res$baseMean > 0, na.rm = TRUE),
    n_padj_below_alpha = sum(res$padj < padj_alpha, na.rm = TRUE),
    n_pvalue_na = sum(is.na(res$pvalue) & res$baseMean > 0), n_padj_na = sum(is.na(res$padj) & res$baseMean > 0),
    filter_threshold = signif(unname(metadata(res)$filterThreshold), 10))
}
read_counts <- function(path) {
  cts <- as.matrix(read.delim(path, row.names = 1, check.names = FALSE))
  mode(cts) <- "integer"
  cts
}

## GSE121659 --------------------------------------------------------------------------------------------
cts <- read_counts("resources/gse121659/counts.tsv")
cd <- read.delim("config/examples/gse121659_samples.tsv", row.names = 1)
cd$group <- factor(cd$group, levels = c("control", "model", "treated_aja", "treated_ehp101"))
stopifnot(identical(colnames(cts), rownames(cd)))
dds <- DESeqDataSetFromMatrix(cts, cd, ~ group)
lrt <- DESeq(dds, test = "LRT", reduced = ~ 1, quiet = TRUE)
writeLines(resultsNames(lrt), file.path(out, "gse121659_resultsNames.txt"))
write_res(results(lrt, alpha = 0.05), "gse121659_lrt")
wald <- DESeq(dds, quiet = TRUE)
stopifnot(identical(resultsNames(wald), resultsNames(lrt)))
write_res(results(wald, name = "group_model_vs_control", alpha = 0.05), "gse121659_name_model")
# both treatments on average against the untreated model: c(0, -1, 1/2, 1/2) over resultsNames
write_res(results(wald, contrast = c(0, -1, 0.5, 0.5), alpha = 0.05), "gse121659_vector")
write_res(results(wald, contrast = list(c("group_treated_aja_vs_control", "group_treated_ehp101_vs_control"),
                                        "group_model_vs_control"), listValues = c(0.5, -1), alpha = 0.05),
          "gse121659_list_values")
write_res(results(wald, contrast = list("group_treated_ehp101_vs_control", "group_treated_aja_vs_control"),
                  alpha = 0.05), "gse121659_list")

## airway: a numeric covariate and a factor x numeric interaction ---------------------------------------
cts <- read_counts("resources/airway/counts.tsv")
cd <- read.delim("resources/airway/samples.tsv", row.names = 1)
cd$cell <- factor(cd$cell, levels = sort(unique(cd$cell), method = "radix"))
cd$dex <- factor(cd$dex, levels = c("untrt", "trt"))
stopifnot(identical(colnames(cts), rownames(cd)), is.numeric(cd$avgLength))
cov <- DESeq(DESeqDataSetFromMatrix(cts, cd, ~ cell + avgLength + dex), quiet = TRUE)
writeLines(resultsNames(cov), file.path(out, "airway_covariate_resultsNames.txt"))
write_res(results(cov, name = "avgLength", alpha = 0.05), "airway_covariate_avgLength")
write_res(results(cov, name = "dex_trt_vs_untrt", alpha = 0.05), "airway_covariate_dex")
cov_lrt <- DESeq(DESeqDataSetFromMatrix(cts, cd, ~ cell + avgLength + dex), test = "LRT",
                 reduced = ~ cell + avgLength, quiet = TRUE)
write_res(results(cov_lrt, alpha = 0.05), "airway_covariate_lrt")
int <- DESeq(DESeqDataSetFromMatrix(cts, cd, ~ dex + avgLength + dex:avgLength), quiet = TRUE)
writeLines(resultsNames(int), file.path(out, "airway_interaction_resultsNames.txt"))
write_res(results(int, name = "dextrt.avgLength", alpha = 0.05), "airway_interaction")
int_lrt <- DESeq(DESeqDataSetFromMatrix(cts, cd, ~ dex + avgLength + dex:avgLength), test = "LRT",
                 reduced = ~ dex + avgLength, quiet = TRUE)
write_res(results(int_lrt, alpha = 0.05), "airway_interaction_lrt")

write.table(do.call(rbind, summary), file.path(out, "summary.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)
writeLines(c(R.version.string, paste("DESeq2", packageVersion("DESeq2"))), file.path(out, "versions.txt"))
