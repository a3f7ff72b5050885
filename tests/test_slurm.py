"""Issue 8: degflow on a real SLURM cluster through snakemake-executor-plugin-slurm (`--profile profiles/slurm`).

A one-node cluster (munged, MariaDB + slurmdbd, slurmctld, slurmd: Debian's packages, installed here when
missing) is started on localhost for this module and stopped at its end, also when a test fails
(see tests/slurm_cluster.py). On it:

* the bundled example's bulk analysis (airway) runs with the profile as a user would run it; ``sacct``
  shows every rule ran as a SLURM job, and every TSV is byte-identical to a local ``--cores 2`` run;
* a second run finds nothing to do and submits nothing;
* a job that fails on the cluster is reported with its rule, its wildcards and both logs (the rule's and
  SLURM's), and the re-run after the fix submits only the failed job.

They belong to the extended suite (tests/conftest.py: they install Debian packages as root): on a bare clone, with
no shared data folder beside it, they are skipped with it. Where the extended suite runs (CI), a machine that cannot
run the cluster makes these tests FAIL with the reason; they are never skipped there.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from slurm_cluster import ClusterError, SlurmCluster, ensure_installed

pytestmark = [pytest.mark.workflow, pytest.mark.extended]

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PROFILE = REPO / "profiles" / "slurm"
# Test-only overrides of the profile, for a cluster that answers in milliseconds: poll after 2 s
# instead of 20 s (the plugin then backs off by 10 s per poll that finds nothing finished).
FAST = ["--slurm-init-seconds-before-status-checks", "2", "--latency-wait", "5"]
RUN_TIMEOUT = 900


def _last_jobid(cluster: SlurmCluster) -> int:
    return max((int(j["JobIDRaw"]) for j in cluster.sacct("JobIDRaw")), default=0)


def _jobs_after(cluster: SlurmCluster, jobid: int, *fields: str) -> list[dict[str, str]]:
    """The cluster's jobs submitted after job ``jobid`` (by sacct, i.e. slurmdbd), oldest first."""
    jobs = [j for j in cluster.sacct("JobIDRaw", *fields) if int(j["JobIDRaw"]) > jobid]
    return sorted(jobs, key=lambda j: int(j["JobIDRaw"]))


