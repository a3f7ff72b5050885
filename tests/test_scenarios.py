"""New-user scenario suite (issue 18): the shapes of real data people bring, each through the bulk rules' steps.

Every scenario writes a user's files (subsets of the real data in the repo, or in shared/data), validates the
config and plans the run exactly as the Snakefile does (``validate_config`` + ``plan_bulk``), then runs in
one process the library calls of the rules ``bulk_dataset``, ``bulk_fit``, ``bulk_contrast``,
``bulk_summary``, ``bulk_volcano`` and ``bulk_deg_heatmap`` (workflow/scripts/*.py) for every contrast. In
process, because a snakemake run costs a minute on this machine; tests/test_new_user.py runs the plain-matrix
experiment through snakemake end to end. Each scenario checks what could silently go wrong with its shape,
mostly that it gives exactly the numbers of the same data in the plain shape.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from degflow.bulk.dataset import build_dataset, read_gene_annotation  # noqa: E402
from degflow.bulk.degs import top_genes  # noqa: E402
from degflow.bulk.vst import variance_stabilised  # noqa: E402
from degflow.de.fit import fit_deseq  # noqa: E402
from degflow.de.results import contrast_results  # noqa: E402
from degflow.de.tables import annotate_results, deg_table, summary_row  # noqa: E402
from degflow.kernels.sizefactors import size_factors_ratio  # noqa: E402
from degflow.pl import bulk as plots  # noqa: E402
from degflow.pl.de import volcano  # noqa: E402
from degflow.plan.bulk import plan_bulk  # noqa: E402
from degflow.plan.schema import validate_config  # noqa: E402

NUMERIC = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]
DEX = {"design": "~ cell + dex", "reference_levels": {"dex": "untrt"},
       "contrasts": {"dex_vs_untrt": ["dex", "trt", "untrt"]}}


def run_bulk(tmp: Path, bulk: dict) -> tuple[object, object, dict[str, pd.DataFrame]]:
    """Config -> plan -> dataset -> fit -> every contrast's results, DEGs, summary row, volcano and heatmap."""
    cfg = validate_config({"results": str(tmp / "results"), "bulk": bulk})
    b = cfg["bulk"]
    plan, table = plan_bulk(b)
    data = build_dataset(table, plan, design=b["design"], reference_levels=b["reference_levels"],
                         annotation=read_gene_annotation(b.get("annotation")),
                         min_count=b["filter"]["min_count"], min_samples=b["filter"]["min_samples"])
    counts = pd.DataFrame(data.X.T, index=data.var_names, columns=data.obs_names)
    sf = pd.Series(size_factors_ratio(data.X, n_threads=1), index=data.obs_names)
    de = b["de"]
    dds = fit_deseq(counts, data.obs, b["design"], b["reference_levels"], flavor=de["flavor"], engine=de["engine"],
                    size_factors=sf, refit_cooks=de["refit_cooks"], n_cpus=1, seed=de["seed"])
    data.uns["design_columns"] = [str(c) for c in dds.obsm["design_matrix"].columns]
    th = b["thresholds"]
    vst = variance_stabilised(counts, pd.Series(dds.obs["size_factors"].to_numpy(), index=data.obs_names))
    out = {}
    for name, spec in b["contrasts"].items():
        res = contrast_results(dds, list(spec), alpha=de["alpha"], cooks_filter=de["cooks_filter"],
                               independent_filter=de["independent_filter"], n_cpus=1)
        tab = annotate_results(res, data.var["gene_name"], lfc=th["lfc"], padj=th["padj"],
                               gene_biotypes=data.var["gene_biotype"] if "gene_biotype" in data.var else None)
        deg = deg_table(tab)
        row = summary_row(name, list(spec), tab, lfc=th["lfc"], padj=th["padj"])
        assert row["n_up"] + row["n_down"] == len(deg)
        indexed = tab.set_index("gene_id")
        plt.close(volcano(indexed, lfc=th["lfc"], padj=th["padj"], title=name))
        top = top_genes(indexed, n=50, lfc=th["lfc"], padj=th["padj"])
        if len(top):
            plt.close(plots.deg_heatmap(vst, list(top.index), data.obs, annotate_by=plan.factors[:2],
                                        gene_names=indexed["gene_name"].fillna(""), title=name))
        out[name] = tab
    return plan, data, out


