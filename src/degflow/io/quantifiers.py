"""Transcript quantifiers: salmon, kallisto and RSEM outputs summed per gene as tximport does.

:func:`read_tx2gene`
    a transcript -> gene map from a TSV/CSV or the annotation GTF;
:func:`read_quantifications`
    per-sample ``quant.sf`` / ``abundance.h5`` / ``abundance.tsv`` / ``*.genes.results`` /
    ``*.isoforms.results`` (or their folders) -> a :class:`~degflow.io.counttable.CountTable`: transcript IDs
    matched to the map (Ensembl versions removed when that matches more), estimated counts summed per gene
    (tximport ``summarizeToGene``) or re-made from abundances (``countsFromAbundance``, see
    :data:`COUNTS_FROM_ABUNDANCE`), average transcript lengths for DESeq2's offset, rounded half to even as
    ``DESeqDataSetFromTximport``.

:func:`degflow.io.counts.read_counts` is the entry point (format detection, sample naming).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from degflow.checks import check_gene_ids
from degflow.errors import DegflowInputError
from degflow.io.annotation import GENE_NAME_COLUMNS, looks_like_gtf, parse_gtf, strip_versions
from degflow.io.counttable import CountTable
from degflow.io.text import check_exists, first_line, guess_sep, read_table

__all__ = [
    "COUNTS_FROM_ABUNDANCE",
    "SALMON_HEADER",
    "read_quantifications",
    "read_tx2gene",
]

logger = logging.getLogger("degflow")

#: The header of salmon's ``quant.sf`` (also what format detection looks for).
SALMON_HEADER = ["Name", "Length", "EffectiveLength", "TPM", "NumReads"]
_KALLISTO_HEADER = ["target_id", "length", "eff_length", "est_counts", "tpm"]


# ----------------------------------------------------------------------------------------------
# transcript-level formats (salmon, kallisto, rsem isoforms) and tx2gene
# ----------------------------------------------------------------------------------------------


def read_tx2gene(tx2gene: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Read a transcript -> gene map.

    Parameters
    ----------
    tx2gene
        A DataFrame, a GTF (transcript/exon lines with ``transcript_id`` and ``gene_id``
        attributes; ``gene_name`` kept when present), or a TSV/CSV with columns ``transcript_id``,
        ``gene_id`` [, ``gene_name``] (aliases ``TXNAME``/``GENEID``, ``tx``/``gene``, ``symbol``
        accepted). A file with no header is read as transcript, gene [, gene name] (the layout of
        nf-core/rnaseq's ``tx2gene.tsv``).

    Returns
    -------
    pd.DataFrame
        Columns ``transcript_id``, ``gene_id`` and, when available, ``gene_name``; one row per
        transcript (exact duplicate rows dropped); ``attrs["path"]`` names the source.

    Raises
    ------
    DegflowInputError
        Missing columns, or a transcript mapped to two different genes.
    """
    label = "tx2gene table"
    if isinstance(tx2gene, pd.DataFrame):
        table = tx2gene.copy()
        table.columns = [str(c) for c in table.columns]
    else:
        path = Path(tx2gene)
        label = str(path)
        check_exists(path, what="tx2gene file")
        if looks_like_gtf(path):
            gtf = parse_gtf(path, ["transcript_id", "gene_id", "gene_name"])
            gtf = gtf[gtf["transcript_id"].notna() & gtf["gene_id"].notna()]
            if gtf.empty:
                raise DegflowInputError(f"{path}: GTF has no lines with both transcript_id and gene_id attributes; "
                                        "give the GTF used to build the salmon/kallisto index")
            table = gtf.drop(columns="feature").drop_duplicates("transcript_id")
            if table["gene_name"].isna().all():
                table = table.drop(columns="gene_name")
        else:
            line = first_line(path)
            if line is None:
                raise DegflowInputError(f"{path}: the tx2gene file is empty")
            sep = guess_sep(path, line)
            table = read_table(path, sep=sep)
            lower = {c.lower(): c for c in table.columns}
            tx_col = next((lower[k] for k in ("transcript_id", "txname", "tx_id", "tx", "transcript", "target_id")
                           if k in lower), None)
            gene_col = next((lower[k] for k in ("gene_id", "geneid", "gene") if k in lower), None)
            if tx_col is None or gene_col is None:
                if table.shape[1] in (2, 3):
                    table = read_table(path, sep=sep, header=None)
                    table.columns = ["transcript_id", "gene_id", "gene_name"][: table.shape[1]]
                    tx_col, gene_col = "transcript_id", "gene_id"
                else:
                    raise DegflowInputError(f"{path}: tx2gene needs columns transcript_id and gene_id (found "
                                            f"{', '.join(map(str, table.columns[:6]))}); give a TSV with those "
                                            "columns or the annotation GTF")
            name_col = next((lower[k] for k in GENE_NAME_COLUMNS if k in lower), None)
            rename = {tx_col: "transcript_id", gene_col: "gene_id"}
            if name_col is not None:
                rename[name_col] = "gene_name"
            table = table.rename(columns=rename)
    if not {"transcript_id", "gene_id"} <= set(table.columns):
        raise DegflowInputError(f"{label}: tx2gene needs columns transcript_id and gene_id")
    keep = [c for c in ("transcript_id", "gene_id", "gene_name") if c in table.columns]
    table = table[keep].astype({"transcript_id": str, "gene_id": str}).drop_duplicates(["transcript_id", "gene_id"])
    table = table.reset_index(drop=True)
    table.attrs["path"] = label
    return table