def _job_stats(text: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table (rule -> job count) from its output."""
    m = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\n(?:total|\s*\n)", text, re.S)
    assert m, f"no 'Job stats' table in snakemake's output:\n{text[-3000:]}"
    stats = {}
    for line in m.group(1).splitlines():
        parts = line.split()
        if len(parts) == 2:
            stats[parts[0]] = int(parts[1])
    return stats


def _tsvs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.tsv"))}


def _fast_python(env: dict, cache: Path) -> dict:
    """Let every Python of the runs (snakemake here, and the two inside each SLURM job) keep compiled
    bytecode, in a folder of this test: with PYTHONDONTWRITEBYTECODE set, as in some sandboxes, each of
    the ~40 snakemake processes of a cluster run would compile snakemake from source (3 s instead of 1 s)."""
    env = dict(env, PYTHONPYCACHEPREFIX=str(cache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _snakemake(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNAKEMAKE), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT, stdin=subprocess.DEVNULL)


# The part of the bundled example (config/config.yaml) this module runs: its bulk RNA-seq analysis (airway).
# Other sections of the example (single-cell, ...) are left out to keep the cluster run within minutes.
SECTIONS = ("results", "bulk")


def example_workdir(folder: Path) -> Path:
    """A working folder for the bundled example's bulk part: ``config/config.yaml`` without the other
    sections, everything else it points to (``config/*``, ``resources/``) linked from the repository.
    snakemake runs there with ``-s <repo>/Snakefile``, so the Snakefile's ``configfile:`` reads this copy."""
    folder.mkdir(parents=True)
    (folder / "config").mkdir()
    for item in (REPO / "config").iterdir():
        if item.name != "config.yaml":
            (folder / "config" / item.name).symlink_to(item)
    (folder / "resources").symlink_to(REPO / "resources")
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump({k: config[k] for k in SECTIONS if k in config},
                                                                   sort_keys=False))
    return folder


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The cluster (or why it could not start), and a local reference run of the example started first.

    The local run goes on in the background while apt-get and the daemons come up and while the
    (cheap) failure test runs; :func:`local_run` waits for it.
    """
    base = tmp_path_factory.mktemp("slurm")
    t0 = time.monotonic()
    local = example_workdir(base / "local")
    with open(base / "local_run.log", "w") as local_log:
        local_proc = subprocess.Popen(
            [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--cores", "2"],
            cwd=local, stdout=local_log, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL,
            env=_fast_python(dict(os.environ), base / "pycache"),
        )
    cluster = SlurmCluster(base / "cluster")
    cluster.env = _fast_python(cluster.env, base / "pycache")
    error = None
    try:
        cluster.timings["apt_install"] = round(ensure_installed(), 2)
        cluster.start()
    except ClusterError as err:
        error = err
    except Exception as err:  # noqa: BLE001 - any failure to start is reported by the tests
        error = ClusterError(f"{type(err).__name__}: {err}")
    if error is not None:  # no cluster: the reference run is not needed
        local_proc.kill()
        local_proc.wait()
    state = {"cluster": cluster, "error": error, "base": base, "local_proc": local_proc, "t0": t0}
    try:
        yield state
    finally:
        if local_proc.poll() is None:
            local_proc.kill()
            local_proc.wait()
        cluster.stop()
        print(f"\nSLURM test timings (s): {cluster.timings}")


@pytest.fixture(scope="module")
def local_run(env) -> tuple[Path, str]:
    """The local reference run of the example (``--cores 2``), finished: its results folder and its log."""
    proc = env["local_proc"]
    try:
        proc.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    env["cluster"].timings["local_run_done_after"] = round(time.monotonic() - env["t0"], 2)
    log = (env["base"] / "local_run.log").read_text()
    assert proc.returncode == 0, f"the local reference run failed:\n{log[-5000:]}"
    return env["base"] / "local" / "results", log


def _up(env) -> SlurmCluster:
    """The running cluster; called first by every test, so a machine without one FAILS each test."""
    if env["error"] is not None:
        pytest.fail(f"this machine cannot run the SLURM test cluster: {env['error']}", pytrace=False)
    return env["cluster"]


def _failed(proc: subprocess.CompletedProcess, cluster: SlurmCluster) -> str:
    return f"snakemake exited {proc.returncode}\n{proc.stderr[-6000:]}\n{cluster.logs()}"


def _reasons(log: str) -> str:
    """Each job snakemake planned, with its reason (why a run that should do nothing did something)."""
    jobs = re.findall(r"^\s*((?:local)?rule \w+):\n(?:.*\n)*?\s*reason: (.*)$", log, re.M)
    return "\n".join(f"{rule}: {reason[:300]}" for rule, reason in jobs) or log[-3000:]


FAILING_WORKFLOW = r"""
SAMPLES = ["s1", "s2"]

rule all:
    input: expand("out/{sample}.qc.tsv", sample=SAMPLES)

rule sample_qc:
    output: "out/{sample}.qc.tsv"
    log: "logs/sample_qc/{sample}.log"
    threads: 1
    resources: mem_mb=200, runtime=5
    shell:
        "if [ {wildcards.sample} = s2 ] && [ ! -e fixed ]; then "
        "echo 'sample_qc: {wildcards.sample} has no reads' > {log}; exit 3; fi; "
        "printf 'sample\tok\n{wildcards.sample}\t1\n' > {output}; echo done > {log}"
"""


def test_failed_job_is_reported_and_rerun_resumes(env):
    """A job that fails on the cluster names its rule, sample and logs; the re-run redoes only it.

    First in the module: it runs while the local reference run of the example is still going.
    """
    cluster = _up(env)
    wd = env["base"] / "failing"
    wd.mkdir()
    (wd / "Snakefile").write_text(FAILING_WORKFLOW)
    args = ["--profile", str(PROFILE), "--retries", "0", *FAST]

    start = _last_jobid(cluster)
    t = time.monotonic()
    first = _snakemake(args, wd, cluster.env)
    cluster.timings["failing_run"] = round(time.monotonic() - t, 2)
    assert first.returncode != 0, first.stderr[-3000:]
    err = first.stderr
    block = err[err.index("Error in rule sample_qc:"):]  # snakemake's report of the failed job
    assert "out/s2.qc.tsv" in block and "logs/sample_qc/s2.log" in block, block[:2000]
    slurm_log = re.search(r"log: .*?(/\S+/rule_sample_qc/\S*s2\S*/(\d+)\.log)", block)
    assert slurm_log, f"the SLURM log of the failed job is not named:\n{block[:2000]}"
    assert Path(slurm_log.group(1)).is_file()  # kept: the plugin deletes only logs of successful jobs
    assert "has no reads" in (wd / "logs/sample_qc/s2.log").read_text()
    assert f"SLURM-job '{slurm_log.group(2)}' failed" in block
    # keep-going (profile): the other sample finished
    assert (wd / "out/s1.qc.tsv").is_file() and not (wd / "out/s2.qc.tsv").exists()
    first_jobs = _jobs_after(cluster, start, "Comment", "State")
    states = {j["Comment"]: j["State"] for j in first_jobs}
    assert states == {"rule_sample_qc_wildcards_s1": "COMPLETED", "rule_sample_qc_wildcards_s2": "FAILED"}, states

    (wd / "fixed").touch()
    done_before = (wd / "out/s1.qc.tsv").stat().st_mtime_ns
    start = _last_jobid(cluster)
    t = time.monotonic()
    second = _snakemake(args, wd, cluster.env)
    cluster.timings["resumed_run"] = round(time.monotonic() - t, 2)
    assert second.returncode == 0, _failed(second, cluster)
    second_jobs = _jobs_after(cluster, start, "Comment", "State")
    assert [(j["Comment"], j["State"]) for j in second_jobs] == [("rule_sample_qc_wildcards_s2", "COMPLETED")]
    assert (wd / "out/s1.qc.tsv").stat().st_mtime_ns == done_before
    assert (wd / "out/s2.qc.tsv").is_file()


@pytest.fixture(scope="module")
def slurm_run(env, local_run):
    """The example through --profile profiles/slurm, in a working folder of its own."""
    cluster = _up(env)
    wd = example_workdir(env["base"] / "on_slurm")
    start = _last_jobid(cluster)
    t = time.monotonic()
    # --cores: the node's CPUs. On a cluster it caps the cores of all jobs in flight, and so what a group
    # job asks for (snakemake sums the threads of a group's parallel members); this node has only a few.
    args = ["-s", str(REPO / "Snakefile"), "--profile", str(PROFILE), "--cores", str(cluster.hardware["CPUs"]), *FAST]
    proc = _snakemake(args, wd, cluster.env)
    cluster.timings["example_on_slurm"] = round(time.monotonic() - t, 2)
    assert proc.returncode == 0, _failed(proc, cluster)
    return {"out": wd / "results", "wd": wd, "proc": proc, "start": start, "args": args}


def _rules_of_jobs(log: str) -> tuple[dict[str, list[str]], set[str]]:
    """From snakemake's log: group id -> its rules, and the rules run locally (``localrule``).

    A group is printed as ``[date] Group job <id> (jobs in lexicogr. order):`` followed by one indented
    ``    rule <name>:`` block per member, up to the next unindented job or the submission line.
    """
    groups: dict[str, list[str]] = {}
    current = None
    for line in log.splitlines():
        m = re.search(r"\] Group job (\S+) \(jobs in lexicogr\. order\):", line)
        if m:
            current = groups.setdefault(m.group(1), [])
        elif re.match(r"(local)?rule \w+:", line) or "has been submitted with SLURM jobid" in line:
            current = None
        elif current is not None and (m := re.match(r"    rule (\w+):", line)):
            current.append(m.group(1))
    local = set(re.findall(r"^localrule (\w+):", log, re.M))
    return groups, local


def test_example_rules_ran_as_slurm_jobs(env, request):
    cluster = _up(env)
    local_run, slurm_run = request.getfixturevalue("local_run"), request.getfixturevalue("slurm_run")
    jobs = _jobs_after(cluster, slurm_run["start"], "JobName", "Comment", "State", "ExitCode")
    log = slurm_run["proc"].stderr
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert submitted, log[-3000:]
    assert sorted(int(j["JobIDRaw"]) for j in jobs) == sorted(int(i) for i in submitted)
    assert len({j["JobName"] for j in jobs}) == 1, "one snakemake run = one job name (its run id)"
    for j in jobs:
        assert (j["State"], j["ExitCode"]) == ("COMPLETED", "0:0"), j
    # the same jobs as the local run, and each one inside a SLURM job: the comment is rule_<rule>[_wildcards_..]
    # for a single job, rule_<group id>_<its rules> for a group (whose rules snakemake's log lists)
    ran = _job_stats(log)
    assert ran == _job_stats(local_run[1]), "the cluster run planned other jobs than the local run"
    groups, local_rules = _rules_of_jobs(log)
    expected = set(ran) - local_rules
    assert expected and "all" not in expected, (ran, local_rules)
    covered: set[str] = set()
    for j in jobs:
        comment = j["Comment"]
        gids = [g for g in groups if comment.startswith(f"rule_{g}_")]
        if gids:
            covered.update(groups[max(gids, key=len)])
            continue
        singles = [r for r in expected if comment == f"rule_{r}" or comment.startswith(f"rule_{r}_wildcards_")]
        assert singles, f"SLURM job {j} is neither a rule nor a group of this run"
        covered.add(max(singles, key=len))
    assert covered == expected, f"rules without a SLURM job: {sorted(expected - covered)}"
    cluster.timings["slurm_jobs"] = len(jobs)
    cluster.timings["snakemake_jobs"] = sum(ran.values())


def test_example_outputs_identical_to_local_run(env, request):
    _up(env)
    local_run, slurm_run = request.getfixturevalue("local_run"), request.getfixturevalue("slurm_run")
    local, remote = _tsvs(local_run[0]), _tsvs(slurm_run["out"])
    assert local, "the local run wrote no TSV"
    assert sorted(remote) == sorted(local)
    differ = [name for name in local if local[name] != remote[name]]
    assert not differ, f"TSVs differ between the local and the SLURM run: {differ}"


def test_rerun_submits_nothing(env, request):
    cluster = _up(env)
    slurm_run = request.getfixturevalue("slurm_run")
    start = _last_jobid(cluster)
    proc = _snakemake(slurm_run["args"], slurm_run["wd"], cluster.env)
    assert proc.returncode == 0, _failed(proc, cluster)
    assert "Nothing to be done" in proc.stderr + proc.stdout, _reasons(proc.stderr)
    assert _jobs_after(cluster, start) == []
