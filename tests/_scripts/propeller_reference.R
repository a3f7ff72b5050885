# Reference tables for tests/test_composition.py: propeller (speckle; Phipson et al., Bioinformatics 2022) computed
# with limma in R, full precision.
#   Rscript tests/_scripts/propeller_reference.R      (from the repository root; needs limma, statmod)
# speckle is not installed: its steps are written out below with limma's own functions, as speckle calls them
# (getTransformedProps: logit of (n + 0.5) / rowSums(n + 0.5), or asin(sqrt(p)); propeller.ttest: lmFit +
# contrasts.fit + eBayes; propeller.anova: eBayes on the group coefficients of an intercept design; BH FDR).
# Inputs:
#   - speckle's test data (tests/testthat/test-propeller*.R of phipsonlab/speckle at 3fe9cf41f9c7): fixed cell
#     numbers, no random numbers; rebuilt here and written to tests/data/propeller_speckle/counts.tsv.
#   - Kang et al. 2018 (8 donors, ctrl vs 6 h IFN-beta): cells per sample x cell type from degflow's run of
#     config/examples/kang2018.yaml (results_kang2018/singlecell/composition/cell_counts.tsv, copied to
#     tests/data/propeller_kang2018/cell_counts.tsv), and per Leiden cluster (resolution 1.0, from
#     results_kang2018/singlecell/adata.h5ad; cell_counts_leiden_1.0.tsv): with 14 clusters the robust prior
#     differs from the plain one, so fitFDistRobustly's outlier branch is exercised.
suppressPackageStartupMessages(library(limma))
out_s <- "tests/data/propeller_speckle"
out_k <- "tests/data/propeller_kang2018"
w <- function(df, path) {  # every number at full precision (17 significant digits), nothing padded
  df[] <- lapply(df, function(x) if (is.double(x)) sprintf("%.17g", x) else x)
  write.table(df, path, sep = "\t", quote = FALSE, row.names = FALSE)
}

transform_props <- function(tab, transform) {  # tab: samples x cell types (speckle: table(sample, clusters))
  props <- tab / rowSums(tab)
  if (transform == "asin") return(list(prop = t(props), trans = t(asin(sqrt(props)))))
  pp <- (tab + 0.5) / rowSums(tab + 0.5)
  list(prop = t(props), trans = t(log(pp / (1 - pp))))
}

## speckle's test data ------------------------------------------------------------------------------------------
p <- rbind(c(0.5, 0.3, 0.2), c(0.6, 0.3, 0.1), c(0.3, 0.4, 0.3), c(0.4, 0.3, 0.3), c(0.8, 0.1, 0.1), c(0.75, 0.2, 0.05))
numcells <- c(1000, 1500, 900, 1200, 1000, 800)
tab <- p * numcells
dimnames(tab) <- list(paste0("s", 1:6), c("c0", "c1", "c2"))
counts <- data.frame(sample = rep(rownames(tab), each = 3), cell_type = rep(colnames(tab), 6),
                     n_cells = as.vector(t(tab)))
w(counts, file.path(out_s, "counts.tsv"))

# propeller(clusters, sample, group = grp1 (s1, s2) / grp2 (s3, s4), robust = FALSE, transform = "asin")
# and propeller.ttest(..., robust = TRUE) with the logit transform: design ~0 + group, contrast c(1, -1)
two <- tab[1:4, ]
grp <- factor(rep(c("A", "B"), each = 2))
design <- model.matrix(~ 0 + grp)
res <- NULL
for (cfg in list(c("asin", FALSE), c("logit", TRUE), c("logit", FALSE), c("asin", TRUE))) {
  pl <- transform_props(two, cfg[1])
  fit <- eBayes(contrasts.fit(lmFit(pl$trans, design), contrasts = c(1, -1)), robust = as.logical(cfg[2]))
  pm <- lmFit(pl$prop, design)$coefficients
  res <- rbind(res, data.frame(test = paste0("ttest_", cfg[1], ifelse(cfg[2], "_robust", "")),
                               cell_type = rownames(pl$trans), prop_A = pm[, 1], prop_B = pm[, 2],
                               ratio = pm[, 1] / pm[, 2], statistic = fit$t[, 1], pvalue = fit$p.value[, 1],
                               padj = p.adjust(fit$p.value[, 1], "BH"), df_prior = fit$df.prior))
}
w(res, file.path(out_s, "ttest_r.tsv"))

