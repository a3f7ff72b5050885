# degflow: RNA-seq and single-cell RNA-seq counts to differential-expression answers.
#   snakemake --cores all                          # the bundled example (config/config.yaml)
#   snakemake --cores all --configfile my.yaml     # another experiment
# The config is validated (keys, types, sample sheet, design, counts) before the DAG is built.
from snakemake.utils import min_version

min_version("9.0")


# The bundled example is the default; `--configfile my.yaml` replaces it (it is not merged into it), while
# `--config key=value` overrides single keys of whichever config is in use.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"


include: "workflow/rules/report.smk"


if "bulk" in CFG:

    include: "workflow/rules/bulk.smk"

    if any(k in CFG["bulk"] for k in ("rescue", "pathways", "enrichment", "qpcr")):

        include: "workflow/rules/compound.smk"


if "singlecell" in CFG:

    include: "workflow/rules/singlecell.smk"

    if "pseudobulk" in CFG["singlecell"]:

        include: "workflow/rules/pseudobulk.smk"

    if "composition" in CFG["singlecell"]:

        include: "workflow/rules/composition.smk"


rule all:
    input:
        FINAL_OUTPUTS,
    default_target: True
