"""degflow.io.counts (and the readers it calls) on real quantifier outputs (tests/data/count_formats, resources/airway).

The files from repositories without a licence (two multi-sample featureCounts tables, four airway HTSeq files)
are not in the repository: the tests that read them use shared/data/count_formats (``cf_shared``: extended suite).

Reference numbers come from the SOURCE.md next to each dataset, from the quantifiers' own
summaries (featureCounts ``.summary``, salmon ``meta_info.json``, kallisto ``run_info.json``)
and from pytximport 0.13.0 run on the same files.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from degflow import DegflowInputError
from degflow.io.annotation import match_annotation, read_annotation
from degflow.io.counts import FORMATS, read_counts, sniff_format
from degflow.io.counttable import CountTable, collapse_replicates
from degflow.io.genecounts import strandedness_table
from degflow.io.quantifiers import read_tx2gene

pytximport = pytest.importorskip("pytximport")

AIRWAY = Path(__file__).resolve().parents[1] / "resources" / "airway"  # = shared/data/airway (the same bytes)
HTSEQ_SPECIALS = ["__no_feature", "__ambiguous", "__too_low_aQual", "__not_aligned", "__alignment_not_unique"]


@pytest.fixture(scope="module")
def cf(core_data: Path) -> Path:
    """The licensed quantifier outputs bundled in tests/data/count_formats (see its SOURCE.md)."""
    return core_data / "count_formats"


@pytest.fixture(scope="module")
def cf_shared(shared_data: Path) -> Path:
    """shared/data/count_formats: also the files from repositories without a licence (extended suite)."""
    return shared_data / "count_formats"


@pytest.fixture(scope="module")
def gencode_tx2gene(cf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GENCODE v27 tx2gene from RSEM's ``transcript_id(s)`` column (SOURCE.md section 4b)."""
    rsem = pd.read_csv(cf / "rsem/geuvadis_tximportData/ERR188021.genes.results.gz", sep="\t")
    t2g = (rsem.assign(transcript_id=rsem["transcript_id(s)"].str.split(","))
           .explode("transcript_id")[["transcript_id", "gene_id"]])
    path = tmp_path_factory.mktemp("tx2gene") / "gencode27_tx2gene.tsv"
    t2g.to_csv(path, sep="\t", index=False)
    return path


def _pytximport_counts(files: list[Path], data_type: str, tx2gene: object, **kwargs: object) -> pd.DataFrame:
    """pytximport's gene counts (genes x files) and lengths as DataFrames."""
    adata = pytximport.tximport([str(f) for f in files], data_type, tx2gene, **kwargs)
    counts = pd.DataFrame(np.asarray(adata.X).T, index=adata.var_names)
    lengths = pd.DataFrame(np.asarray(adata.obsm["length"]).T, index=adata.var_names)
    return counts, lengths


# ---------------------------------------------------------------------------------------------
# sniffing
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        ("featurecounts/human_single_sample_mbf/ignore_subread.tsv", "featurecounts"),
        ("htseq/htseq_repo_yeast_excerpt/yeast_RNASeq_excerpt_withNH_counts.tsv", "htseq"),
        ("htseq/htseq_repo_yeast_excerpt/yeast_RNASeq_excerpt_withNH_counts_twocolumns.tsv", "htseq"),
        ("htseq/htseq_repo_yeast_excerpt/yeast_RNASeq_excerpt_withNH_counts_additional_attributes.tsv", "htseq"),
        ("htseq/multiqc_additional_attr/WTCHG_536273_229157.tsv", "htseq"),
        ("star/mouse_tcell_bbcRNA/SRR7240735_1_trimmed_ReadsPerGene.out.tab.gz", "star"),
        ("salmon/yeast_nfcore_test/WT_REP1/quant.sf", "salmon"),
        ("salmon/yeast_nfcore_test/WT_REP1", "salmon"),
        ("salmon/geuvadis_tximportData/ERR188021/quant.sf.gz", "salmon"),
        ("kallisto/kallisto_test_pytximport/abundance.h5", "kallisto"),
        ("kallisto/kallisto_test_pytximport/abundance_1.tsv", "kallisto"),
        ("kallisto/kallisto_test_pytximport", "kallisto"),
        ("rsem/geuvadis_tximportData/ERR188021.genes.results.gz", "rsem"),
        (str(AIRWAY / "counts.tsv"), "matrix"),
    ],
    ids=lambda v: v.split("/")[-1] if "/" in v else v,
)
def test_sniff_format(cf: Path, relpath: str, expected: str) -> None:
    assert expected in FORMATS
    assert sniff_format(cf / relpath) == expected


@pytest.mark.parametrize(
    ("relpath", "expected"),
    [
        ("featurecounts/yeast_snf2_bootcamp/counts.txt", "featurecounts"),
        ("featurecounts/yeast_rrp6_GSE135056/counts.txt", "featurecounts"),
        ("htseq/airway_GSE52778/SRR1039508_all_counts.txt", "htseq"),
    ],
    ids=lambda v: v.split("/")[-1] if "/" in v else v,
)
def test_sniff_format_unlicensed_files(cf_shared: Path, relpath: str, expected: str) -> None:
    test_sniff_format(cf_shared, relpath, expected)


# ---------------------------------------------------------------------------------------------
# matrix
# ---------------------------------------------------------------------------------------------


def test_matrix_airway(caplog: pytest.LogCaptureFixture) -> None:
    """airway/SOURCE.md: 64102 x 8, library sizes, apeglm-vignette first row, 33469 nonzero genes."""
    with caplog.at_level(logging.INFO, logger="degflow"):
        ct = read_counts(AIRWAY / "counts.tsv")
    assert "auto-detected format matrix" in caplog.text
    assert isinstance(ct, CountTable)
    assert ct.format == "matrix"
    assert ct.counts.shape == (64102, 8)
    assert ct.counts.index.name == "gene_id"
    assert (ct.counts.dtypes == np.int64).all()
    assert ct.counts.sum().tolist() == [20637971, 18809481, 25348649, 15163415, 24448408, 30818215, 19126151,
                                        21164133]
    assert ct.counts.loc["ENSG00000000003"].tolist() == [679, 448, 873, 408, 1138, 1047, 770, 572]
    assert int((ct.counts.sum(axis=1) > 0).sum()) == 33469
    assert ct.gene_names is None and ct.qc is None


def test_matrix_csv_gene_names_and_integral_floats(tmp_path: Path) -> None:
    path = tmp_path / "counts.csv"
    path.write_text("gene_id,symbol,A,B\nENSG1,ACT1,1,2.0\nENSG2,,3,4\n")
    ct = read_counts(path)
    assert ct.counts.to_dict() == {"A": {"ENSG1": 1, "ENSG2": 3}, "B": {"ENSG1": 2, "ENSG2": 4}}
    assert ct.gene_names["ENSG1"] == "ACT1" and pd.isna(ct.gene_names["ENSG2"])
    path2 = tmp_path / "counts2.tsv"
    path2.write_text("id\tS1\tdescription\tS2\ng1\t5\tactin\t6\n")
    ct2 = read_counts(path2, gene_name_column="description")
    assert list(ct2.counts.columns) == ["S1", "S2"] and ct2.gene_names["g1"] == "actin"
    path3 = tmp_path / "write_table.txt"  # R write.table(): header one field short, quoted
    path3.write_text('"A"\t"B"\n"g1"\t1\t2\n"g2"\t3\t4\n')
    assert read_counts(path3).counts.to_dict() == {"A": {"g1": 1, "g2": 3}, "B": {"g1": 2, "g2": 4}}