def _dedupe_tx2gene(t2g: pd.DataFrame, label: str) -> pd.DataFrame:
    t2g = t2g.drop_duplicates(["transcript_id", "gene_id"])
    dup = t2g["transcript_id"].duplicated(keep=False)
    if dup.any():
        tx = t2g.loc[dup, "transcript_id"].iloc[0]
        genes = t2g.loc[t2g["transcript_id"] == tx, "gene_id"].tolist()[:3]
        raise DegflowInputError(f"{label}: transcript {tx!r} maps to several genes ({', '.join(genes)}); each "
                                "transcript needs exactly one gene (after version stripping, check for _PAR_Y copies)")
    return t2g


def _match_transcripts(tx_ids: pd.Index, t2g: pd.DataFrame, quant_label: str
                       ) -> tuple[pd.Series, pd.DataFrame, dict[str, Any]]:
    """Gene of each quantified transcript (NaN when unmapped), the map used and what was done."""
    t2g_label = str(t2g.attrs.get("path", "tx2gene table"))
    info: dict[str, Any] = {"ids_bar_split": False, "ids_version_stripped": False}
    ids = pd.Index(tx_ids.astype(str))
    if ids.str.contains("|", regex=False).any() and not t2g["transcript_id"].str.contains("|", regex=False).any():
        ids = pd.Index(ids.str.split("|").str[0])
        info["ids_bar_split"] = True
        logger.info("%s: transcript names carry '|'-joined fields (salmon without --gencode); kept the part "
                    "before the first '|'", quant_label)
    t2g = _dedupe_tx2gene(t2g, t2g_label)
    direct = int(ids.isin(t2g["transcript_id"]).sum())
    matched = direct
    if direct < len(ids):
        s_ids = strip_versions(ids)
        s_map = t2g.assign(transcript_id=strip_versions(pd.Index(t2g["transcript_id"])))
        stripped = int(s_ids.isin(s_map["transcript_id"]).sum())
        if stripped > direct:
            s_map = _dedupe_tx2gene(s_map, f"{t2g_label} (version suffixes removed)")
            logger.warning("transcript IDs in %s and %s differ in version suffixes (e.g. %r vs %r); removed the "
                           "versions on both sides: %d of %d transcripts now match (%d before)", quant_label,
                           t2g_label, str(ids[0]), str(t2g["transcript_id"].iloc[0]), stripped, len(ids), direct)
            ids, t2g, matched = s_ids, s_map, stripped
            info["ids_version_stripped"] = True
    if matched == 0:
        raise DegflowInputError(
            f"none of the {len(ids)} transcript IDs in {quant_label} are in the tx2gene {t2g_label}, also after "
            f"removing version suffixes (quantified IDs look like {', '.join(map(repr, ids[:2]))}; tx2gene IDs look "
            f"like {', '.join(map(repr, t2g['transcript_id'].iloc[:2]))}); give the tx2gene/GTF of the annotation "
            "the index was built from")
    gene = pd.Series(ids.map(t2g.set_index("transcript_id")["gene_id"]), index=ids)
    info["n_transcripts"] = len(ids)
    info["n_unmapped"] = int(gene.isna().sum())
    return gene, t2g, info


