"""The configuration used (with defaults filled in) and the installed software versions."""
from _common import setup

setup(snakemake)
from degflow.report import package_versions, run_info_html

with open(snakemake.output[0], "w") as fh:
    fh.write(run_info_html(snakemake.params.config, package_versions()))