def same_numbers(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Identical DESeq2 columns (bit for bit) and calls, gene by gene in the same order."""
    assert list(a["gene_id"]) == list(b["gene_id"])
    for col in NUMERIC:
        np.testing.assert_array_equal(a[col].to_numpy(), b[col].to_numpy(), err_msg=col)
    assert list(a["regulation"]) == list(b["regulation"])


@pytest.fixture(scope="module")
def airway_files(repo):
    """The first 3,000 airway genes with a unique, non-empty symbol; the bundled sheet; the gene table."""
    counts = pd.read_csv(repo / "resources" / "airway" / "counts.tsv", sep="\t", index_col=0)
    genes = pd.read_csv(repo / "resources" / "airway" / "genes.tsv", sep="\t", index_col=0, dtype=str,
                        keep_default_na=False)
    sym = genes["symbol"].reindex(counts.index).fillna("")
    ok = (sym != "") & ~sym.duplicated(keep=False)
    counts = counts.loc[ok].iloc[:3000]
    sheet = pd.read_csv(repo / "config" / "samples.tsv", sep="\t", dtype=str)[["sample_id", "cell", "dex"]]
    return counts, sheet, genes.loc[counts.index]


def write(tmp: Path, counts: pd.DataFrame, sheet: pd.DataFrame, *, name: str = "counts.tsv") -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    counts.to_csv(tmp / name, sep="," if name.endswith(".csv") else "\t")
    sheet.to_csv(tmp / "samples.tsv", sep="\t", index=False)
    return {"counts": str(tmp / name), "samples": str(tmp / "samples.tsv")}


@pytest.fixture(scope="module")
def annotated_baseline(airway_files, tmp_path_factory):
    """Ensembl IDs + the annotation file: the shape of the bundled example."""
    counts, sheet, genes = airway_files
    tmp = tmp_path_factory.mktemp("baseline")
    genes.to_csv(tmp / "genes.tsv", sep="\t")
    plan, data, out = run_bulk(tmp, {**write(tmp, counts, sheet), "annotation": str(tmp / "genes.tsv"), **DEX})
    return out["dex_vs_untrt"]


def test_scenario_annotated_matrix(annotated_baseline, airway_files):
    _, _, genes = airway_files
    tab = annotated_baseline
    assert (tab["gene_name"] == genes["symbol"].reindex(tab["gene_id"]).to_numpy()).all()
    assert ((tab["regulation"] != "ns").sum()) > 20


def test_scenario_no_annotation_file(tmp_path, airway_files, annotated_baseline):
    counts, sheet, _ = airway_files
    _, _, out = run_bulk(tmp_path, {**write(tmp_path, counts, sheet), **DEX})
    tab = out["dex_vs_untrt"]
    same_numbers(tab, annotated_baseline)
    assert (tab["gene_name"] == tab["gene_id"]).all()


def test_scenario_gene_symbols_as_ids(tmp_path, airway_files, annotated_baseline):
    counts, sheet, genes = airway_files
    _, _, out = run_bulk(tmp_path, {**write(tmp_path, counts.rename(index=genes["symbol"]), sheet), **DEX})
    tab = out["dex_vs_untrt"]
    ids = genes["symbol"].reindex(annotated_baseline["gene_id"]).to_numpy()
    assert list(tab["gene_id"]) == list(ids) and (tab["gene_name"] == tab["gene_id"]).all()
    same_numbers(tab.assign(gene_id=annotated_baseline["gene_id"].to_numpy()), annotated_baseline)


def test_scenario_csv_with_gene_name_column(tmp_path, airway_files, annotated_baseline):
    counts, sheet, genes = airway_files
    csv = counts.copy()
    csv.insert(0, "symbol", genes["symbol"])
    _, _, out = run_bulk(tmp_path, {**write(tmp_path, csv, sheet, name="counts.csv"), **DEX})
    tab = out["dex_vs_untrt"]
    same_numbers(tab, annotated_baseline)
    assert list(tab["gene_name"]) == list(annotated_baseline["gene_name"])


def test_scenario_name_column_and_annotation_file(tmp_path, airway_files, annotated_baseline):
    """Both a name column in the counts and bulk.annotation: the annotation file's names win (issue 18 item 5)."""
    counts, sheet, genes = airway_files
    csv = counts.copy()
    csv.insert(0, "symbol", "lab_" + genes["symbol"])  # the lab's own names, e.g. from an old annotation
    genes.to_csv(tmp_path / "genes.tsv", sep="\t")
    _, _, out = run_bulk(tmp_path, {**write(tmp_path, csv, sheet), "annotation": str(tmp_path / "genes.tsv"), **DEX})
    assert list(out["dex_vs_untrt"]["gene_name"]) == list(annotated_baseline["gene_name"])


def test_scenario_numeric_sample_names(tmp_path, airway_files, annotated_baseline):
    counts, sheet, _ = airway_files
    names = {s: str(i + 1) for i, s in enumerate(sheet["sample_id"])}
    plan, data, out = run_bulk(tmp_path, {**write(tmp_path, counts.rename(columns=names),
                                                  sheet.assign(sample_id=sheet["sample_id"].map(names))), **DEX})
    assert plan.samples == [str(i) for i in range(1, 9)] and list(data.obs_names) == plan.samples
    same_numbers(out["dex_vs_untrt"].assign(gene_name=annotated_baseline["gene_name"].to_numpy()),
                 annotated_baseline)


def test_scenario_sheet_with_unused_na_columns(tmp_path, airway_files, annotated_baseline):
    counts, sheet, _ = airway_files
    sheet = sheet.assign(rin=["9.8", "NA", "9.6", "", "9.9", "N/A", "9.7", "9.7"],
                         comment=["", "NA", "re-sequenced", "", "", "", "NA", ""])
    plan, data, out = run_bulk(tmp_path, {**write(tmp_path, counts, sheet), **DEX})
    assert plan.factors == ["cell", "dex"] and int(data.obs["rin"].isna().sum()) == 3
    same_numbers(out["dex_vs_untrt"].assign(gene_name=annotated_baseline["gene_name"].to_numpy()),
                 annotated_baseline)


def test_scenario_excluded_sample(tmp_path, airway_files):
    """A failed library left out with exclude; it may stay in the sheet and the counts."""
    counts, sheet, _ = airway_files
    plan, data, out = run_bulk(tmp_path, {**write(tmp_path, counts, sheet), **DEX, "exclude": ["SRR1039521"]})
    assert data.n_obs == 7 and "SRR1039521" not in data.obs_names and plan.excluded == ["SRR1039521"]
    assert out["dex_vs_untrt"]["padj"].notna().sum() > 1000


def test_scenario_continuous_covariate(tmp_path, airway_files, repo):
    """avgLength (GEO's mean read length per run) as a numeric covariate: one coefficient, shift-free test."""
    counts, sheet, _ = airway_files
    meta = pd.read_csv(repo / "resources" / "airway" / "samples.tsv", sep="\t", dtype=str).set_index("sample_id")
    sheet = sheet.assign(avgLength=meta["avgLength"].reindex(sheet["sample_id"]).to_numpy())
    design = {"design": "~ avgLength + dex", "reference_levels": {"dex": "untrt"},
              "contrasts": {"dex_vs_untrt": ["dex", "trt", "untrt"]}}
    plan, data, out = run_bulk(tmp_path / "raw", {**write(tmp_path / "raw", counts, sheet), **design})
    assert plan.covariates == ["avgLength"] and plan.factors == ["dex"]
    assert data.uns["design_columns"] == ["Intercept", "avgLength", "dex[T.trt]"]  # one slope, not 3 levels
    # centred (length - 100): the same model, so the same dex test up to the fit's convergence
    kb = sheet.assign(avgLength=(pd.to_numeric(sheet["avgLength"]) - 100).astype(str))
    _, _, out_kb = run_bulk(tmp_path / "centred", {**write(tmp_path / "centred", counts, kb), **design})
    a, b = out["dex_vs_untrt"], out_kb["dex_vs_untrt"]
    assert (a["regulation"] == b["regulation"]).mean() > 0.99
    assert (a["log2FoldChange"] - b["log2FoldChange"]).abs().median() < 1e-4


def test_scenario_four_arms(tmp_path, repo):
    """GSE121659: control, disease model and two treated arms; contrasts between non-reference levels."""
    counts = pd.read_csv(repo / "resources" / "gse121659" / "counts.tsv", sep="\t", index_col=0).iloc[:3000]
    sheet = pd.read_csv(repo / "config" / "examples" / "gse121659_samples.tsv", sep="\t", dtype=str)
    files = write(tmp_path, counts, sheet)
    contrasts = {"model_vs_control": ["group", "model", "control"],
                 "ehp_vs_control": ["group", "treated_ehp101", "control"],
                 "ehp_vs_model": ["group", "treated_ehp101", "model"],
                 "aja_vs_model": ["group", "treated_aja", "model"]}
    plan, _, out = run_bulk(tmp_path, {**files, "design": "~ group", "reference_levels": {"group": "control"},
                                       "annotation": str(repo / "resources" / "gse121659" / "genes.tsv"),
                                       "contrasts": contrasts})
    assert list(plan.sheet["group"].unique()) == ["control", "model", "treated_ehp101", "treated_aja"]
    # log2 fold changes are differences of the model's coefficients: ehp-model = (ehp-control) - (model-control)
    lfc = {k: v.set_index("gene_id")["log2FoldChange"] for k, v in out.items()}
    # on genes counted in every sample of the three arms (a group of zeros puts a coefficient at its bound)
    arms = plan.sheet.index[plan.sheet["group"].isin(["control", "model", "treated_ehp101"])]
    expressed = counts.index[(counts[arms] > 0).all(axis=1)].astype(str)
    diff = (lfc["ehp_vs_control"] - lfc["model_vs_control"]).reindex(expressed).dropna()
    assert len(diff) > 1500
    np.testing.assert_allclose(lfc["ehp_vs_model"].reindex(diff.index), diff, atol=1e-6)
    assert (out["model_vs_control"]["regulation"] != "ns").sum() > 0
    assert out["model_vs_control"]["gene_name"].iloc[0] == "Xkr4"


def test_scenario_per_sample_htseq_files(tmp_path, shared_data):
    """htseq-count's per-sample files (airway GSE52778: 2 cell lines x untreated/dexamethasone), paired design."""
    d = shared_data / "count_formats" / "htseq" / "airway_GSE52778"
    sheet = pd.DataFrame({"sample": ["SRR1039508", "SRR1039509", "SRR1039512", "SRR1039513"],
                          "cell": ["N61311", "N61311", "N052611", "N052611"],
                          "dex": ["untrt", "trt", "untrt", "trt"]})
    sheet["counts_path"] = [str(d / f"{s}_all_counts.txt") for s in sheet["sample"]]
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    cfg = {"counts": {"path": None}, "samples": str(tmp_path / "samples.tsv"), **DEX}
    plan, data, out = run_bulk(tmp_path, cfg)
    assert plan.count_format == "htseq" and plan.samples == list(sheet["sample"])
    raw = pd.read_csv(d / "SRR1039508_all_counts.txt", sep="\t", header=None, index_col=0)[1]
    genes = raw.loc[~raw.index.str.startswith("__")]
    assert not data.var_names.str.startswith("__").any() and data.n_vars == len(genes)
    np.testing.assert_array_equal(data[ "SRR1039508", list(genes.index)].X.ravel(), genes.to_numpy())
    assert out["dex_vs_untrt"]["padj"].notna().sum() > 1000


def test_scenario_versioned_ensembl_ids(tmp_path, repo, core_data):
    """STAR's GENCODE IDs carry versions (ENSMUSG00000051951.5); an annotation without versions still names them."""
    star = core_data / "count_formats" / "star" / "mouse_tcell_bbcRNA"
    sheet = pd.read_csv(repo / "config" / "examples" / "star_tcell_samples.tsv", sep="\t", dtype=str)
    sheet["counts_path"] = [str(star / Path(p).name) for p in sheet["counts_path"]]
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    ann = pd.read_csv(repo / "resources" / "gse121659" / "genes.tsv", sep="\t", dtype=str)
    ann = ann.loc[ann["ensembl_gene_id"].fillna("") != "", ["ensembl_gene_id", "symbol"]]
    ann = ann.drop_duplicates("ensembl_gene_id", keep=False).rename(columns={"ensembl_gene_id": "gene_id"})
    ann.to_csv(tmp_path / "genes.tsv", sep="\t", index=False)
    cfg = {"counts": {"path": None, "format": "star"}, "samples": str(tmp_path / "samples.tsv"),
           "annotation": str(tmp_path / "genes.tsv"), "design": "~ genotype", "reference_levels": {"genotype": "WT"},
           "contrasts": {"mut_vs_WT": ["genotype", "mut", "WT"]}, "filter": {"min_count": 10, "min_samples": 4}}
    _, data, out = run_bulk(tmp_path, cfg)
    tab = out["mut_vs_WT"].set_index("gene_id")
    assert tab.index.str.contains(r"^ENSMUSG\d+\.\d+$").all()  # the counts keep their own IDs
    named = data.var.loc[data.var["gene_name"] != ""]
    assert len(named) > 0.5 * data.n_vars
    expect = ann.set_index("gene_id")["symbol"]
    stripped = named.index.str.replace(r"\.\d+$", "", regex=True)
    assert (named["gene_name"].to_numpy() == expect.reindex(stripped).to_numpy()).all()
    assert math.isfinite(tab["log2FoldChange"].abs().max())


def test_scenario_gzipped_counts(tmp_path, airway_files, annotated_baseline):
    """counts.tsv.gz as downloaded from GEO."""
    counts, sheet, _ = airway_files
    files = write(tmp_path, counts, sheet)
    gz = Path(files["counts"] + ".gz")
    gz.write_bytes(gzip.compress(Path(files["counts"]).read_bytes()))
    _, _, out = run_bulk(tmp_path, {**files, "counts": str(gz), **DEX})
    same_numbers(out["dex_vs_untrt"].assign(gene_name=annotated_baseline["gene_name"].to_numpy()),
                 annotated_baseline)


# ----------------------------------------------------------------------------------------------
# single-cell shapes: the steps of sc_genes, sc_sample, sc_merge, sc_process, sc_markers and sc_cluster_sizes
# ----------------------------------------------------------------------------------------------
def run_singlecell(tmp: Path, rows: list[dict], **sc_overrides):
    """Config -> plan -> shared genes -> per-sample QC + doublets -> merge -> clusters -> markers, cluster sizes."""
    import anndata as ad
    import scanpy as sc

    from degflow.io.singlecell import qc_overrides, read_samples, validate_sample_sheet
    from degflow.plan.singlecell import plan_singlecell
    from degflow.singlecell.annotate import cluster_sizes
    from degflow.singlecell.process import process
    from degflow.singlecell.qc import doublets, qc_filter, qc_metrics

    pd.DataFrame(rows).to_csv(tmp / "sc_samples.tsv", sep="\t", index=False)
    cfg = validate_config({"results": str(tmp / "results"),
                           "singlecell": {"samples": str(tmp / "sc_samples.tsv"), **sc_overrides}})
    s = cfg["singlecell"]
    plan = plan_singlecell(s)
    sheet = plan.sheet
    merged = read_samples(sheet)
    keep, _ = sc.pp.filter_genes(merged, min_cells=s["qc"]["min_cells"] or 0, inplace=False)
    genes = merged.var_names[keep]
    parts = []
    for sample in plan.samples:
        one = validate_sample_sheet(sheet.loc[[sample]].reset_index(), source="sheet")
        cells = read_samples(one)[:, genes].copy()
        qc_metrics(cells)
        kept, _ = qc_filter(cells, min_cells=None, overrides=qc_overrides(one),
                            **{k: s["qc"][k] for k in ("min_genes", "max_genes", "max_pct_mt", "nmads")})
        kept, _ = doublets(kept, batch_key="sample", remove=s["doublets"]["remove"], seed=s["seed"], n_threads=1)
        parts.append(kept)
    adata = ad.concat(parts, join="inner", merge="same", uns_merge="same")
    for col, levels in plan.metadata.items():
        adata.obs[col] = pd.Categorical(adata.obs[col].astype(str), categories=levels)
    qc_metrics(adata)
    hvg, pca, nn = s["hvg"], s["pca"], s["neighbors"]
    process(adata, target_sum=s["normalize"]["target_sum"], hvg_flavor=hvg["flavor"],
            n_top_genes=hvg["n_top_genes"], min_mean=hvg["min_mean"], max_mean=hvg["max_mean"],
            min_disp=hvg["min_disp"], hvg_span=hvg["span"], batch_key=s["batch_key"],
            integration=s["integration"], regress_out=pca["regress_out"], scale_max=pca["scale_max"],
            n_comps=pca["n_comps"], n_neighbors=nn["n_neighbors"], n_pcs=nn["n_pcs"], knn=nn["knn"],
            resolutions=s["leiden_resolutions"], seed=s["seed"], n_threads=1)
    sizes = cluster_sizes(adata)
    return plan, adata, sizes


def test_scenario_two_10x_h5_samples_without_markers(tmp_path, shared_data):
    """Kang 2018 donor 101, control and IFN-beta stimulated (Cell Ranger .h5 each), no marker file."""
    d = shared_data / "kang2018_ifnb_8donors_h5"
    rows = [{"sample": s, "path": str(d / f"s101_{s}.h5"), "condition": s} for s in ("ctrl", "stim")]
    plan, adata, sizes = run_singlecell(
        tmp_path, rows, markers=None, qc={"min_genes": 200, "max_genes": None, "max_pct_mt": None},
        hvg={"flavor": "seurat_v3", "n_top_genes": 1000}, pca={"n_comps": 20}, neighbors={"n_pcs": 20})
    assert plan.annotation_key is None and plan.clusterings == ["leiden_0.5", "leiden_1.0"]
    assert "cell_type" not in adata.obs.columns
    assert list(adata.obs["sample"].cat.categories) == ["ctrl", "stim"]
    assert adata.obs_names.is_unique and adata.obs_names.str.match(r"^(ctrl|stim)_").all()
    for key in plan.clusterings:
        assert adata.obs[key].notna().all()
        n = sizes.loc[sizes["clustering"] == key]
        assert n["n_cells"].sum() == adata.n_obs and (n["n_ctrl"] + n["n_stim"] == n["n_cells"]).all()
    assert adata.n_obs > 200 and adata.obsm["X_umap"].shape == (adata.n_obs, 2)


def test_scenario_bd_rhapsody_with_sample_tags(tmp_path, core_data):
    """BD Rhapsody targeted panel (rustody test data): two cartridges, DBEC counts and sample-tag calls."""
    d = core_data / "bd_rhapsody_rustody_targeted"
    rows = [{"sample": s, "path": str(d / f"Combined_{s}Subset_DBEC_MolsPerCell.csv"), "format": "bd_rhapsody",
             "bd_sample_tags": str(d / f"{s}Subset_Sample_Tag_Calls.csv"), "condition": c}
            for s, c in (("S1", "a"), ("S2", "b"))]
    plan, adata, sizes = run_singlecell(
        tmp_path, rows, markers=None, qc={"min_genes": 10, "max_genes": None, "max_pct_mt": None, "min_cells": 3},
        doublets={"method": "scrublet", "remove": False},
        hvg={"flavor": "seurat_v3", "n_top_genes": 200}, pca={"n_comps": 15}, neighbors={"n_pcs": 15,
                                                                                          "n_neighbors": 10})
    assert plan.samples == ["S1", "S2"]
    assert set(plan.files["S1"]) == {str(d / "Combined_S1Subset_DBEC_MolsPerCell.csv"),
                                     str(d / "S1Subset_Sample_Tag_Calls.csv")}
    assert "sample_tag" in adata.obs.columns and adata.obs["sample_tag"].notna().all()
    tags = pd.read_csv(d / "S1Subset_Sample_Tag_Calls.csv", comment="#", dtype=str).set_index("Cell_Index")
    s1 = adata.obs.loc[adata.obs["sample"] == "S1"]
    assert (s1["sample_tag"].to_numpy() == tags["Sample_Tag"].reindex(s1.index.str.removeprefix("S1_")).to_numpy()).all()
    assert sizes.loc[sizes["clustering"] == "leiden_1.0", "n_cells"].sum() == adata.n_obs