def _read_salmon(path: Path) -> tuple[pd.DataFrame, dict[str, Any], Path]:
    if path.is_dir():
        path = next((path / n for n in ("quant.sf", "quant.sf.gz") if (path / n).exists()), path / "quant.sf")
    check_exists(path, what="salmon quant.sf")
    table = read_table(path)
    if "NumReads" not in table.columns or "Name" not in table.columns:
        raise DegflowInputError(f"{path}: not a salmon quant.sf (columns {' '.join(table.columns[:5])}); expected "
                                f"{' '.join(SALMON_HEADER)}")
    length_col = "EffectiveLength" if "EffectiveLength" in table.columns else "Length"
    tx = pd.DataFrame({"counts": table["NumReads"], "length": table[length_col], "abundance": table["TPM"]})
    tx.index = pd.Index(table["Name"].to_numpy())
    qc: dict[str, Any] = {}
    meta = path.parent / "aux_info" / "meta_info.json"
    if meta.exists():
        info = json.loads(meta.read_text())
        qc = {k: info[k] for k in ("num_processed", "num_mapped", "percent_mapped") if k in info}
        qc["_about"] = {"salmon_version": info.get("salmon_version"),
                        "library_types": ",".join(info.get("library_types", []))}
    return tx, qc, path


def _read_kallisto(path: Path) -> tuple[pd.DataFrame, dict[str, Any], Path]:
    if path.is_dir():
        path = next((path / n for n in ("abundance.h5", "abundance.tsv", "abundance.tsv.gz") if (path / n).exists()),
                    path / "abundance.h5")
    check_exists(path, what="kallisto abundance file")
    with open(path, "rb") as fh:
        is_h5 = fh.read(4) == b"\x89HDF"
    if is_h5:
        import h5py

        with h5py.File(path, "r") as h5:
            for key in ("est_counts", "aux/ids", "aux/eff_lengths"):
                if key not in h5:
                    raise DegflowInputError(f"{path}: kallisto abundance.h5 lacks {key!r}; give kallisto's "
                                            "unmodified output")
            ids = h5["aux/ids"][:].astype(str)
            counts = h5["est_counts"][:].astype(np.float64)
            length = h5["aux/eff_lengths"][:].astype(np.float64)
        rate = np.divide(counts, length, out=np.zeros_like(counts), where=length > 0)
        tpm = rate / rate.sum() * 1e6 if rate.sum() > 0 else rate
        tx = pd.DataFrame({"counts": counts, "length": length, "abundance": tpm}, index=pd.Index(ids))
    else:
        table = read_table(path)
        if not {"target_id", "est_counts", "eff_length", "tpm"} <= set(table.columns):
            raise DegflowInputError(f"{path}: not a kallisto abundance.tsv (columns "
                                    f"{' '.join(table.columns[:5])}); expected {' '.join(_KALLISTO_HEADER)}")
        tx = pd.DataFrame({"counts": table["est_counts"], "length": table["eff_length"], "abundance": table["tpm"]})
        tx.index = pd.Index(table["target_id"].to_numpy())
    qc: dict[str, Any] = {}
    run_info = path.parent / "run_info.json"
    if run_info.exists():
        info = json.loads(run_info.read_text())
        qc = {"num_processed": info.get("n_processed"), "num_mapped": info.get("n_pseudoaligned"),
              "percent_mapped": info.get("p_pseudoaligned"),
              "_about": {"kallisto_version": info.get("kallisto_version")}}
    return tx, qc, path


def _rsem_file(path: Path) -> Path:
    if path.is_dir():
        found = sorted(p for p in path.iterdir()
                       if p.name.endswith((".genes.results", ".genes.results.gz")))
        found = found or sorted(p for p in path.iterdir()
                                if p.name.endswith((".isoforms.results", ".isoforms.results.gz")))
        if len(found) != 1:
            raise DegflowInputError(f"{path}: expected exactly one RSEM *.genes.results file in the folder, found "
                                    f"{len(found)}; give the file itself")
        path = found[0]
    check_exists(path, what="RSEM results file")
    return path