# ---------------------------------------------------------------------------------------------
# featureCounts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "shape", "first_samples", "strandedness"),
    [("human_single_sample_mbf/ignore_subread.tsv", (61541, 1), ["input"], "unstranded")],
    ids=["mbf"],
)
def test_featurecounts(cf: Path, folder: str, shape: tuple[int, int], first_samples: list[str],
                       strandedness: str) -> None:
    """SOURCE.md shapes; column sums equal the Assigned row of featureCounts' own .summary."""
    path = cf / "featurecounts" / folder
    ct = read_counts(path)
    assert ct.format == "featurecounts"
    assert ct.counts.shape == shape
    assert list(ct.counts.columns[: len(first_samples)]) == first_samples
    header = pd.read_csv(path, sep="\t", comment="#", nrows=0).columns[6:].tolist()
    assert list(ct.source["bam_names"].values()) == header
    assert ct.source["strandedness"] == strandedness
    summary = pd.read_csv(str(path) + ".summary", sep="\t", index_col=0)
    assert ct.qc["assigned"].tolist() == summary.loc["Assigned", header].tolist()
    assert ct.counts.sum().tolist() == summary.loc["Assigned", header].tolist()
    rate = summary.loc["Assigned", header] / summary[header].sum()
    np.testing.assert_allclose(ct.qc["assignment_rate"].to_numpy(), rate.to_numpy(), rtol=1e-12)
    assert "Unassigned_NoFeatures" in ct.qc.columns


@pytest.mark.parametrize(
    ("folder", "shape", "first_samples", "strandedness"),
    [
        ("yeast_snf2_bootcamp/counts.txt", (5292, 12), ["mutant-01", "mutant-02"], "unstranded"),
        ("yeast_rrp6_GSE135056/counts.txt", (7127, 24), ["WT_1A", "WT_1B"], "reverse"),
    ],
    ids=["snf2", "rrp6"],
)
def test_featurecounts_unlicensed_files(cf_shared: Path, folder: str, shape: tuple[int, int],
                                        first_samples: list[str], strandedness: str) -> None:
    test_featurecounts(cf_shared, folder, shape, first_samples, strandedness)


def test_featurecounts_values_and_semicolon_rows(cf_shared: Path) -> None:
    ct = read_counts(cf_shared / "featurecounts/yeast_rrp6_GSE135056/counts.txt", format="featurecounts")
    assert ct.source["paired_end"] is True and ct.source["version"] == "2.1.1"
    assert ct.counts.loc["YDL246C"].tolist()[:4] == [10, 5, 6, 2]
    assert ct.counts.columns[-1] == "rrp6_4C"


def test_featurecounts_status_rows(cf: Path) -> None:
    mbf = read_counts(cf / "featurecounts/human_single_sample_mbf/ignore_subread.tsv")
    assert mbf.qc.loc["input", ["assigned", "Unassigned_MultiMapping", "Unassigned_NoFeatures",
                                "Unassigned_Ambiguity"]].tolist() == [174877, 101565, 2254, 37357]
    assert mbf.qc.loc["input", "assignment_rate"] == pytest.approx(174877 / 316053)


def test_featurecounts_per_sample_mapping(cf: Path) -> None:
    path = cf / "featurecounts/human_single_sample_mbf/ignore_subread.tsv"
    ct = read_counts({"patient1": path})
    assert list(ct.counts.columns) == ["patient1"]
    assert ct.source["bam_names"] == {"patient1": "input.bam"}
    assert int(ct.qc.loc["patient1", "assigned"]) == 174877


# ---------------------------------------------------------------------------------------------
# HTSeq-count
# ---------------------------------------------------------------------------------------------


def test_htseq_airway(cf_shared: Path) -> None:
    """SOURCE.md 2a: 57,773 genes then the 5 special rows, which go to qc."""
    folder = cf_shared / "htseq/airway_GSE52778"
    files = {p.name.split("_")[0]: p for p in sorted(folder.glob("*_all_counts.txt"))}
    ct = read_counts(files)
    assert ct.format == "htseq"
    assert ct.counts.shape == (57773, 4)
    assert list(ct.counts.columns) == ["SRR1039508", "SRR1039509", "SRR1039512", "SRR1039513"]
    assert not ct.counts.index.str.startswith("__").any()
    assert ct.counts.loc["ENSG00000000003", "SRR1039508"] == 667
    assert ct.qc.loc["SRR1039508", HTSEQ_SPECIALS].tolist() == [2048439, 609790, 0, 0, 6029848]
    raw = pd.read_csv(files["SRR1039508"], sep="\t", header=None, index_col=0)[1]
    assert ct.qc.loc["SRR1039508", "assigned"] == raw[~raw.index.str.startswith("__")].sum()


def test_htseq_additional_attributes(cf: Path) -> None:
    """SOURCE.md 2b: the exon_number column is numeric but is not the count; counts are the last columns."""
    folder = cf / "htseq/htseq_repo_yeast_excerpt"
    plain = read_counts(folder / "yeast_RNASeq_excerpt_withNH_counts.tsv")
    attrs = read_counts(folder / "yeast_RNASeq_excerpt_withNH_counts_additional_attributes.tsv")
    two = read_counts(folder / "yeast_RNASeq_excerpt_withNH_counts_twocolumns.tsv")
    assert plain.counts.shape == (7124, 1)
    np.testing.assert_array_equal(attrs.counts.to_numpy(), plain.counts.to_numpy())
    assert two.counts.shape == (7124, 2)
    np.testing.assert_array_equal(two.counts.iloc[:, 0].to_numpy(), two.counts.iloc[:, 1].to_numpy())
    np.testing.assert_array_equal(two.counts.iloc[:, 0].to_numpy(), plain.counts.iloc[:, 0].to_numpy())
    for ct in (plain, attrs, two):
        assert ct.qc.iloc[0][HTSEQ_SPECIALS].tolist() == [1444, 48, 0, 1336, 2]
    assert attrs.gene_names is not None and two.gene_names.notna().any()


def test_htseq_duplicated_names_keyed_on_id(cf: Path) -> None:
    """SOURCE.md 2c: 3,551 features; names such as aceK repeat, IDs do not."""
    ct = read_counts(cf / "htseq/multiqc_additional_attr/WTCHG_536273_229157.tsv")
    assert ct.counts.shape == (3551, 1)
    assert ct.counts.index.is_unique
    assert (ct.gene_names == "aceK").sum() > 1
    assert ct.qc.iloc[0]["__no_feature"] == 318545
    assert ct.counts.loc["gene-PSHA_p0013"].iloc[0] == 822


