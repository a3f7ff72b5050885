"""Compound-study planning: ``bulk.rescue`` / ``pathways`` / ``enrichment`` / ``qpcr`` against the contrasts,
before the DAG (``workflow/rules/compound_common.smk``), and what the rules read.

=============================  ==========================================================================
:func:`plan_compound`          the sections checked; treatments, gene-set files, panels, qPCR contrasts
:func:`pathway_group_by`       the sheet column grouping samples in the pathway figures
:func:`treatment_arms`         a treatment's factor and control / model / treated levels
:func:`arm_sizes`              samples in a treatment contrast's model and treated groups
:func:`compound_targets`       the final outputs of the compound-study rules (``rule all``)
:func:`workbook_tables`        the tables gathered into ``compound_tables.xlsx``
=============================  ==========================================================================
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from degflow.compound.pathways import bundled_gene_set_files, read_gene_sets
from degflow.errors import DegflowInputError


@dataclass
class CompoundPlan:
    """What the compound-study rules will run, derived from a validated ``bulk`` config section.

    Attributes
    ----------
    treatments
        Treatment contrast names of ``bulk.rescue`` (empty without rescue).
    disease
        The disease contrast name (``None`` without rescue).
    gene_set_files
        Bundled + user GMT files (empty without ``bulk.pathways``).
    panels
        Gene-set name -> file-safe panel name.
    qpcr_contrasts
        Contrasts compared with qPCR (empty without ``bulk.qpcr``).
    """

    treatments: list[str] = field(default_factory=list)
    disease: str | None = None
    gene_set_files: list[str] = field(default_factory=list)
    panels: dict[str, str] = field(default_factory=dict)
    qpcr_contrasts: list[str] = field(default_factory=list)


def pathway_group_by(bulk_cfg: Mapping, factors: Sequence[str]) -> str | None:
    """The sample-sheet column grouping samples in the pathway score plot and panel heatmaps.

    ``bulk.pathways.group_by`` when set; else the factor of the first ``[factor, test, reference]`` contrast; else
    (every contrast a name / vector / list contrast) the last design factor. ``None`` without ``bulk.pathways``.

    Raises
    ------
    DegflowInputError
        No group_by, no ``[factor, test, reference]`` contrast and no factor in the design (numeric covariates only).
    """
    pw = bulk_cfg.get("pathways")
    if not pw:
        return None
    if pw.get("group_by"):
        return str(pw["group_by"])
    first = next((v for v in bulk_cfg["contrasts"].values() if not isinstance(v, Mapping)), None)
    if first is not None:
        return str(first[0])
    if factors:
        return str(factors[-1])
    raise DegflowInputError("config key 'bulk.pathways.group_by' is needed: every contrast is a name/vector/list "
                            "contrast and the design has no factor; name the sample-sheet column that groups the "
                            "samples in the pathway figures")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "set"


def plan_compound(bulk_cfg: Mapping, *, bundled_dir: str | Path) -> CompoundPlan:
    """Check the ``rescue`` / ``pathways`` / ``enrichment`` / ``qpcr`` sections against the contrasts.

    Parameters
    ----------
    bulk_cfg
        The ``bulk`` section after :func:`degflow.plan.schema.validate_config`.
    bundled_dir
        Folder of the bundled GMT files (``resources/genesets``).

    Returns
    -------
    CompoundPlan

    Raises
    ------
    DegflowInputError
        A contrast named in ``rescue``/``qpcr`` that is not in ``bulk.contrasts``; a treatment
        contrast whose reference level is not the disease contrast's test level (then
        ``d + t`` would not be treated vs control); ``enrichment`` without gene sets; a
        missing or malformed GMT; a panel that is in no gene-set file.
    """
    contrasts = {k: list(v) for k, v in bulk_cfg["contrasts"].items() if not isinstance(v, Mapping)}
    plan = CompoundPlan()
    for section, names in (("rescue.disease", [(bulk_cfg.get("rescue") or {}).get("disease")]),
                           ("rescue.treatments", (bulk_cfg.get("rescue") or {}).get("treatments") or []),
                           ("qpcr.contrasts", (bulk_cfg.get("qpcr") or {}).get("contrasts") or [])):
        for c in names:
            if c in bulk_cfg["contrasts"] and c not in contrasts:
                raise DegflowInputError(f"config key 'bulk.{section}': contrast '{c}' is a name/vector/list contrast; "
                                        "this section needs the [factor, test level, reference level] form")
    rc = bulk_cfg.get("rescue")
    if rc:
        dis = rc["disease"]
        if dis not in contrasts:
            raise DegflowInputError(
                f"config key 'bulk.rescue.disease': '{dis}' is not a contrast; choose one of {list(contrasts)}"
            )
        seen = set()
        for t in rc["treatments"]:
            if t not in contrasts:
                raise DegflowInputError(
                    f"config key 'bulk.rescue.treatments': '{t}' is not a contrast; choose among {list(contrasts)}"
                )
            if t == dis or t in seen:
                raise DegflowInputError(
                    f"config key 'bulk.rescue.treatments': '{t}' is listed twice or is the disease contrast"
                )
            seen.add(t)
            df, dt, _ = contrasts[dis]
            tf, _, tr = contrasts[t]
            if tf != df or tr != dt:
                raise DegflowInputError(
                    f"config key 'bulk.rescue.treatments': contrast '{t}' is {contrasts[t]}, but a treatment contrast "
                    f"must compare against the disease model, i.e. [{df}, <treated level>, {dt}]"
                )
        plan.disease, plan.treatments = dis, list(rc["treatments"])
    pw = bulk_cfg.get("pathways")
    if pw:
        files = []
        if pw.get("bundled"):
            files += [str(f) for f in bundled_gene_set_files(pw["bundled"], bundled_dir)]
        files += [str(p) for p in pw.get("gmt", [])]
        if not files:
            raise DegflowInputError(
                "config key 'bulk.pathways': no gene sets; set 'bundled: mouse' (or human) and/or list GMT files in 'gmt'"
            )
        sets = read_gene_sets(files, label="config key 'bulk.pathways' gene-set file")
        names = list(pw.get("panels") or sets)
        for n in names:
            if n not in sets:
                near = difflib.get_close_matches(n, list(sets), n=1)
                hint = f"did you mean '{near[0]}'?" if near else f"the files define {len(sets)} sets"
                raise DegflowInputError(f"config key 'bulk.pathways.panels': gene set '{n}' is in no gene-set file; {hint}")
        safe = {n: _safe(n) for n in names}
        if len(set(safe.values())) != len(safe):
            raise DegflowInputError("config key 'bulk.pathways.panels': two gene-set names give the same file name")
        plan.gene_set_files, plan.panels = files, safe
    if bulk_cfg.get("enrichment") is not None and not plan.gene_set_files:
        raise DegflowInputError(
            "config key 'bulk.enrichment' needs gene sets: add a 'bulk.pathways' section (bundled: mouse|human, or gmt)"
        )
    qc = bulk_cfg.get("qpcr")
    if qc:
        qcs = list(qc.get("contrasts") or contrasts)
        for c in qcs:
            if c not in contrasts:
                raise DegflowInputError(
                    f"config key 'bulk.qpcr.contrasts': '{c}' is not a contrast; choose among {list(contrasts)}"
                )
        plan.qpcr_contrasts = qcs
    return plan


# ----------------------------------------------------------------------------------------------
# what the rules read (compound_common.smk)
# ----------------------------------------------------------------------------------------------
def treatment_arms(contrasts: Mapping[str, Sequence[str]], *, treatment: str, disease: str) -> dict[str, str]:
    """The factor and the control / model / treated levels of a treatment (checked by :func:`plan_compound`).

    Parameters
    ----------
    contrasts
        The ``[factor, test, reference]`` contrasts (``BulkPlan.contrasts``).
    treatment, disease
        The treatment contrast and ``bulk.rescue.disease``.

    Returns
    -------
    dict[str, str]
        ``factor``, ``control`` (the disease contrast's reference), ``model`` and ``treated``.
    """
    factor, treated, model = contrasts[treatment]
    control = contrasts[disease][2]
    return {"factor": factor, "control": str(control), "model": str(model), "treated": str(treated)}


def arm_sizes(sheet: pd.DataFrame, contrast: Sequence[str]) -> dict[str, int]:
    """Samples in the model (reference) and treated groups of a treatment contrast.

    Parameters
    ----------
    sheet
        The analysed samples' sheet (``BulkPlan.sheet``).
    contrast
        ``[factor, treated level, model level]``.

    Returns
    -------
    dict[str, int]
        ``n_reference`` and ``n_treated``.
    """
    factor, treated, model = contrast
    levels = sheet[factor].astype(str)
    return {"n_reference": int((levels == str(model)).sum()), "n_treated": int((levels == str(treated)).sum())}


def compound_targets(results: str, *, plan: CompoundPlan, bulk_cfg: Mapping, contrasts: Sequence[str]) -> list[str]:
    """Every final output of the compound-study rules (for ``rule all``); empty when none of them runs.

    Parameters
    ----------
    results
        The results folder (``CFG["results"]`` without a trailing slash).
    plan
        From :func:`plan_compound`.
    bulk_cfg
        The ``bulk`` section (``enrichment`` and its ``gsea`` switch).
    contrasts
        Every bulk contrast name (enrichment runs per contrast).

    Returns
    -------
    list[str]
        Rescue, pathway, enrichment and qPCR outputs, then the workbook when any of them is made.
    """
    out = []
    if plan.treatments:
        out.append(f"{results}/bulk/rescue/summary.tsv")
        for t in plan.treatments:
            out += [f"{results}/bulk/rescue/{t}/genes.tsv", f"{results}/bulk/rescue/{t}/summary.tsv",
                    f"{results}/bulk/rescue/{t}/rescue.png"]
    if plan.panels:
        out += [f"{results}/bulk/pathways/scores.tsv", f"{results}/bulk/pathways/scores.png"]
        for p in plan.panels.values():
            out += [f"{results}/bulk/pathways/{p}/genes.tsv", f"{results}/bulk/pathways/{p}/heatmap.png"]
    if bulk_cfg.get("enrichment") is not None:
        for c in contrasts:
            out += [f"{results}/bulk/enrichment/{c}/ora.tsv", f"{results}/bulk/enrichment/{c}/dotplot.png"]
            if bulk_cfg["enrichment"]["gsea"]:
                out.append(f"{results}/bulk/enrichment/{c}/gsea.tsv")
    if plan.qpcr_contrasts:
        out += [f"{results}/bulk/qpcr/fold_changes.tsv", f"{results}/bulk/qpcr/concordance.tsv",
                f"{results}/bulk/qpcr/concordance.png"]
    if out:
        out.append(f"{results}/bulk/compound_tables.xlsx")
    return out


def workbook_tables(results: str, *, plan: CompoundPlan, bulk_cfg: Mapping,
                    contrasts: Sequence[str]) -> dict[str, str | list[str]]:
    """The tables gathered into ``compound_tables.xlsx`` (the workbook rule's inputs).

    Parameters
    ----------
    results, plan, bulk_cfg, contrasts
        As for :func:`compound_targets`.

    Returns
    -------
    dict
        Input name -> path, or list of paths (one per treatment, panel or contrast).
    """
    out: dict[str, str | list[str]] = {}
    if plan.treatments:
        out["rescue_summary"] = f"{results}/bulk/rescue/summary.tsv"
        out["rescue_genes"] = [f"{results}/bulk/rescue/{t}/genes.tsv" for t in plan.treatments]
    if plan.panels:
        out["scores"] = f"{results}/bulk/pathways/scores.tsv"
        out["set_sizes"] = f"{results}/bulk/pathways/gene_sets.tsv"
        out["panel_genes"] = [f"{results}/bulk/pathways/{p}/genes.tsv" for p in plan.panels.values()]
    if bulk_cfg.get("enrichment") is not None:
        out["ora"] = [f"{results}/bulk/enrichment/{c}/ora.tsv" for c in contrasts]
        if bulk_cfg["enrichment"]["gsea"]:
            out["gsea"] = [f"{results}/bulk/enrichment/{c}/gsea.tsv" for c in contrasts]
    if plan.qpcr_contrasts:
        out["qpcr"] = f"{results}/bulk/qpcr/fold_changes.tsv"
        out["qpcr_pairs"] = f"{results}/bulk/qpcr/concordance.tsv"
        out["qpcr_stats"] = f"{results}/bulk/qpcr/concordance_stats.tsv"
    return out
