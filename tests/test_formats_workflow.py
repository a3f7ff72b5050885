"""Count formats through the workflow (issue 9): plan_bulk at parse time, snakemake end to end, R parity.

* A real ``snakemake`` run on STAR ``ReadsPerGene.out.tab`` files (config/examples/star_tcell.yaml: mouse T cells,
  4 WT vs 4 mut, tests/data/count_formats/star) down to the DE table and ``results/bulk/qc/strandedness.tsv``,
  checked against values read independently from the gzipped STAR files.
* Every bad input of issue 9 through ``validate_config`` + ``plan_bulk`` (what the Snakefile runs before the DAG
  is built), one through the snakemake command line.
* Technical replicates (a ``unit`` column) and gene annotation with Ensembl versions.
* DESeq2 normalisation factors from tximport lengths (``counts_from_abundance: no``) against DESeq2 1.38.3 in R
  (tests/data/salmon_yeast_tximport, made by tests/_scripts/deseq2_tximport.R).
"""

from __future__ import annotations

import gzip
import logging
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from degflow.bulk.dataset import build_dataset, length_normalization_factors, read_gene_annotation
from degflow.de.fit import fit_deseq
from degflow.de.results import contrast_results
from degflow.errors import DegflowInputError
from degflow.io.counts import read_counts
from degflow.io.genecounts import strandedness_table
from degflow.plan.bulk import plan_bulk
from degflow.plan.schema import validate_config

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
RESULT_COLUMNS = ["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"]
STAR = "count_formats/star/mouse_tcell_bbcRNA"
SALMON = "count_formats/salmon/yeast_nfcore_test"
R_REF = Path(__file__).parent / "data" / "salmon_yeast_tximport"


def _star_file(shared: Path, run: str) -> Path:
    return shared / STAR / f"{run}_trimmed_ReadsPerGene.out.tab.gz"


def _star_raw(path: Path) -> pd.DataFrame:
    """A ReadsPerGene.out.tab read with plain pandas: gene/N_* rows x (unstranded, forward, reverse)."""
    return pd.read_csv(path, sep="\t", header=None, index_col=0, names=["id", "unstranded", "forward", "reverse"])


def _example(repo: Path, data: Path, tmp: Path, name: str, **bulk_overrides) -> tuple[Path, dict]:
    """config/examples/<name>.yaml and its sheet, with ../shared/data resolved to ``data`` (tests/data holds the
    example's files in the same layout)."""
    cfg = yaml.safe_load((repo / "config/examples" / f"{name}.yaml").read_text())
    sheet = pd.read_csv(repo / cfg["bulk"]["samples"], sep="\t")
    sheet["counts_path"] = [str(data / p.removeprefix("../shared/data/")) for p in sheet["counts_path"]]
    sheet.to_csv(tmp / "samples.tsv", sep="\t", index=False)
    cfg["bulk"]["samples"] = str(tmp / "samples.tsv")
    if cfg["bulk"]["counts"].get("tx2gene"):
        cfg["bulk"]["counts"]["tx2gene"] = str(repo / cfg["bulk"]["counts"]["tx2gene"])
    cfg["bulk"].update(bulk_overrides)
    cfg["results"] = str(tmp / "results")
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def _plan(cfg: dict):
    return plan_bulk(validate_config(cfg)["bulk"])


# ---------------------------------------------------------------------------------------------
# STAR end to end
# ---------------------------------------------------------------------------------------------

#: A few genes of the first GENCODE mouse genes, unversioned as in an Ensembl gene table (the counts are
#: versioned: ENSMUSG00000051951.5), to check names and biotypes reach the dataset and the results.
ANNOTATION = """gene_id\tgene_name\tgene_biotype
ENSMUSG00000102693\t4933401J01Rik\tTEC
ENSMUSG00000051951\tXkr4\tprotein_coding
ENSMUSG00000025902\tSox17\tprotein_coding
ENSMUSG00000033845\tMrpl15\tprotein_coding
"""