def test_htseq_old_special_names(cf: Path, tmp_path: Path) -> None:
    """HTSeq < 0.5.4 wrote the special rows without the leading underscores."""
    src = cf / "htseq/htseq_repo_yeast_excerpt/yeast_RNASeq_excerpt_withNH_counts.tsv"
    old = tmp_path / "old.counts"
    old.write_text("".join(line.removeprefix("__") for line in src.read_text().splitlines(keepends=True)))
    ct = read_counts({"s1": old}, format="htseq")
    assert ct.counts.shape == (7124, 1)
    assert ct.qc.loc["s1", "__no_feature"] == 1444


# ---------------------------------------------------------------------------------------------
# STAR
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def star_files(cf: Path) -> list[Path]:
    return sorted((cf / "star/mouse_tcell_bbcRNA").glob("*_ReadsPerGene.out.tab.gz"))


def test_star_auto_strandedness(star_files: list[Path]) -> None:
    """SOURCE.md 3: column 3 is correct; SRR7240735 gene totals 9.78 M / 10.07 M / 0.41 M, N_noFeature
    0.76 M / 0.83 M / 10.65 M; nf-core's rule (>= 0.8 of column 3 + 4) calls it forward."""
    ct = read_counts(star_files)
    assert ct.format == "star"
    assert ct.counts.shape == (50600, 8)
    assert ct.counts.columns[0] == "SRR7240735_1_trimmed"
    ev = ct.source["strandedness"]["SRR7240735_1_trimmed"]
    assert {e["chosen"] for e in ct.source["strandedness"].values()} == {"forward"}
    assert ct.source["strandedness_consistent"] is True
    assert ev["column"] == 3 and ev["inferred"] == "forward" and ev["forward_share"] > 0.95
    assert [round(v / 1e6, 2) for v in ev["gene_totals"].values()] == [9.78, 10.07, 0.41]
    assert [round(v / 1e6, 2) for v in ev["N_noFeature"].values()] == [0.76, 0.83, 10.65]
    assert ct.counts["SRR7240735_1_trimmed"].sum() == ev["gene_totals"]["forward"]
    assert ct.qc.loc["SRR7240735_1_trimmed", ["N_unmapped", "N_multimapping", "N_noFeature"]].tolist() == [
        317834, 6574826, 831724]
    assert ct.counts.index[0] == "ENSMUSG00000102693.1"


def test_star_explicit_and_mixed_strandedness(star_files: list[Path], tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="degflow"):
        rev = read_counts({"a": star_files[0]}, strandedness="reverse")
    assert rev.counts["a"].sum() == 414129
    assert "set to reverse but the counts look forward" in caplog.text
    # a reverse-stranded copy (columns 3 and 4 swapped) and an unstranded-looking copy (3 == 4)
    table = pd.read_csv(star_files[0], sep="\t", header=None)
    swapped = table[[0, 1, 3, 2]]
    swapped.to_csv(tmp_path / "swap_ReadsPerGene.out.tab", sep="\t", header=False, index=False)
    flat = table[[0, 1, 1, 1]]
    flat.to_csv(tmp_path / "flat_ReadsPerGene.out.tab", sep="\t", header=False, index=False)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="degflow"):
        ct = read_counts({"fwd": star_files[0], "rev": tmp_path / "swap_ReadsPerGene.out.tab",
                          "flat": tmp_path / "flat_ReadsPerGene.out.tab"})
    chosen = {s: e["chosen"] for s, e in ct.source["strandedness"].items()}
    assert chosen == {"fwd": "forward", "rev": "reverse", "flat": "unstranded"}
    assert ct.source["strandedness_consistent"] is False
    assert "differ in strandedness" in caplog.text
    assert (ct.counts["fwd"] == ct.counts["rev"]).all()
    assert ct.counts["flat"].sum() == 9775873
    per_sample = read_counts({"a": star_files[0]}, strandedness={"a": "unstranded"})
    assert per_sample.counts["a"].sum() == 9775873
    # column 3 share 0.7: neither >= 0.8 nor within 0.1 of column 4 -> undetermined: an error under auto,
    # column 2 (with a warning) only under auto_or_unstranded
    undet = table.copy()
    undet[3] = (undet[2] * 3 / 7).round().astype(int)
    undet.to_csv(tmp_path / "undet_ReadsPerGene.out.tab", sep="\t", header=False, index=False)
    with pytest.raises(DegflowInputError, match=r"undet_ReadsPerGene\.out\.tab: cannot infer the strandedness of "
                                                 r"sample 'undet' \(column 3 \(forward\) holds 0\.700 and column 4 "
                                                 r"\(reverse\) 0\.300 .*auto_or_unstranded"):
        read_counts([tmp_path / "undet_ReadsPerGene.out.tab"])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="degflow"):
        ct = read_counts([tmp_path / "undet_ReadsPerGene.out.tab"], strandedness="auto_or_unstranded")
    ev = ct.source["strandedness"]["undet"]
    assert (ev["inferred"], ev["chosen"], ev["column"]) == ("undetermined", "unstranded", 2)
    assert ev["forward_share"] == pytest.approx(0.7, abs=1e-3)
    assert "strandedness undetermined" in caplog.text


# ---------------------------------------------------------------------------------------------
# salmon / kallisto / RSEM
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def geuvadis(cf: Path, gencode_tx2gene: Path) -> tuple[dict[str, Path], CountTable]:
    folder = cf / "salmon/geuvadis_tximportData"
    files = {"ERR188021": folder / "ERR188021", "ERR188088": folder / "ERR188088" / "quant.sf.gz"}
    return files, read_counts(files, tx2gene=gencode_tx2gene)


def test_salmon_geuvadis(geuvadis: tuple[dict[str, Path], CountTable], gencode_tx2gene: Path) -> None:
    """SOURCE.md 4b: NumReads totals 28.69 M (= num_mapped 28,694,462) and 23.72 M; pytximport agrees."""
    files, ct = geuvadis
    assert ct.format == "salmon"
    assert ct.counts.shape == (58288, 2)
    assert ct.source["ids_version_stripped"] is False
    assert ct.qc.loc["ERR188021", "num_mapped"] == 28694462
    assert ct.counts["ERR188021"].sum() == pytest.approx(28_694_462, rel=1e-4)
    assert ct.counts["ERR188088"].sum() / 1e6 == pytest.approx(23.72, abs=0.005)
    assert ct.counts.index.str.endswith("_PAR_Y").sum() == 45
    px_counts, px_lengths = _pytximport_counts([files["ERR188021"] / "quant.sf.gz", files["ERR188088"]], "salmon",
                                               str(gencode_tx2gene), ignore_transcript_version=False)
    px_counts.columns = px_lengths.columns = list(files)
    assert set(px_counts.index) == set(ct.counts.index)
    np.testing.assert_array_equal(np.rint(px_counts.loc[ct.counts.index].to_numpy()), ct.counts.to_numpy())
    np.testing.assert_allclose(px_lengths.loc[ct.counts.index].to_numpy(), ct.lengths.to_numpy(), rtol=1e-9)