def _read_rsem(path: Path) -> tuple[pd.DataFrame, bool, Path]:
    """(table with counts/length/abundance[/gene_id], gene_level, path)."""
    path = _rsem_file(path)
    table = read_table(path)
    cols = list(table.columns)
    if cols[:2] == ["gene_id", "transcript_id(s)"]:
        gene_level = True
        idx = table["gene_id"]
    elif cols[:2] == ["transcript_id", "gene_id"]:
        gene_level = False
        idx = table["transcript_id"]
    else:
        raise DegflowInputError(f"{path}: not an RSEM *.genes.results / *.isoforms.results file (columns "
                                f"{' '.join(cols[:5])})")
    for col in ("expected_count", "effective_length", "TPM"):
        if col not in table.columns:
            raise DegflowInputError(f"{path}: RSEM results lack the {col!r} column")
    out = pd.DataFrame({"counts": table["expected_count"], "length": table["effective_length"],
                        "abundance": table["TPM"]})
    if not gene_level:
        out["gene_id"] = table["gene_id"].to_numpy()
    out.index = pd.Index(idx.to_numpy())
    return out, gene_level, path


def _numeric(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> pd.DataFrame:
    out = frame.copy()
    for col in columns:
        values = pd.to_numeric(out[col], errors="coerce")
        bad = values.isna().to_numpy() | ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            pos = int(np.argmax(bad))
            raise DegflowInputError(f"{path}: {col} value {frame[col].iat[pos]!r} for {frame.index[pos]!r} is "
                                    "missing or not a number; give the quantifier's unmodified output")
        if (values < 0).any():
            pos = int(np.argmax((values < 0).to_numpy()))
            raise DegflowInputError(f"{path}: negative {col} {values.iat[pos]} for {frame.index[pos]!r}; "
                                    "estimated counts must be >= 0")
        out[col] = values.astype(np.float64)
    return out


def _summarize_to_gene(tx: Mapping[str, pd.DataFrame], genes: pd.Series
                       ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """tximport ``summarizeToGene`` with ``countsFromAbundance="no"``: counts, lengths, abundance per gene.

    ``genes`` is the gene of each transcript (same order as every ``tx`` frame; NaN = unmapped,
    dropped). Counts and abundances are summed per gene; the length is the abundance-weighted mean
    transcript length, and where a gene has zero abundance in a sample it is the geometric mean of
    its lengths in the other samples, or the plain mean of its transcripts' lengths when it is zero
    everywhere (tximport's ``replaceMissingLength``). Genes keep their first-seen order.
    """
    keep = genes.notna().to_numpy()
    gene_ids = genes.to_numpy()[keep].astype(str)
    codes, uniques = pd.factorize(gene_ids)
    n_genes = len(uniques)
    samples = list(tx)

    def rowsum(values: np.ndarray) -> np.ndarray:
        out = np.zeros((n_genes, values.shape[1]))
        for j in range(values.shape[1]):
            out[:, j] = np.bincount(codes, weights=values[:, j], minlength=n_genes)
        return out

    counts_tx = np.column_stack([tx[s]["counts"].to_numpy()[keep] for s in samples])
    length_tx = np.column_stack([tx[s]["length"].to_numpy()[keep] for s in samples])
    abund_tx = np.column_stack([tx[s]["abundance"].to_numpy()[keep] for s in samples])
    counts = rowsum(counts_tx)
    abundance = rowsum(abund_tx)
    weighted = rowsum(abund_tx * length_tx)
    with np.errstate(invalid="ignore", divide="ignore"):
        length = weighted / abundance
    missing = ~np.isfinite(length)
    if missing.any():
        ave_gene = np.bincount(codes, weights=length_tx.mean(axis=1), minlength=n_genes) / np.bincount(
            codes, minlength=n_genes)
        for i in np.nonzero(missing.any(axis=1))[0]:
            row = length[i]
            ok = np.isfinite(row) & (row > 0)
            row[~np.isfinite(row)] = np.exp(np.log(row[ok]).mean()) if ok.any() else ave_gene[i]
    index = pd.Index(uniques, name="gene_id")
    return (pd.DataFrame(counts, index=index, columns=samples), pd.DataFrame(length, index=index, columns=samples),
            pd.DataFrame(abundance, index=index, columns=samples))


#: What each tximport ``countsFromAbundance`` option does (kept in ``CountTable.source["summarization"]``).
_SUMMARIZATION = {
    "no": "tximport countsFromAbundance='no': estimated counts summed per gene; lengths = abundance-weighted mean "
          "transcript length, passed to DESeq2 as normalisation factors (DESeqDataSetFromTximport)",
    "scaledTPM": "tximport countsFromAbundance='scaledTPM': gene TPM scaled to each sample's estimated-count total; "
                 "no length offset",
    "lengthScaledTPM": "tximport countsFromAbundance='lengthScaledTPM': gene TPM x the gene's mean length over "
                       "samples, scaled to each sample's estimated-count total; no length offset",
}
COUNTS_FROM_ABUNDANCE: tuple[str, ...] = tuple(_SUMMARIZATION)


def _counts_from_abundance(counts: pd.DataFrame, abundance: pd.DataFrame, lengths: pd.DataFrame,
                           how: str) -> pd.DataFrame:
    """tximport's ``makeCountsFromAbundance``: counts re-made from gene abundances (TPM).

    ``scaledTPM`` uses the TPM, ``lengthScaledTPM`` the TPM times the gene's mean length over
    samples (``rowMeans(lengthMat)``, after the missing lengths were filled in); either is then
    scaled so that each sample keeps its total of estimated counts (``colSums(countsMat)``).
    """
    new = abundance.to_numpy() * (lengths.to_numpy().mean(axis=1, keepdims=True) if how == "lengthScaledTPM" else 1.0)
    totals = counts.to_numpy().sum(axis=0)
    new_sums = new.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = new * (totals / new_sums)
    scaled[:, new_sums == 0] = 0.0
    return pd.DataFrame(scaled, index=counts.index, columns=counts.columns)


def _report_unmapped(gene_of: pd.Series, tx: Mapping[str, pd.DataFrame], qc_rows: dict[str, dict[str, Any]],
                     source: dict[str, Any], quant_label: str, t2g_label: str) -> None:
    """Warn how many transcripts, and how many of each sample's estimated reads, tx2gene drops."""
    missing = gene_of.isna().to_numpy()
    unmapped = gene_of.index[missing]
    samples = list(tx)
    lost = {s: float(tx[s]["counts"].to_numpy()[missing].sum()) for s in samples}
    total = {s: float(tx[s]["counts"].to_numpy().sum()) for s in samples}
    with_reads = int((np.column_stack([tx[s]["counts"].to_numpy()[missing] for s in samples]) > 0).any(axis=1).sum())
    frac = {s: (lost[s] / total[s] if total[s] > 0 else 0.0) for s in samples}
    worst = max(frac, key=frac.get)
    for s in samples:
        qc_rows[s]["tx2gene_unmapped_reads"] = lost[s]
        qc_rows[s]["tx2gene_unmapped_fraction"] = frac[s]
    logger.warning("%d of %d transcripts in %s have no gene in %s (e.g. %s), %d of them with reads: dropped them, "
                   "losing %.0f estimated reads in total (up to %.2f%% of a sample's reads, in %s); give the tx2gene "
                   "of the annotation the index was built from if that is too many", len(unmapped), len(gene_of),
                   quant_label, t2g_label, ", ".join(map(str, unmapped[:3])), with_reads, sum(lost.values()),
                   100 * frac[worst], worst)
    source["unmapped_transcripts"] = {"n": len(unmapped), "n_with_reads": with_reads,
                                      "examples": [str(u) for u in unmapped[:5]], "estimated_reads_dropped": lost,
                                      "fraction_dropped": frac}


def _round_counts(counts: pd.DataFrame) -> pd.DataFrame:
    """Round estimated counts as DESeq2's ``DESeqDataSetFromTximport`` does (``round()``, half to even)."""
    return pd.DataFrame(np.rint(counts.to_numpy()).astype(np.int64), index=counts.index, columns=counts.columns)


def read_quantifications(files: Mapping[str, Path], fmt: str, tx2gene: str | Path | pd.DataFrame | None, *,
                         counts_from_abundance: str = "no") -> CountTable:
    """Gene counts from salmon, kallisto or RSEM outputs (sample -> file or folder), as tximport makes them.

    ``fmt`` is ``"salmon"``, ``"kallisto"`` or ``"rsem"``; ``tx2gene`` and ``counts_from_abundance`` are as in
    :func:`degflow.io.counts.read_counts`, which documents the result (call it rather than this).
    """
    tx: dict[str, pd.DataFrame] = {}
    qc_rows: dict[str, dict[str, Any]] = {}
    paths: dict[str, Path] = {}
    gene_level: bool | None = None
    own_genes: pd.Series | None = None
    about: dict[str, dict[str, Any]] = {}
    for sample, path in files.items():
        if fmt == "salmon":
            table, qc, real = _read_salmon(path)
            level = False
        elif fmt == "kallisto":
            table, qc, real = _read_kallisto(path)
            level = False
        else:
            table, level, real = _read_rsem(path)
            qc = {}
            if not level:
                own_genes = table["gene_id"]
        if gene_level is not None and level != gene_level:
            raise DegflowInputError(f"{real}: mixes RSEM gene-level and isoform-level files; give *.genes.results "
                                    "for every sample (or *.isoforms.results for every sample)")
        gene_level = level
        tx[sample] = _numeric(table, real, ["counts", "length", "abundance"])
        if "_about" in qc:
            about[sample] = qc.pop("_about")
        qc_rows[sample] = qc
        paths[sample] = real
    samples = list(tx)
    first = tx[samples[0]].index
    for s in samples[1:]:
        if not tx[s].index.equals(first) and tx[s].index.is_unique and set(tx[s].index) == set(first):
            tx[s] = tx[s].reindex(first)
        if not tx[s].index.equals(first):
            diff = first.symmetric_difference(tx[s].index)[:3]
            raise DegflowInputError(f"{paths[s]}: lists different {'genes' if gene_level else 'transcripts'} than "
                                    f"{paths[samples[0]]} (e.g. {list(diff)}); all samples must be quantified "
                                    "against the same index")
    source: dict[str, Any] = {"files": {s: str(p) for s, p in paths.items()},
                              "rounding": "round half to even of the (estimated or abundance-derived) counts, "
                                          "as DESeq2 DESeqDataSetFromTximport"}
    if about:
        source["quantifier"] = about
    names: pd.Series | None = None
    source["counts_from_abundance"] = counts_from_abundance
    if gene_level:
        if counts_from_abundance != "no":
            raise DegflowInputError(f"{paths[samples[0]]}: RSEM *.genes.results are gene level, and "
                                    f"counts_from_abundance {counts_from_abundance} needs transcript-level input (as in "
                                    "tximport); give the *.isoforms.results files or use counts_from_abundance: no")
        check_gene_ids(first, paths[samples[0]])
        est = pd.DataFrame({s: tx[s]["counts"] for s in samples})
        lengths = pd.DataFrame({s: tx[s]["length"].clip(lower=1.0) for s in samples})
        est.index.name = lengths.index.name = "gene_id"
        if tx2gene is not None:
            logger.info("RSEM *.genes.results are gene level already; tx2gene is not used")
        source["level"] = "gene"
    else:
        if tx2gene is None and own_genes is not None:
            t2g = pd.DataFrame({"transcript_id": first.astype(str), "gene_id": own_genes.astype(str).to_numpy()})
            t2g.attrs["path"] = f"{paths[samples[0]]} (gene_id column)"
        elif tx2gene is None:
            raise DegflowInputError(f"{paths[samples[0]]}: {fmt} quantifies transcripts; give tx2gene (a TSV with "
                                    "transcript_id and gene_id columns, or the GTF the index was built from) to sum "
                                    "them per gene")
        else:
            t2g = read_tx2gene(tx2gene)
        gene_of, t2g_used, info = _match_transcripts(first, t2g, str(paths[samples[0]]))
        if info["n_unmapped"]:
            _report_unmapped(gene_of, tx, qc_rows, source, str(paths[samples[0]]),
                             str(t2g.attrs.get("path", "tx2gene")))
        est, lengths, abundance = _summarize_to_gene(tx, gene_of)
        if counts_from_abundance != "no":
            est = _counts_from_abundance(est, abundance, lengths, counts_from_abundance)
            lengths = None
        source.update({"tx2gene": str(t2g.attrs.get("path", "tx2gene table")), "level": "transcript",
                       "ids_version_stripped": info["ids_version_stripped"], "ids_bar_split": info["ids_bar_split"],
                       "summarization": _SUMMARIZATION[counts_from_abundance]})
        if "gene_name" in t2g_used.columns:
            names = t2g_used.drop_duplicates("gene_id").set_index("gene_id")["gene_name"].reindex(est.index)
            names = names.replace("", np.nan)
            names.name = "gene_name"
    counts = _round_counts(est)
    counts.index.name = "gene_id"
    qc = pd.DataFrame.from_dict(qc_rows, orient="index").reindex(samples)
    qc.insert(0, "assigned", counts.sum(axis=0))
    if "num_mapped" in qc.columns and "num_processed" in qc.columns:
        qc["assignment_rate"] = qc["num_mapped"].astype(float) / qc["num_processed"].astype(float)
    qc.index.name = "sample"
    return CountTable(counts=counts, gene_names=names, qc=qc, format=fmt, source=source, lengths=lengths)