@pytest.fixture(scope="module")
def star_run(repo: Path, core_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config/examples/star_tcell.yaml (+ an annotation and the DESeq2 vignette's pre-filter, to keep the fit
    short), run by snakemake down to the contrast's results and strandedness.tsv."""
    tmp = tmp_path_factory.mktemp("star")
    (tmp / "genes.tsv").write_text(ANNOTATION)
    config, _ = _example(repo, core_data, tmp, "star_tcell", annotation=str(tmp / "genes.tsv"),
                         filter={"min_count": 10, "min_samples": 4})
    results = tmp / "results"
    targets = [results / "bulk/de/mut_vs_WT/results.tsv", results / "bulk/qc/strandedness.tsv"]
    proc = subprocess.run([str(SNAKEMAKE), "--cores", "2", "--configfile", str(config), "--nolock",
                           "-s", str(repo / "Snakefile"), *map(str, targets)],
                          cwd=repo, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-5000:]
    return results


@pytest.mark.workflow
def test_star_strandedness_evidence(star_run: Path, core_data: Path) -> None:
    """strandedness.tsv: per sample the three gene totals and N_noFeature of the file, and column 3 chosen
    (SOURCE.md: column 3 is correct for this library)."""
    tab = pd.read_csv(star_run / "bulk/qc/strandedness.tsv", sep="\t", index_col="sample")
    assert len(tab) == 8
    assert set(tab["requested"]) == {"auto"} and set(tab["chosen"]) == {"forward"} and set(tab["column"]) == {3}
    for sample, row in tab.iterrows():
        raw = _star_raw(_star_file(core_data, sample))
        genes = raw[~raw.index.str.startswith("N_")].sum()
        assert [row.genes_unstranded, row.genes_forward, row.genes_reverse] == genes.tolist()
        assert [row.N_noFeature_unstranded, row.N_noFeature_forward, row.N_noFeature_reverse] == (
            raw.loc["N_noFeature"].tolist())
        assert row.forward_share == pytest.approx(genes["forward"] / (genes["forward"] + genes["reverse"]), rel=1e-9)
    qc = pd.read_csv(star_run / "bulk/qc/quantifier_qc.tsv", sep="\t", index_col="sample")
    raw = _star_raw(_star_file(core_data, "SRR7240739_1"))
    assert qc.loc["SRR7240739_1", ["N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous"]].tolist() == (
        raw.loc[["N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous"], "forward"].tolist())


@pytest.mark.workflow
def test_star_results_table(star_run: Path, core_data: Path) -> None:
    """The DE table: DESeq2 columns, the genes that pass the pre-filter, baseMean = mean of column-3 counts over
    the size factors (read from the raw files), fold-change signs as the normalised means say, names matched
    across Ensembl versions."""
    res = pd.read_csv(star_run / "bulk/de/mut_vs_WT/results.tsv", sep="\t", index_col="gene_id")
    assert list(res.columns[:1]) == ["gene_name"] and res.columns[-1] == "regulation"
    assert [c for c in res.columns if c in RESULT_COLUMNS] == RESULT_COLUMNS
    sheet = pd.read_csv(star_run.parent / "samples.tsv", sep="\t", index_col="sample")
    raw = pd.DataFrame({s: _star_raw(_star_file(core_data, s))["forward"] for s in sheet.index})
    raw = raw[~raw.index.str.startswith("N_")]
    kept = raw[(raw >= 10).sum(axis=1) >= 4]
    assert set(res.index) == set(kept.index[kept.sum(axis=1) > 0])
    sf = pd.read_csv(star_run / "bulk/counts/size_factors.tsv", sep="\t", index_col="sample")["size_factor"]
    normed = kept / sf[kept.columns]
    np.testing.assert_allclose(res["baseMean"], normed.loc[res.index].mean(axis=1), rtol=1e-9)
    assert res["padj"].notna().sum() > 1000
    deg = res[res.regulation != "ns"]
    assert 100 < len(deg) < 5000 and set(deg.regulation) == {"up", "down"}
    wt, mut = sheet.index[sheet.genotype == "WT"], sheet.index[sheet.genotype == "mut"]
    ratio = np.log2(normed.loc[deg.index, mut].mean(axis=1) / normed.loc[deg.index, wt].mean(axis=1))
    assert (np.sign(ratio) == np.sign(deg["log2FoldChange"])).mean() > 0.99
    assert res.loc["ENSMUSG00000033845.13", "gene_name"] == "Mrpl15"  # Xkr4, Sox17: no reads in T cells
    assert list(res.columns[:2]) == ["gene_name", "gene_biotype"]
    assert res.loc["ENSMUSG00000033845.13", "gene_biotype"] == "protein_coding"
    assert (res["gene_name"].fillna("") != "").sum() == 1  # of the 4 annotated genes only Mrpl15 has reads
    data = ad.read_h5ad(star_run / "bulk/counts/dataset.h5ad")
    assert data.var.loc["ENSMUSG00000033845.13", "gene_biotype"] == "protein_coding"
    assert data.uns["degflow"]["counts"]["format"] == "star" and "avg_tx_length" not in data.layers


# ---------------------------------------------------------------------------------------------
# bad input, through plan_bulk: one message each
# ---------------------------------------------------------------------------------------------


def _star_cfg(shared: Path, tmp: Path, files: dict[str, Path] | None = None, **counts) -> dict:
    """The STAR experiment with per-sample files (optionally replaced) and bulk.counts settings."""
    meta = pd.read_csv(shared / STAR / "meta.txt", sep="\t")
    paths = {s: _star_file(shared, s) for s in meta["sample"]}
    paths.update(files or {})
    sheet = meta[["sample", "genotype"]].assign(counts_path=[str(paths[s]) for s in meta["sample"]])
    sheet.to_csv(tmp / "samples.tsv", sep="\t", index=False)
    return {"bulk": {"counts": counts, "samples": str(tmp / "samples.tsv"), "design": "~ genotype",
                     "reference_levels": {"genotype": "WT"}, "contrasts": {"mut_vs_WT": ["genotype", "mut", "WT"]}}}


def _undetermined(shared: Path, tmp: Path) -> Path:
    """SRR7240742_1 with column 4 set to 3/7 of column 3: column 3 holds 0.7 of their sum (neither >= 0.8 nor
    within 0.1 of column 4)."""
    raw = _star_raw(_star_file(shared, "SRR7240742_1"))
    genes = ~raw.index.str.startswith("N_")
    raw.loc[genes, "reverse"] = (raw.loc[genes, "forward"] * 3 / 7).round().astype(int)
    out = tmp / "SRR7240742_1_ReadsPerGene.out.tab"
    raw.to_csv(out, sep="\t", header=False)
    return out


def test_bad_star_inputs(core_data: Path, tmp_path: Path) -> None:
    # a file of another format declared as STAR; mixed formats under auto
    htseq = core_data / "count_formats/htseq/htseq_repo_yeast_excerpt/yeast_RNASeq_excerpt_withNH_counts.tsv"
    cfg = _star_cfg(core_data, tmp_path, {"SRR7240742_1": htseq}, format="star")
    with pytest.raises(DegflowInputError, match=r"withNH_counts\.tsv: format star was set but the file looks like "
                                                 r"htseq-count output"):
        _plan(cfg)
    cfg = _star_cfg(core_data, tmp_path, {"SRR7240742_1": htseq})
    with pytest.raises(DegflowInputError, match=r"count files are in different formats \(.*: star, .*: star"):
        _plan(cfg)
    # fewer than 4 columns
    three = tmp_path / "three_ReadsPerGene.out.tab"
    _star_raw(_star_file(core_data, "SRR7240742_1")).iloc[:, :2].to_csv(three, sep="\t", header=False)
    with pytest.raises(DegflowInputError, match=r"three_ReadsPerGene\.out\.tab: STAR ReadsPerGene\.out\.tab has 4 "
                                                r"columns \(gene, unstranded, forward, reverse\), found 3"):
        _plan(_star_cfg(core_data, tmp_path, {"SRR7240742_1": three}))


def test_unclear_strandedness_stops_unless_told_to_fall_back(core_data: Path, tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    undet = {"SRR7240742_1": _undetermined(core_data, tmp_path)}
    with pytest.raises(DegflowInputError, match=r"SRR7240742_1_ReadsPerGene\.out\.tab: cannot infer the "
                                                 r"strandedness of sample 'SRR7240742_1' \(column 3 \(forward\) holds "
                                                 r"0\.700 .*set bulk\.counts\.strandedness to forward, reverse or "
                                                 r"unstranded .* or to auto_or_unstranded"):
        _plan(_star_cfg(core_data, tmp_path, undet, strandedness="auto"))
    with caplog.at_level(logging.WARNING, logger="degflow"):
        plan, table = _plan(_star_cfg(core_data, tmp_path, undet, strandedness="auto_or_unstranded"))
    assert "strandedness undetermined" in caplog.text
    tab = strandedness_table(table).set_index("sample")
    assert tab.loc["SRR7240742_1", ["inferred", "chosen", "column"]].tolist() == ["undetermined", "unstranded", 2]
    assert tab.loc["SRR7240735_1", "column"] == 3
    raw = _star_raw(_star_file(core_data, "SRR7240742_1"))
    assert table.counts["SRR7240742_1"].sum() == raw[~raw.index.str.startswith("N_")]["unstranded"].sum()
    assert plan.count_format == "star" and len(plan.count_files) == 8


def test_bad_htseq_inputs(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "count_formats/htseq/airway_GSE52778"
    files = {p.name.split("_")[0]: p for p in sorted(folder.glob("*_all_counts.txt"))}
    sheet = pd.read_csv(shared_data / "airway/samples.tsv", sep="\t")[["sample_id", "cell", "dex"]]
    sheet = sheet[sheet.sample_id.isin(files)]

    def cfg_with(replace: dict[str, Path]) -> dict:
        paths = {**files, **replace}
        sheet.assign(counts_path=[str(paths[s]) for s in sheet.sample_id]).to_csv(tmp_path / "s.tsv", sep="\t",
                                                                                  index=False)
        return {"bulk": {"counts": {"format": "auto"}, "samples": str(tmp_path / "s.tsv"), "design": "~ cell + dex",
                         "reference_levels": {"dex": "untrt"}, "contrasts": {"dex": ["dex", "trt", "untrt"]}}}

    plan, table = _plan(cfg_with({}))
    assert table.format == "htseq" and table.counts.shape == (57773, 4)
    lines = files["SRR1039513"].read_text().splitlines(keepends=True)
    (tmp_path / "no_specials.txt").write_text("".join(lines[:-5]))
    with pytest.raises(DegflowInputError, match=r"no_specials\.txt: has none of htseq-count's 5 summary rows"):
        _plan(cfg_with({"SRR1039513": tmp_path / "no_specials.txt"}))
    (tmp_path / "dup.txt").write_text("".join(lines[:3] + lines[2:]))
    with pytest.raises(DegflowInputError, match=r"dup\.txt: duplicate gene IDs \('ENSG00000000419'"):
        _plan(cfg_with({"SRR1039513": tmp_path / "dup.txt"}))


def test_featurecounts_bam_names_matching_no_sample(shared_data: Path, tmp_path: Path) -> None:
    """GSE135056's featureCounts columns are alignment/WT_1A.sorted.bam ...; a sheet keyed on SRR run IDs
    (its mapping.csv) matches none of them."""
    folder = shared_data / "count_formats/featurecounts/yeast_rrp6_GSE135056"
    mapping = pd.read_csv(folder / "mapping.csv", header=None, names=["run", "name"])
    sheet = pd.DataFrame({"sample": mapping["run"], "strain": mapping["name"].str.split("_").str[0]})
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    cfg = {"bulk": {"counts": {"path": str(folder / "counts.txt")}, "samples": str(tmp_path / "samples.tsv"),
                    "design": "~ strain", "reference_levels": {"strain": "WT"},
                    "contrasts": {"rrp6": ["strain", "rrp6", "WT"]}}}
    with pytest.raises(DegflowInputError, match=r"featureCounts file '.*counts\.txt': none of its 24 BAM columns "
                                                 r"matches a sample of '.*samples\.tsv' \(BAM -> sample name: "
                                                 r"'alignment/WT_1A\.sorted\.bam' -> 'WT_1A', .*the sheet has "
                                                 r"'SRR9856226'"):
        _plan(cfg)
    # named after the BAM files it works, and the .summary goes to QC
    sheet.assign(sample=mapping["name"]).to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    plan, table = _plan(cfg)
    assert table.counts.shape == (7127, 24) and "assignment_rate" in table.qc.columns
    assert plan.count_files == [str(folder / "counts.txt"), str(folder / "counts.txt.summary")]


def test_bad_salmon_inputs(repo: Path, core_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _, cfg = _example(repo, core_data, tmp_path, "salmon_yeast")
    cfg["bulk"]["counts"]["tx2gene"] = None
    with pytest.raises(DegflowInputError, match=r"WT_REP1/quant\.sf: salmon quantifies transcripts; give tx2gene"):
        _plan(cfg)
    # a tx2gene without two expressed genes: planned, with the reads that loses in a warning and in the QC
    quant = pd.read_csv(core_data / SALMON / "WT_REP1/quant.sf", sep="\t", index_col="Name")
    t2g = pd.read_csv(repo / "config/examples/salmon_yeast_tx2gene.tsv", sep="\t")
    gone = ["YAL038W", "YAL005C"]  # pyruvate kinase CDC19, Hsp70 SSA1
    assert (quant.loc[gone, "NumReads"] > 100).all()
    t2g[~t2g.transcript_id.isin(gone)].to_csv(tmp_path / "t2g.tsv", sep="\t", index=False)
    cfg["bulk"]["counts"]["tx2gene"] = str(tmp_path / "t2g.tsv")
    with caplog.at_level(logging.WARNING, logger="degflow"):
        _, table = _plan(cfg)
    assert "2 of 125 transcripts" in caplog.text and "2 of them with reads" in caplog.text
    assert table.qc.loc["WT_REP1", "tx2gene_unmapped_reads"] == pytest.approx(quant.loc[gone, "NumReads"].sum())


def test_gzip_and_windows_line_endings_through_the_plan(core_data: Path, tmp_path: Path) -> None:
    """CRLF sample sheet, CRLF + gzip count files: the same plan and counts as the originals."""
    ref_plan, ref = _plan(_star_cfg(core_data, tmp_path))
    files = {}
    for s in ref.counts.columns:
        text = gzip.decompress(_star_file(core_data, s).read_bytes())
        files[s] = tmp_path / f"{s}_ReadsPerGene.out.tab.gz"
        files[s].write_bytes(gzip.compress(text.replace(b"\n", b"\r\n")))
    cfg = _star_cfg(core_data, tmp_path, files)
    sheet = tmp_path / "samples.tsv"
    sheet.write_bytes(sheet.read_bytes().replace(b"\n", b"\r\n"))
    plan, table = _plan(cfg)
    assert plan.samples == ref_plan.samples and plan.factors == ["genotype"]
    pd.testing.assert_frame_equal(table.counts, ref.counts)


# ---------------------------------------------------------------------------------------------
# technical replicates
# ---------------------------------------------------------------------------------------------


def test_technical_replicates_from_per_unit_files(core_data: Path, tmp_path: Path) -> None:
    """Two STAR files per sample (a `unit` column): the sample's counts are the sum of the units' column 3, every
    unit file is declared, and strandedness is judged per unit."""
    runs = pd.read_csv(core_data / STAR / "meta.txt", sep="\t")["sample"].tolist()
    rows = [{"sample": f"{g}{i}", "unit": f"lane{k + 1}", "genotype": g, "counts_path": str(_star_file(core_data, r))}
            for (g, i), pair in zip([("WT", 1), ("WT", 2), ("mut", 1), ("mut", 2)],
                                    [runs[0:2], runs[2:4], runs[4:6], runs[6:8]], strict=True)
            for k, r in enumerate(pair)]
    pd.DataFrame(rows).to_csv(tmp_path / "units.tsv", sep="\t", index=False)
    cfg = {"bulk": {"counts": {"format": "star"}, "samples": str(tmp_path / "units.tsv"), "design": "~ genotype",
                    "reference_levels": {"genotype": "WT"}, "contrasts": {"m": ["genotype", "mut", "WT"]}}}
    plan, table = _plan(cfg)
    assert plan.samples == ["WT1", "WT2", "mut1", "mut2"] and list(plan.sheet.columns) == ["genotype"]
    assert len(plan.units) == 8 and len(plan.count_files) == 8
    both = sum(_star_raw(_star_file(core_data, run))["forward"] for run in runs[4:6])
    both = both[~both.index.str.startswith("N_")]
    np.testing.assert_array_equal(table.counts["mut1"].to_numpy(), both.loc[table.counts.index].to_numpy())
    assert table.qc.loc["mut1", "n_units"] == 2
    assert table.qc.loc["mut1", "assigned"] == both.sum()
    tab = strandedness_table(table)
    assert list(tab.columns[:2]) == ["sample", "unit"] and len(tab) == 8
    assert tab.iloc[0][["sample", "unit"]].tolist() == ["WT1", "lane1"]
    data = build_dataset(table, plan, design="~ genotype", reference_levels={"genotype": "WT"})
    assert data.shape == (4, 50600) and "unit" not in data.obs.columns


def test_technical_replicates_in_one_featurecounts_file(shared_data: Path, tmp_path: Path) -> None:
    """With bulk.counts.path, each unit names a column of the file (here: the BAM-derived names)."""
    path = shared_data / "count_formats/featurecounts/yeast_snf2_bootcamp/counts.txt"
    rows = [{"sample": f"{kind}_{pair}", "unit": f"{kind}-{2 * pair - 1 + k:02d}", "strain": kind}
            for kind in ("mutant", "wildtype") for pair in (1, 2, 3) for k in (0, 1)]
    pd.DataFrame(rows).to_csv(tmp_path / "units.tsv", sep="\t", index=False)
    cfg = {"bulk": {"counts": {"path": str(path)}, "samples": str(tmp_path / "units.tsv"), "design": "~ strain",
                    "reference_levels": {"strain": "wildtype"}, "contrasts": {"m": ["strain", "mutant", "wildtype"]}}}
    plan, table = _plan(cfg)
    assert table.counts.shape == (5292, 6) and plan.samples[0] == "mutant_1"
    raw = pd.read_csv(path, sep="\t", comment="#", index_col="Geneid")
    np.testing.assert_array_equal(table.counts["wildtype_2"].to_numpy(),
                                  (raw["bam/wildtype-03.bam"] + raw["bam/wildtype-04.bam"]).to_numpy())


def test_bad_technical_replicates(core_data: Path, tmp_path: Path) -> None:
    f = [str(_star_file(core_data, r)) for r in ("SRR7240735_1", "SRR7240736_1")]
    base = {"counts": {"format": "star"}, "samples": str(tmp_path / "u.tsv"), "design": "~ genotype",
            "contrasts": {"m": ["genotype", "mut", "WT"]}}
    cases = {
        "sample/unit twice": ("sample\tunit\tgenotype\tcounts_path\nA\tL1\tWT\t{0}\nA\tL1\tWT\t{1}\n",
                              r"u\.tsv': sample 'A', unit 'L1' appears more than once \(rows \[2, 3\]\)"),
        "units disagree": ("sample\tunit\tgenotype\tcounts_path\nA\tL1\tWT\t{0}\nA\tL2\tmut\t{1}\n",
                           r"u\.tsv', sample 'A': column 'genotype' differs between its units \('WT', 'mut'\)"),
        "no counts_path": ("sample\tunit\tgenotype\nA\tL1\tWT\nA\tL2\tWT\n",
                           r"has a unit column but no counts_path column"),
        "empty unit": ("sample\tunit\tgenotype\tcounts_path\nA\t\tWT\t{0}\n", r"u\.tsv', row 2: the unit is empty"),
    }
    for text, match in cases.values():
        (tmp_path / "u.tsv").write_text(text.format(*f))
        with pytest.raises(DegflowInputError, match=match):
            _plan({"bulk": base})


# ---------------------------------------------------------------------------------------------
# annotation
# ---------------------------------------------------------------------------------------------


def test_annotation_version_collision_is_named(core_data: Path, tmp_path: Path) -> None:
    plan, table = _plan(_star_cfg(core_data, tmp_path))
    (tmp_path / "genes.tsv").write_text(ANNOTATION + "ENSMUSG00000051951.4\tXkr4-old\tprotein_coding\n"
                                        "ENSMUSG00000051951.5\tXkr4\tprotein_coding\n")
    with pytest.raises(DegflowInputError, match=r"removing them would merge distinct IDs in .*genes\.tsv "
                                                 r"\(ENSMUSG00000051951 / ENSMUSG00000051951\.4 / "
                                                 r"ENSMUSG00000051951\.5; 1 such groups\)"):
        build_dataset(table, plan, design="~ genotype", reference_levels={"genotype": "WT"},
                      annotation=read_gene_annotation(tmp_path / "genes.tsv"))


# ---------------------------------------------------------------------------------------------
# tximport lengths as DESeq2 normalisation factors, against R
# ---------------------------------------------------------------------------------------------


def test_length_offset_matches_deseq2_in_r(core_data: Path) -> None:
    """salmon -> tximport gene counts and lengths -> DESeq2 (DESeqDataSetFromTximport: avgTxLength assay) in
    R 4.2.2 / DESeq2 1.38.3, against the same through degflow: normalisation factors, dispersions and the Wald
    results agree to 1e-9; fitting with plain size factors instead changes fold changes by up to ~1.7 log2 units,
    so the offset is really used."""
    folders = sorted(p for p in (core_data / SALMON).iterdir() if p.is_dir())
    quant = pd.read_csv(folders[0] / "quant.sf", sep="\t")
    ct = read_counts(folders, tx2gene=pd.DataFrame({"transcript_id": quant.Name, "gene_id": quant.Name}))
    counts = pd.read_csv(R_REF / "counts.tsv", sep="\t", index_col=0)
    lengths = pd.read_csv(R_REF / "avg_tx_length.tsv", sep="\t", index_col=0)
    pd.testing.assert_frame_equal(ct.counts, counts, check_names=False)  # the R inputs are the reader's output
    np.testing.assert_allclose(ct.lengths.to_numpy(), lengths.to_numpy(), rtol=1e-15)
    samples = pd.read_csv(R_REF / "samples.tsv", sep="\t", index_col=0)
    nf = length_normalization_factors(ct.counts, ct.lengths)
    nf_r = pd.read_csv(R_REF / "normalization_factors.tsv", sep="\t", index_col=0)
    np.testing.assert_allclose(nf, nf_r.to_numpy(), rtol=1e-12)
    dds = fit_deseq(ct.counts, samples, "~ condition", {"condition": "WT"}, normalization_factors=nf)
    disp = pd.read_csv(R_REF / "dispersions.tsv", sep="\t", index_col=0)
    np.testing.assert_allclose(dds.var["dispersions"], disp["dispersion"], rtol=1e-9)
    res = contrast_results(dds, ["condition", "RAP1_UNINDUCED", "WT"])
    r = pd.read_csv(R_REF / "results_RAP1_UNINDUCED_vs_WT.tsv", sep="\t", index_col=0)
    for col in RESULT_COLUMNS:
        assert np.array_equal(res[col].isna(), r[col].isna()), col
        np.testing.assert_allclose(res[col].dropna(), r[col].dropna(), rtol=1e-9, atol=1e-12, err_msg=col)
    plain = contrast_results(fit_deseq(ct.counts, samples, "~ condition", {"condition": "WT"}),
                             ["condition", "RAP1_UNINDUCED", "WT"])
    assert np.nanmax(np.abs(plain["log2FoldChange"] - r["log2FoldChange"])) > 1.0


def test_normalization_factors_equal_to_size_factors(core_data: Path) -> None:
    """Factors constant across genes (each sample's size factor) give exactly the size-factor fit."""
    counts = pd.read_csv(R_REF / "counts.tsv", sep="\t", index_col=0)
    samples = pd.read_csv(R_REF / "samples.tsv", sep="\t", index_col=0)
    a = fit_deseq(counts, samples, "~ condition", {"condition": "WT"})
    sf = a.obs["size_factors"].to_numpy()
    b = fit_deseq(counts, samples, "~ condition", {"condition": "WT"},
                  normalization_factors=np.tile(sf, (counts.shape[0], 1)))
    for key in ("dispersions", "_normed_means"):
        np.testing.assert_allclose(b.var[key], a.var[key], rtol=1e-12)
    ra, rb = (contrast_results(d, ["condition", "RAP1_UNINDUCED", "WT"]) for d in (a, b))
    pd.testing.assert_frame_equal(ra, rb, rtol=1e-10)
    np.testing.assert_allclose(b.obs["size_factors"], sf, rtol=1e-12)
    with pytest.raises(DegflowInputError, match=r"give size_factors or normalization_factors, not both"):
        fit_deseq(counts, samples, "~ condition", size_factors=sf, normalization_factors=np.ones(counts.shape))
    with pytest.raises(DegflowInputError, match=r"normalization_factors must be 125 x 5 positive numbers"):
        fit_deseq(counts, samples, "~ condition", normalization_factors=np.ones((3, 5)))
    with pytest.raises(DegflowInputError, match=r"normalization_factors need flavor 'deseq2'"):
        fit_deseq(counts, samples, "~ condition", flavor="pydeseq2", normalization_factors=np.ones(counts.shape))


# ---------------------------------------------------------------------------------------------
# the command line: one line, no traceback, nothing written
# ---------------------------------------------------------------------------------------------


@pytest.mark.workflow
def test_unclear_strandedness_stops_snakemake_with_one_line(repo: Path, core_data: Path, tmp_path: Path) -> None:
    undetermined = _undetermined(core_data, tmp_path)
    config, _ = _example(repo, core_data, tmp_path, "star_tcell")
    sheet = pd.read_csv(tmp_path / "samples.tsv", sep="\t")  # _example re-resolved the example's sheet
    sheet.loc[sheet["sample"] == "SRR7240742_1", "counts_path"] = str(undetermined)
    sheet.to_csv(tmp_path / "samples.tsv", sep="\t", index=False)
    proc = subprocess.run([str(SNAKEMAKE), "-n", "-s", str(repo / "Snakefile"), "--configfile", str(config),
                           "--cores", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    err = proc.stderr.strip()
    assert proc.returncode != 0 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("degflow:")]
    assert len(lines) == 1, err
    assert "cannot infer the strandedness of sample 'SRR7240742_1'" in lines[0]
    assert "auto_or_unstranded" in lines[0]
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_salmon_end_to_end_matches_deseq2_in_r(repo: Path, core_data: Path, tmp_path: Path) -> None:
    """config/examples/salmon_yeast.yaml through snakemake: tximport's lengths reach the fit as normalisation
    factors, and the DE table equals DESeq2 1.38.3's (DESeqDataSetFromTximport) to the 10 digits written."""
    config, _ = _example(repo, core_data, tmp_path, "salmon_yeast")
    target = tmp_path / "results/bulk/de/RAP1_uninduced_vs_WT/results.tsv"
    proc = subprocess.run([str(SNAKEMAKE), "--cores", "2", "--configfile", str(config), "--nolock",
                           "-s", str(repo / "Snakefile"), str(target)], cwd=repo, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr[-5000:]
    data = ad.read_h5ad(tmp_path / "results/bulk/counts/dataset.h5ad")
    assert data.uns["degflow"]["counts"]["length_offset"] and "avg_tx_length" in data.layers
    res = pd.read_csv(target, sep="\t", index_col="gene_id")
    r = pd.read_csv(R_REF / "results_RAP1_UNINDUCED_vs_WT.tsv", sep="\t", index_col=0)
    r = r.loc[r.baseMean > 0]
    assert set(res.index) == set(r.index)
    for col in RESULT_COLUMNS:
        assert np.array_equal(res.loc[r.index, col].isna(), r[col].isna()), col
        np.testing.assert_allclose(res.loc[r.index, col].dropna(), r[col].dropna(), rtol=1e-8, err_msg=col)
