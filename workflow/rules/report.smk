# The run-information page of the report: the configuration used and the software versions.


rule run_info:
    output:
        report(f"{RESULTS}/run_info.html", caption="../report/run_info.rst", category="0. About this run"),
    params:
        config=CFG,
    log:
        f"{RESULTS}/logs/run_info.log",
    threads: 1
    script:
        "../scripts/run_info.py"
