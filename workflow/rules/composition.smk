# Differential cell-type composition (propeller): cells per replicate x cell type from results/singlecell/adata.h5ad,
# a moderated t per contrast and a moderated F per factor with >= 3 levels (limma eBayes, robust), BH FDR, and a
# figure per test. The plan (defaults from the pseudobulk section, replicates per level) is checked before the DAG.
from degflow.plan.composition import metadata_records, plan_composition, tests_to_records

COMP_DIR = f"{SC_DIR}/composition"
COMP_CAT = "10. Cell-type composition"

try:
    COMP_PLAN = plan_composition(
        SC["composition"],
        SC_PLAN.sheet,
        pseudobulk=SC.get("pseudobulk"),
        clusterings=SC_PLAN.clusterings,
        annotated=bool(SC_PLAN.annotation_key),
        source=SC["samples"],
        reference=SC_PLAN.reference,
    )
except DegflowInputError as err:
    _stop(err)

FINAL_OUTPUTS += [f"{COMP_DIR}/cell_counts.tsv"]
FINAL_OUTPUTS += expand(
    f"{COMP_DIR}/{{test}}/{{name}}",
    test=COMP_PLAN.names,
    name=["results.tsv", "results.html", "proportions.png", "proportions.pdf"],
)


rule sc_composition:
    input:
        f"{SC_DIR}/adata.h5ad",
    output:
        counts=f"{COMP_DIR}/cell_counts.tsv",
        results=[f"{COMP_DIR}/{t}/results.tsv" for t in COMP_PLAN.names],
        html=[
            report(
                f"{COMP_DIR}/{t}/results.html",
                caption="../report/sc_composition_table.rst",
                category=COMP_CAT,
                labels={"test": t, "figure": "table"},
            )
            for t in COMP_PLAN.names
        ],
        png=[
            report(
                f"{COMP_DIR}/{t}/proportions.png",
                caption="../report/sc_composition.rst",
                category=COMP_CAT,
                labels={"test": t, "figure": "proportions"},
            )
            for t in COMP_PLAN.names
        ],
        pdf=[f"{COMP_DIR}/{t}/proportions.pdf" for t in COMP_PLAN.names],
    params:
        groupby=COMP_PLAN.groupby,
        sample_key=COMP_PLAN.sample_key,
        design=COMP_PLAN.design,
        tests=tests_to_records(COMP_PLAN.tests),
        metadata=metadata_records(COMP_PLAN.metadata),
        transform=COMP_PLAN.transform,
        robust=COMP_PLAN.robust,
    log:
        f"{RESULTS}/logs/singlecell/composition.log",
    threads: 1
    resources:
        mem_mb=scaled(1500, 3000, SC_INPUT_GB),
        runtime=scaled(5),
    conda:
        "../../envs/singlecell.yaml"
    script:
        "../scripts/sc_composition.py"