def test_versioned_ids_stripped_when_that_matches(geuvadis: tuple[dict[str, Path], CountTable],
                                                  gencode_tx2gene: Path, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """tx2gene without versions vs versioned quant.sf: stripped on both sides, _PAR_Y copies kept apart."""
    files, ref = geuvadis
    t2g = pd.read_csv(gencode_tx2gene, sep="\t")
    t2g["transcript_id"] = t2g["transcript_id"].str.replace(r"\.\d+(?=(_PAR_Y)?$)", "", regex=True)
    assert t2g["transcript_id"].is_unique
    path = tmp_path / "tx2gene_unversioned.tsv"
    t2g.to_csv(path, sep="\t", index=False)
    with caplog.at_level(logging.WARNING, logger="degflow"):
        ct = read_counts({"ERR188021": files["ERR188021"]}, tx2gene=path)
    assert ct.source["ids_version_stripped"] is True
    assert "differ in version suffixes" in caplog.text
    pd.testing.assert_series_equal(ct.counts["ERR188021"], ref.counts["ERR188021"])


def test_salmon_yeast_gtf_tx2gene(cf: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """SOURCE.md 4a: 5 samples x 125 transcripts (= genes); Gfp_transgene_gene is not in the GTF."""
    folders = sorted(p for p in (cf / "salmon/yeast_nfcore_test").iterdir() if p.is_dir())
    quant = pd.read_csv(folders[0] / "quant.sf", sep="\t")
    genes = [n for n in quant["Name"] if n != "Gfp_transgene_gene"]
    gtf = tmp_path / "genes.gtf"
    gtf.write_text("#!genome-build R64-1-1\n" + "".join(
        f'I\tsgd\texon\t{100 * i + 1}\t{100 * i + 50}\t.\t+\t.\tgene_id "{g}"; transcript_id "{g}"; '
        f'gene_name "N{i}"; gene_biotype "protein_coding";\n' for i, g in enumerate(genes)))
    with caplog.at_level(logging.WARNING, logger="degflow"):
        ct = read_counts(folders, tx2gene=gtf)
    assert list(ct.counts.columns) == [p.name for p in folders]
    assert ct.counts.shape == (124, 5)
    assert "Gfp_transgene_gene" in caplog.text
    assert ct.source["unmapped_transcripts"]["examples"] == ["Gfp_transgene_gene"]
    # GFP has no reads in these libraries: nothing is lost, and the warning says so
    assert "1 of 125 transcripts" in caplog.text and "0 of them with reads" in caplog.text
    assert (ct.qc["tx2gene_unmapped_reads"] == 0).all()
    wt = pd.read_csv(cf / "salmon/yeast_nfcore_test/WT_REP1/quant.sf", sep="\t", index_col="Name")
    np.testing.assert_array_equal(ct.counts["WT_REP1"].to_numpy(), np.rint(wt.loc[genes, "NumReads"]).to_numpy())
    assert ct.gene_names[genes[0]] == "N0"
    px_counts, _ = _pytximport_counts([p / "quant.sf" for p in folders], "salmon",
                                      pd.DataFrame({"transcript_id": genes, "gene_id": genes}))
    np.testing.assert_array_equal(np.rint(px_counts.loc[ct.counts.index].to_numpy()), ct.counts.to_numpy())


@pytest.mark.parametrize("name", ["abundance.h5", "abundance_1.tsv"])
def test_kallisto(cf: Path, gencode_tx2gene: Path, name: str) -> None:
    """SOURCE.md 4c + run_info.json: 9,413 of 10,000 reads pseudoaligned; all 14 targets are GENCODE v27
    transcripts, ENSG00000168671.9 = 102.328 + 1592.02 + 68.6528 = 1763 reads."""
    path = cf / "kallisto/kallisto_test_pytximport" / name
    ct = read_counts({"test": path}, tx2gene=gencode_tx2gene)
    assert ct.format == "kallisto"
    assert ct.counts.shape == (10, 1)
    assert ct.counts.loc["ENSG00000168671.9", "test"] == 1763
    assert ct.counts["test"].sum() == 9413
    assert ct.qc.loc["test", "num_mapped"] == 9413
    assert ct.qc.loc["test", "assignment_rate"] == pytest.approx(0.9413)
    px_counts, px_lengths = _pytximport_counts([path], "kallisto", str(gencode_tx2gene),
                                               ignore_transcript_version=False)
    np.testing.assert_array_equal(np.rint(px_counts.loc[ct.counts.index, 0]).to_numpy(), ct.counts["test"].to_numpy())
    np.testing.assert_allclose(px_lengths.loc[ct.counts.index, 0].to_numpy(), ct.lengths["test"].to_numpy(),
                               rtol=1e-6)


def test_unversioned_quant_against_versioned_tx2gene(cf: Path, gencode_tx2gene: Path, tmp_path: Path) -> None:
    src = pd.read_csv(cf / "kallisto/kallisto_test_pytximport/abundance_1.tsv", sep="\t")
    src["target_id"] = src["target_id"].str.replace(r"\.\d+$", "", regex=True)
    (tmp_path / "s1").mkdir()
    src.to_csv(tmp_path / "s1" / "abundance.tsv", sep="\t", index=False)
    ct = read_counts([tmp_path / "s1"], tx2gene=gencode_tx2gene)
    assert list(ct.counts.columns) == ["s1"]
    assert ct.source["ids_version_stripped"] is True
    assert ct.counts.loc["ENSG00000168671.9", "s1"] == 1763


def test_rsem_genes_results(cf: Path) -> None:
    """SOURCE.md 5: 58,288 versioned genes (45 _PAR_Y), fractional expected_count totalling ~36.6 k."""
    path = cf / "rsem/geuvadis_tximportData/ERR188021.genes.results.gz"
    ct = read_counts(path)
    assert ct.format == "rsem"
    assert list(ct.counts.columns) == ["ERR188021"]
    assert ct.counts.shape == (58288, 1)
    assert ct.counts.index.str.endswith("_PAR_Y").sum() == 45
    raw = pd.read_csv(path, sep="\t", index_col="gene_id")["expected_count"]
    assert raw.sum() / 1e3 == pytest.approx(36.6, abs=0.05)
    np.testing.assert_array_equal(ct.counts["ERR188021"].to_numpy(), np.rint(raw.to_numpy()))
    adata = pytximport.tximport([str(path)], "rsem", gene_level=True, ignore_transcript_version=False)
    px = pd.Series(np.asarray(adata.X)[0], index=adata.var_names)
    np.testing.assert_array_equal(np.rint(px.loc[ct.counts.index].to_numpy()), ct.counts["ERR188021"].to_numpy())


def test_rsem_isoforms_use_their_gene_column(tmp_path: Path) -> None:
    path = tmp_path / "s1.isoforms.results"
    path.write_text("transcript_id\tgene_id\tlength\teffective_length\texpected_count\tTPM\tFPKM\tIsoPct\n"
                    "T1\tG1\t1000\t850.0\t10.4\t5.0\t4.0\t50.0\n"
                    "T2\tG1\t2000\t1850.0\t2.5\t1.0\t0.8\t50.0\n"
                    "T3\tG2\t500\t350.0\t7.5\t3.0\t2.0\t100.0\n")
    ct = read_counts(path)
    assert ct.format == "rsem"
    assert ct.counts.to_dict() == {"s1": {"G1": 13, "G2": 8}}  # 12.9 -> 13; 7.5 -> 8 (half to even)
    assert ct.lengths.loc["G1", "s1"] == pytest.approx((5.0 * 850 + 1.0 * 1850) / 6.0)


# ---------------------------------------------------------------------------------------------
# annotation and tx2gene
# ---------------------------------------------------------------------------------------------


def test_read_annotation_tsv() -> None:
    """airway/SOURCE.md: 35,329 of 64,102 IDs map to a symbol."""
    ann = read_annotation(AIRWAY / "genes.tsv")
    assert ann.shape[0] == 64102 and ann.index.name == "gene_id"
    assert int(ann["gene_name"].notna().sum()) == 35329
    assert ann.loc["ENSG00000000003", "gene_name"] == "TSPAN6"


def test_read_annotation_gtf(tmp_path: Path) -> None:
    lines = [
        '1\tensembl\tgene\t1\t100\t.\t+\t.\tgene_id "G1"; gene_name "ACT1"; gene_biotype "protein_coding";',
        '1\tensembl\texon\t1\t50\t.\t+\t.\tgene_id "G1"; transcript_id "T1"; gene_name "ACT1";',
        '1\tensembl\tgene\t200\t300\t.\t-\t.\tgene_id "G2"; gene_biotype "lncRNA";',
    ]
    gtf = tmp_path / "a.gtf"
    gtf.write_text("#!genome-build test\n" + "\n".join(lines) + "\n")
    ann = read_annotation(gtf)
    assert ann.index.tolist() == ["G1", "G2"]
    assert ann.loc["G1", "gene_name"] == "ACT1" and pd.isna(ann.loc["G2", "gene_name"])
    assert ann.loc["G2", "gene_biotype"] == "lncRNA"
    exons = tmp_path / "exons.gtf.gz"
    exons.write_bytes(gzip.compress((lines[1] + "\n").encode()))
    assert read_annotation(exons).loc["G1", "gene_name"] == "ACT1"
    t2g = read_tx2gene(gtf)
    assert t2g.to_dict("records") == [{"transcript_id": "T1", "gene_id": "G1", "gene_name": "ACT1"}]


# ---------------------------------------------------------------------------------------------
# bad input: one clear DegflowInputError each
# ---------------------------------------------------------------------------------------------


BAD_MATRICES = {
    "non_integer": ("gene_id\tA\tB\ng1\t1\t2.5\ng2\t3\t4\n",
                    r"bad\.tsv: non-integer count 2\.5 for gene 'g1', sample 'B'; counts must be integers: "
                    r"for salmon/kallisto estimates use format: salmon/kallisto with tx2gene"),
    "negative": ("gene_id\tA\tB\ng1\t1\t2\ng2\t-3\t4\n", r"bad\.tsv: negative count -3 for gene 'g2', sample 'A'"),
    "duplicate_ids": ("gene_id\tA\ng1\t1\ng2\t3\ng1\t5\ng2\t1\n", r"bad\.tsv: duplicate gene IDs \('g1', 'g2'"),
    "empty": ("", r"bad\.tsv: the file is empty"),
    "na": ("gene_id\tA\tB\ng1\t1\tNA\ng2\t3\t4\n", r"bad\.tsv: missing value \(NA/empty\) for gene 'g1', sample 'B'"),
    "blank_cell": ("gene_id\tA\tB\ng1\t1\t2\ng2\t\t4\n", r"missing value \(NA/empty\) for gene 'g2', sample 'A'"),
    "not_a_number": ("gene_id\tA\ng1\tten\n", r"value 'ten' for gene 'g1', sample 'A' is not a number"),
    "header_only": ("gene_id\tA\tB\n", r"bad\.tsv: no gene rows found"),
    "duplicate_sample": ("gene_id\tA\tA\ng1\t1\t2\n", r"sample column 'A' appears more than once"),
}


@pytest.mark.parametrize("case", list(BAD_MATRICES), ids=list(BAD_MATRICES))
def test_bad_matrix(tmp_path: Path, case: str) -> None:
    text, match = BAD_MATRICES[case]
    path = tmp_path / "bad.tsv"
    path.write_text(text)
    with pytest.raises(DegflowInputError, match=match):
        read_counts(path, format="matrix" if case != "empty" else "auto")


def test_no_sample_columns(tmp_path: Path) -> None:
    path = tmp_path / "ids.tsv"
    path.write_text("gene_id\ng1\ng2\n")
    with pytest.raises(DegflowInputError, match=r"ids\.tsv: no sample columns found"):
        read_counts(path, format="matrix")


def test_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "variants.vcf"
    path.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\n")
    with pytest.raises(DegflowInputError, match=r"unrecognised count format; known formats are matrix, "
                                                 r"featurecounts, htseq, star, salmon, kallisto, rsem "
                                                 r"\(first line: '##fileformat=VCFv4\.2'\)"):
        read_counts(path)
    with pytest.raises(DegflowInputError, match=r"format 'cufflinks' is unknown"):
        read_counts(path, format="cufflinks")


def test_tx2gene_mismatch(cf: Path, tmp_path: Path) -> None:
    t2g = tmp_path / "mouse_tx2gene.tsv"
    t2g.write_text("transcript_id\tgene_id\nENSMUST00000000001.4\tENSMUSG00000000001.4\n")
    quant = cf / "salmon/yeast_nfcore_test/WT_REP1"
    with pytest.raises(DegflowInputError, match=r"none of the 125 transcript IDs in .*WT_REP1/quant\.sf are in the "
                                                 r"tx2gene .*mouse_tx2gene\.tsv.*'YAL069W'.*'ENSMUST00000000001\.4'"):
        read_counts({"WT_REP1": quant}, tx2gene=t2g)
    with pytest.raises(DegflowInputError, match=r"salmon quantifies transcripts; give tx2gene"):
        read_counts({"WT_REP1": quant})


def test_samples_with_different_genes(cf: Path, tmp_path: Path) -> None:
    src = cf / "htseq/htseq_repo_yeast_excerpt/yeast_RNASeq_excerpt_withNH_counts.tsv"
    short = tmp_path / "short.tsv"
    short.write_text("".join(src.read_text().splitlines(keepends=True)[1:]))
    with pytest.raises(DegflowInputError, match=r"short\.tsv: gene IDs differ from .*same annotation"):
        read_counts({"a": src, "b": short})


def test_bad_strandedness_and_multicolumn_htseq(cf: Path) -> None:
    star = cf / "star/mouse_tcell_bbcRNA/SRR7240735_1_trimmed_ReadsPerGene.out.tab.gz"
    with pytest.raises(DegflowInputError, match=r"strandedness 'sense' .* is not one of auto, auto_or_unstranded, "
                                                 r"unstranded"):
        read_counts({"a": star}, strandedness="sense")
    two = cf / "htseq/htseq_repo_yeast_excerpt/yeast_RNASeq_excerpt_withNH_counts_twocolumns.tsv"
    with pytest.raises(DegflowInputError, match=r"holds 2 count columns .* pass this file on its own"):
        read_counts({"a": two})


def test_mixed_formats(cf: Path) -> None:
    with pytest.raises(DegflowInputError, match=r"count files are in different formats"):
        read_counts({"a": cf / HTSEQ_YEAST,
                     "b": cf / "star/mouse_tcell_bbcRNA/SRR7240735_1_trimmed_ReadsPerGene.out.tab.gz"})


# ---------------------------------------------------------------------------------------------
# issue 9, bad input: each gets its own message (library level; tests/test_formats_workflow.py
# checks the same through plan_bulk and snakemake)
# ---------------------------------------------------------------------------------------------

STAR_735 = "star/mouse_tcell_bbcRNA/SRR7240735_1_trimmed_ReadsPerGene.out.tab.gz"
HTSEQ_YEAST = "htseq/htseq_repo_yeast_excerpt/yeast_RNASeq_excerpt_withNH_counts.tsv"

DECLARED_AS_OTHER = {
    # file, declared format, what the message says the file looks like
    "star_as_htseq": (STAR_735, "htseq", r"format htseq was set but the file looks like a STAR ReadsPerGene\.out\.tab "
                                         r"\(first row N_unmapped\), first line 'N_unmapped\\t317834.*set "
                                         r"bulk\.counts\.format to star"),
    "htseq_as_star": (HTSEQ_YEAST, "star", r"format star was set but the file looks like htseq-count output"),
    "featurecounts_as_matrix": ("featurecounts/human_single_sample_mbf/ignore_subread.tsv", "matrix",
                                r"format matrix was set but the file looks like featureCounts output"),
    "salmon_as_kallisto": ("salmon/yeast_nfcore_test/WT_REP1", "kallisto",
                           r"WT_REP1: format kallisto was set but the file looks like a salmon quant\.sf"),
    "matrix_as_featurecounts": (str(AIRWAY / "counts.tsv"), "featurecounts",
                                r"format featurecounts was set but the file looks like a plain table, first line "
                                r"'gene_id\\tSRR1039508.*set bulk\.counts\.format to matrix"),
    "htseq_as_matrix": (HTSEQ_YEAST, "matrix", r"format matrix was set but the file looks like htseq-count output"),
    "rsem_as_salmon": ("rsem/geuvadis_tximportData/ERR188021.genes.results.gz", "salmon",
                       r"looks like an RSEM \*\.genes\.results"),
}


@pytest.mark.parametrize("case", list(DECLARED_AS_OTHER), ids=list(DECLARED_AS_OTHER))
def test_file_declared_as_another_format(cf: Path, case: str) -> None:
    rel, declared, match = DECLARED_AS_OTHER[case]
    with pytest.raises(DegflowInputError, match=match):
        read_counts({"s1": cf / rel} if declared not in ("matrix", "featurecounts") else cf / rel, format=declared)


def test_mixed_formats_with_a_declared_format(cf: Path) -> None:
    """Every file is checked, not only the first: one HTSeq file among STAR files is named."""
    files = {"a": cf / STAR_735, "b": cf / HTSEQ_YEAST}
    with pytest.raises(DegflowInputError, match=r"withNH_counts\.tsv: format star was set but the file looks like "
                                                 r"htseq-count output"):
        read_counts(files, format="star")


def test_htseq_without_its_special_rows(cf: Path, tmp_path: Path) -> None:
    lines = (cf / HTSEQ_YEAST).read_text().splitlines(keepends=True)
    assert [ln.split("\t")[0] for ln in lines[-5:]] == HTSEQ_SPECIALS
    none = tmp_path / "none.counts"
    none.write_text("".join(lines[:-5]))
    with pytest.raises(DegflowInputError, match=r"none\.counts: has none of htseq-count's 5 summary rows \(missing "
                                                 r"__no_feature, __ambiguous, .*give the unmodified htseq-count file"):
        read_counts({"s1": none})  # auto: a header-less ID + count table is taken for HTSeq, then refused
    one = tmp_path / "one.counts"
    one.write_text("".join(lines[:-3] + lines[-2:]))  # __too_low_aQual removed
    with pytest.raises(DegflowInputError, match=r"one\.counts: lacks 1 of htseq-count's 5 summary rows \(missing "
                                                r"__too_low_aQual\)"):
        read_counts({"s1": one}, format="htseq")


def test_htseq_duplicated_genes(cf: Path, tmp_path: Path) -> None:
    lines = (cf / HTSEQ_YEAST).read_text().splitlines(keepends=True)
    dup = tmp_path / "dup.counts"
    dup.write_text("".join(lines[:10] + lines[5:6] + lines[10:]))
    gene = lines[5].split("\t")[0]
    with pytest.raises(DegflowInputError, match=rf"dup\.counts: duplicate gene IDs \('{gene}'; 1 IDs occur more than "
                                                r"once\)"):
        read_counts({"s1": dup})


def test_star_with_fewer_than_4_columns(cf: Path, tmp_path: Path) -> None:
    table = pd.read_csv(cf / STAR_735, sep="\t", header=None)
    three = tmp_path / "s1_ReadsPerGene.out.tab"
    table[[0, 1, 2]].to_csv(three, sep="\t", header=False, index=False)
    with pytest.raises(DegflowInputError, match=r"s1_ReadsPerGene\.out\.tab: STAR ReadsPerGene\.out\.tab has 4 "
                                                r"columns \(gene, unstranded, forward, reverse\), found 3"):
        read_counts([three])


def test_tx2gene_missing_transcripts_that_carry_reads(cf: Path, gencode_tx2gene: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """kallisto run_info/abundance: ENSG00000168671.9's 3 transcripts hold 102.328 + 1592.02 + 68.6528 reads;
    a tx2gene without them loses exactly those reads, and says so (warning, QC, source)."""
    path = cf / "kallisto/kallisto_test_pytximport/abundance_1.tsv"
    abundance = pd.read_csv(path, sep="\t", index_col="target_id")
    t2g = pd.read_csv(gencode_tx2gene, sep="\t")
    gone = t2g.loc[t2g.gene_id == "ENSG00000168671.9", "transcript_id"]
    lost = float(abundance.loc[abundance.index.isin(gone), "est_counts"].sum())
    assert lost == pytest.approx(1763.0, abs=0.01)
    short = tmp_path / "tx2gene_short.tsv"
    t2g[t2g.gene_id != "ENSG00000168671.9"].to_csv(short, sep="\t", index=False)
    with caplog.at_level(logging.WARNING, logger="degflow"):
        ct = read_counts({"test": path}, tx2gene=short)
    assert "ENSG00000168671.9" not in ct.counts.index
    assert ct.counts["test"].sum() == 9413 - 1763
    assert f"3 of 14 transcripts in {path} have no gene in {short}" in caplog.text
    assert "3 of them with reads" in caplog.text and "losing 1763 estimated reads in total" in caplog.text
    assert "up to 18.73% of a sample's reads, in test" in caplog.text
    assert ct.qc.loc["test", "tx2gene_unmapped_reads"] == pytest.approx(lost)
    assert ct.qc.loc["test", "tx2gene_unmapped_fraction"] == pytest.approx(lost / abundance["est_counts"].sum())


# ---------------------------------------------------------------------------------------------
# gzip and Windows line endings must just work (SOURCE.md: no fixture has CRLF, so they are made here)
# ---------------------------------------------------------------------------------------------


def _rewrite(src: Path, dst: Path, *, crlf: bool, gz: bool) -> Path:
    data = gzip.decompress(src.read_bytes()) if src.name.endswith(".gz") else src.read_bytes()
    if crlf:
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(gzip.compress(data) if gz else data)
    return dst


@pytest.mark.parametrize(("crlf", "gz"), [(True, False), (False, True), (True, True)],
                         ids=["crlf", "gzip", "crlf+gzip"])
@pytest.mark.parametrize("fmt", ["matrix", "featurecounts", "htseq", "star", "salmon", "kallisto", "rsem"])
def test_gzip_and_windows_line_endings(cf: Path, gencode_tx2gene: Path, tmp_path: Path,
                                       fmt: str, crlf: bool, gz: bool) -> None:
    """The same counts, QC values, lengths and gene names as from the original file."""
    suffix = ".gz" if gz else ""
    tx2gene = None
    if fmt == "matrix":
        src = AIRWAY / "counts.tsv"
        orig, new = src, _rewrite(src, tmp_path / f"counts.tsv{suffix}", crlf=crlf, gz=gz)
    elif fmt == "featurecounts":
        src = cf / "featurecounts/human_single_sample_mbf/ignore_subread.tsv"
        _rewrite(Path(f"{src}.summary"), tmp_path / "counts.txt.summary", crlf=crlf, gz=False)
        orig, new = src, _rewrite(src, tmp_path / f"counts.txt{suffix}", crlf=crlf, gz=gz)
    elif fmt == "htseq":
        src = cf / "htseq/htseq_repo_yeast_excerpt/yeast_RNASeq_excerpt_withNH_counts_twocolumns.tsv"
        orig, new = src, _rewrite(src, tmp_path / f"x.tsv{suffix}", crlf=crlf, gz=gz)
    elif fmt == "star":
        src = cf / STAR_735
        orig, new = {"s": src}, {"s": _rewrite(src, tmp_path / f"s_ReadsPerGene.out.tab{suffix}", crlf=crlf, gz=gz)}
    elif fmt == "salmon":
        src = cf / "salmon/yeast_nfcore_test/WT_REP1/quant.sf"
        quant = pd.read_csv(src, sep="\t")
        tx2gene = tmp_path / "t2g.tsv"
        pd.DataFrame({"transcript_id": quant.Name, "gene_id": quant.Name}).to_csv(tx2gene, sep="\t", index=False)
        _rewrite(tx2gene, tmp_path / "t2g_new.tsv", crlf=crlf, gz=gz)
        orig, new = {"s": src}, {"s": _rewrite(src, tmp_path / "s" / f"quant.sf{suffix}", crlf=crlf, gz=gz).parent}
    elif fmt == "kallisto":
        src = cf / "kallisto/kallisto_test_pytximport/abundance_1.tsv"
        tx2gene = gencode_tx2gene
        _rewrite(tx2gene, tmp_path / "t2g_new.tsv", crlf=crlf, gz=gz)
        orig, new = {"s": src}, {"s": _rewrite(src, tmp_path / f"abundance.tsv{suffix}", crlf=crlf, gz=gz)}
    else:
        src = cf / "rsem/geuvadis_tximportData/ERR188021.genes.results.gz"
        orig, new = {"s": src}, {"s": _rewrite(src, tmp_path / f"s.genes.results{suffix}", crlf=crlf, gz=gz)}
    a = read_counts(orig, tx2gene=tx2gene)
    b = read_counts(new, tx2gene=tmp_path / "t2g_new.tsv" if tx2gene is not None else None)
    assert b.format == fmt
    np.testing.assert_array_equal(a.counts.to_numpy(), b.counts.to_numpy())
    assert list(a.counts.index) == list(b.counts.index)
    if a.qc is not None:
        shared = [c for c in a.qc.columns if c in b.qc.columns]
        assert "assigned" in shared
        np.testing.assert_allclose(a.qc[shared].to_numpy(dtype=float), b.qc[shared].to_numpy(dtype=float))
    if a.lengths is not None:
        np.testing.assert_allclose(a.lengths.to_numpy(), b.lengths.to_numpy(), rtol=1e-12)
    if a.gene_names is not None:
        assert a.gene_names.fillna("").tolist() == b.gene_names.fillna("").tolist()


def test_annotation_and_tx2gene_with_windows_line_endings(tmp_path: Path) -> None:
    ann = _rewrite(AIRWAY / "genes.tsv", tmp_path / "genes.tsv", crlf=True, gz=False)
    pd.testing.assert_frame_equal(read_annotation(ann), read_annotation(AIRWAY / "genes.tsv"))
    gtf = tmp_path / "a.gtf"
    gtf.write_bytes(b'1\tensembl\ttranscript\t1\t9\t.\t+\t.\tgene_id "G1"; transcript_id "T1"; gene_name "ACT1"; '
                    b'gene_biotype "protein_coding";\r\n')
    assert read_annotation(gtf).to_dict("index") == {"G1": {"gene_name": "ACT1", "gene_biotype": "protein_coding"}}
    assert read_tx2gene(gtf).to_dict("records") == [{"transcript_id": "T1", "gene_id": "G1", "gene_name": "ACT1"}]


# ---------------------------------------------------------------------------------------------
# countsFromAbundance (tximport) against pytximport
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), [("scaledTPM", "scaled_tpm"), ("lengthScaledTPM", "length_scaled_tpm")])
def test_counts_from_abundance(cf: Path, ours: str, theirs: str) -> None:
    """The re-made counts equal pytximport's (before rounding); each sample keeps its estimated-count total;
    no length offset is returned (DESeqDataSetFromTximport ignores txi$length for these options)."""
    folders = sorted(p for p in (cf / "salmon/yeast_nfcore_test").iterdir() if p.is_dir())
    quant = pd.read_csv(folders[0] / "quant.sf", sep="\t")
    t2g = pd.DataFrame({"transcript_id": quant.Name, "gene_id": quant.Name})
    ct = read_counts(folders, tx2gene=t2g, counts_from_abundance=ours)
    assert ct.lengths is None and ct.source["counts_from_abundance"] == ours
    assert ours in ct.source["summarization"]
    px, _ = _pytximport_counts([p / "quant.sf" for p in folders], "salmon", t2g, counts_from_abundance=theirs)
    np.testing.assert_array_equal(np.rint(px.loc[ct.counts.index].to_numpy()), ct.counts.to_numpy())
    totals = [pd.read_csv(p / "quant.sf", sep="\t")["NumReads"].sum() for p in folders]
    np.testing.assert_allclose(ct.counts.sum().to_numpy(), totals, atol=ct.counts.shape[0] / 2)
    plain = read_counts(folders, tx2gene=t2g)
    assert plain.lengths is not None and not plain.counts.equals(ct.counts)


def test_counts_from_abundance_needs_transcripts(cf: Path) -> None:
    with pytest.raises(DegflowInputError, match=r"RSEM \*\.genes\.results are gene level, and counts_from_abundance "
                                                 r"lengthScaledTPM needs transcript-level input"):
        read_counts(cf / "rsem/geuvadis_tximportData/ERR188021.genes.results.gz",
                    counts_from_abundance="lengthScaledTPM")
    with pytest.raises(DegflowInputError, match=r"counts_from_abundance 'dtuScaledTPM' is unknown"):
        read_counts(cf / "rsem/geuvadis_tximportData/ERR188021.genes.results.gz", counts_from_abundance="dtuScaledTPM")


# ---------------------------------------------------------------------------------------------
# technical replicates, strandedness evidence, annotation matching
# ---------------------------------------------------------------------------------------------


def test_collapse_replicates_featurecounts(cf_shared: Path) -> None:
    """Units named after the BAM columns of one featureCounts file; counts and .summary statuses summed."""
    path = cf_shared / "featurecounts/yeast_snf2_bootcamp/counts.txt"
    ct = read_counts(path)
    units = pd.DataFrame({"sample": ["mut", "mut", "wt"], "unit": ["mutant-01", "mutant-02", "wildtype-01"]},
                         index=["mutant-01", "mutant-02", "wildtype-01"])
    sub = CountTable(counts=ct.counts[list(units.index)], gene_names=None, qc=ct.qc.loc[list(units.index)],
                     format=ct.format, source=ct.source)
    out = collapse_replicates(sub, units)
    assert list(out.counts.columns) == ["mut", "wt"]
    raw = pd.read_csv(path, sep="\t", comment="#", index_col="Geneid")
    np.testing.assert_array_equal(out.counts["mut"].to_numpy(),
                                  (raw["bam/mutant-01.bam"] + raw["bam/mutant-02.bam"]).to_numpy())
    summary = pd.read_csv(f"{path}.summary", sep="\t", index_col=0)
    both = summary[["bam/mutant-01.bam", "bam/mutant-02.bam"]].sum(axis=1)
    assert out.qc.loc["mut", "assigned"] == both["Assigned"]
    assert out.qc.loc["mut", "assignment_rate"] == pytest.approx(both["Assigned"] / both.sum())
    assert out.qc.loc["mut", "n_units"] == 2 and out.qc.loc["wt", "n_units"] == 1
    with pytest.raises(DegflowInputError, match=r"sample 'wt', unit 'wildtype-07': no such column in the counts"):
        collapse_replicates(sub, pd.concat([units, pd.DataFrame({"sample": ["wt"], "unit": ["wildtype-07"]},
                                                                index=["wildtype-07"])]))
    with pytest.raises(DegflowInputError, match=r"count column 'wildtype-01' belongs to no unit"):
        collapse_replicates(sub, units.iloc[:2])


def test_collapse_replicates_salmon_lengths(cf: Path) -> None:
    """Lengths of a sample made of two units: the per-gene count-weighted mean of the units' lengths."""
    folders = {p.name: p for p in (cf / "salmon/yeast_nfcore_test").iterdir() if p.is_dir()}
    quant = pd.read_csv(folders["WT_REP1"] / "quant.sf", sep="\t")
    t2g = pd.DataFrame({"transcript_id": quant.Name, "gene_id": quant.Name})
    ct = read_counts({"a/1": folders["WT_REP1"], "a/2": folders["WT_REP2"]}, tx2gene=t2g)
    out = collapse_replicates(ct, pd.DataFrame({"sample": ["a", "a"], "unit": ["1", "2"]}, index=["a/1", "a/2"]))
    np.testing.assert_array_equal(out.counts["a"].to_numpy(), ct.counts.sum(axis=1).to_numpy())
    w, lens = ct.counts.to_numpy(float), ct.lengths.to_numpy()
    g = int(np.flatnonzero((w > 0).all(axis=1))[0])
    assert out.lengths["a"].iloc[g] == pytest.approx((w[g] * lens[g]).sum() / w[g].sum())
    z = int(np.flatnonzero((w == 0).all(axis=1))[0])
    assert out.lengths["a"].iloc[z] == pytest.approx(lens[z].mean())


def test_strandedness_table(cf: Path) -> None:
    ct = read_counts({"a": cf / STAR_735})
    tab = strandedness_table(ct)
    raw = pd.read_csv(cf / STAR_735, sep="\t", header=None, index_col=0)
    genes = raw[~raw.index.str.startswith("N_")]
    row = tab.iloc[0]
    assert (row["sample"], row["requested"], row["inferred"], row["chosen"], row["column"]) == (
        "a", "auto", "forward", "forward", 3)
    assert [row["genes_unstranded"], row["genes_forward"], row["genes_reverse"]] == genes.sum().tolist()
    assert row["forward_share"] == pytest.approx(genes[2].sum() / (genes[2].sum() + genes[3].sum()))
    assert [row["N_noFeature_unstranded"], row["N_noFeature_forward"], row["N_noFeature_reverse"]] == (
        raw.loc["N_noFeature"].tolist())
    with pytest.raises(DegflowInputError, match=r"STAR ReadsPerGene files only, not htseq"):
        strandedness_table(read_counts({"h": cf / HTSEQ_YEAST}))


def test_match_annotation_versions(cf: Path) -> None:
    """STAR's GENCODE IDs are versioned (ENSMUSG00000102693.1); an unversioned Ensembl table still annotates
    them; versions are dropped only when that merges no IDs, else the colliding IDs are named."""
    ids = read_counts({"a": cf / STAR_735}).counts.index[:4]
    assert list(ids) == ["ENSMUSG00000102693.1", "ENSMUSG00000064842.1", "ENSMUSG00000051951.5",
                         "ENSMUSG00000102851.1"]
    ann = pd.DataFrame({"gene_name": ["4933401J01Rik", "Xkr4"], "gene_biotype": ["TEC", "protein_coding"]},
                       index=pd.Index(["ENSMUSG00000102693", "ENSMUSG00000051951"], name="gene_id"))
    out = match_annotation(ids, ann, label="genes.tsv")
    assert list(out.index) == list(ids)
    assert out["gene_name"].fillna("").tolist() == ["4933401J01Rik", "", "Xkr4", ""]
    assert out.loc["ENSMUSG00000051951.5", "gene_biotype"] == "protein_coding"
    # exact IDs win: a versioned annotation is used as it is
    versioned = ann.set_axis(["ENSMUSG00000102693.1", "ENSMUSG00000051951.5"])
    assert match_annotation(ids, versioned)["gene_name"].notna().sum() == 2
    clash = pd.Index([*ids, "ENSMUSG00000051951.4"])
    with pytest.raises(DegflowInputError, match=r"removing them would merge distinct IDs in the counts "
                                                 r"\(ENSMUSG00000051951\.5 / ENSMUSG00000051951\.4; 1 such groups\)"):
        match_annotation(clash, ann, label="genes.tsv")
    two = pd.concat([ann, ann.iloc[:1].set_axis(["ENSMUSG00000102693.2"])]).set_axis(
        ["ENSMUSG00000102693.3", "ENSMUSG00000051951", "ENSMUSG00000102693.2"])
    with pytest.raises(DegflowInputError, match=r"merge distinct IDs in genes\.tsv \(ENSMUSG00000102693\.3 / "
                                                 r"ENSMUSG00000102693\.2"):
        match_annotation(ids, two, label="genes.tsv")
    with pytest.raises(DegflowInputError, match=r"none of the 4 gene IDs of the counts is in genes\.tsv"):
        match_annotation(ids, ann.set_axis(["100", "200"]), label="genes.tsv")
