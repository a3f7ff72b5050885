# The run-information page of the report: the configuration used and the software versions.


rule run_info:
    output:
        report(f"{RESULTS}/run_info.html", caption="../report/run_info.rst", category="00. About this run"),
    params:
        config=CFG,
    log:
        f"{RESULTS}/logs/run_info.log",
    threads: 1
    resources:
        mem_mb=scaled(500),
        runtime=scaled(5),
    conda:
        "../../envs/bulk.yaml"
    script:
        "../scripts/run_info.py"