# propeller.anova(prop.list, design = model.matrix(~0 + grp), coef = 1:3, robust = TRUE): groups A/B/C (2 each)
grp3 <- factor(rep(c("A", "B", "C"), each = 2))
res <- NULL
for (cfg in list(c("logit", TRUE), c("logit", FALSE), c("asin", TRUE))) {
  pl <- transform_props(tab, cfg[1])
  d <- model.matrix(~ 0 + grp3)
  pm <- lmFit(pl$prop, d)$coefficients
  d[, 1] <- 1
  fit <- eBayes(lmFit(pl$trans, d)[, 2:3], robust = as.logical(cfg[2]))
  res <- rbind(res, data.frame(test = paste0("anova_", cfg[1], ifelse(cfg[2], "_robust", "")),
                               cell_type = rownames(pl$trans), prop_A = pm[, 1], prop_B = pm[, 2],
                               prop_C = pm[, 3], statistic = fit$F, pvalue = fit$F.p.value,
                               padj = p.adjust(fit$F.p.value, "BH"), df_prior = fit$df.prior))
}
w(res, file.path(out_s, "anova_r.tsv"))

## Kang 2018, paired by donor -----------------------------------------------------------------------------------
kang <- function(counts_file, out_file) {
kc <- read.delim(file.path(out_k, counts_file), check.names = FALSE)
ktab <- xtabs(n_cells ~ sample + cell_type, kc)
ktab <- matrix(ktab, nrow(ktab), dimnames = dimnames(ktab))
meta <- unique(kc[, c("sample", "donor", "condition")])
meta <- meta[match(rownames(ktab), meta$sample), ]
condition <- relevel(factor(meta$condition), "ctrl")
donor <- factor(meta$donor)
res <- NULL
for (cfg in list(c("logit", TRUE), c("asin", TRUE), c("logit", FALSE))) {
  pl <- transform_props(ktab, cfg[1])
  robust <- as.logical(cfg[2])
  # speckle's parameterisation: design ~0 + condition + donor, contrast stim - ctrl
  d <- model.matrix(~ 0 + condition + donor)
  cont <- c(-1, 1, rep(0, ncol(d) - 2))
  fit <- eBayes(contrasts.fit(lmFit(pl$trans, d), contrasts = cont), robust = robust)
  pm <- lmFit(pl$prop, d[, 1:2])$coefficients
  # the same test as a coefficient of the treatment-coded ~ donor + condition (degflow's design)
  fit2 <- eBayes(lmFit(pl$trans, model.matrix(~ donor + condition)), robust = robust)
  # all-levels (8 donors) moderated F with condition as covariate
  d3 <- model.matrix(~ donor + condition)
  fit3 <- eBayes(lmFit(pl$trans, d3)[, grep("^donor", colnames(d3))], robust = robust)
  res <- rbind(res, data.frame(transform = cfg[1], robust = robust, cell_type = rownames(pl$trans),
                               prop_ctrl = pm[, 1], prop_stim = pm[, 2], ratio = pm[, 2] / pm[, 1],
                               statistic = fit$t[, 1], pvalue = fit$p.value[, 1],
                               padj = p.adjust(fit$p.value[, 1], "BH"), df_prior = fit$df.prior,
                               t_coef = fit2$t[, "conditionstim"], donor_F = fit3$F, donor_F_pvalue = fit3$F.p.value))
}
w(res, file.path(out_k, out_file))
}
kang("cell_counts.tsv", "propeller_r.tsv")                      # degflow's cell types (marker annotation)
kang("cell_counts_leiden_1.0.tsv", "propeller_leiden_1.0_r.tsv")  # its 14 Leiden clusters at resolution 1.0
cat("limma", as.character(packageVersion("limma")), "R", R.version$major, R.version$minor, "\n")
