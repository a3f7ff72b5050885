"""A new user's first experiment (issue 18): real snakemake runs on the shapes of data people bring.

One end-to-end run of a plain count matrix without ``bulk.annotation`` (every output and the report), shared by
the tests of this file: the resume test kills a second run of the same experiment during the DE fit and
compares every table of its resumed run byte for byte with it. Another run fails at run time on a wrong
annotation file and must show the one-line reason on the terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
N_GENES = 3000


def write_airway(tmp: Path, repo: Path, **bulk) -> Path:
    """The first 3,000 airway genes (resources/airway) and the bundled sheet, as a user's own files."""
    tmp.mkdir(parents=True, exist_ok=True)
    with open(repo / "resources" / "airway" / "counts.tsv") as src, open(tmp / "counts.tsv", "w") as dst:
        for i, line in enumerate(src):
            if i > N_GENES:
                break
            dst.write(line)
    (tmp / "samples.tsv").write_text((repo / "config" / "samples.tsv").read_text())
    cfg = {"results": "results", "bulk": {"counts": "counts.tsv", "samples": "samples.tsv", "design": "~ cell + dex",
                                          "reference_levels": {"dex": "untrt"},
                                          "contrasts": {"dex_vs_untrt": ["dex", "trt", "untrt"]}, **bulk}}
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "config.yaml"


def command(repo: Path) -> list[str]:
    """What the README tells a user to run (with 2 cores)."""
    return [str(SNAKEMAKE), "-s", str(repo / "Snakefile"), "--configfile", "config.yaml", "--cores", "2"]


def run(repo: Path, workdir: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command(repo), cwd=workdir, capture_output=True, text=True, env=env, timeout=timeout)


def tables(results: Path) -> dict[str, bytes]:
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*.tsv"))}


@pytest.fixture(scope="module")
def plain_matrix_run(repo, tmp_path_factory) -> Path:
    """A genes x samples matrix from a core facility, no annotation file, no single-cell section: run it all."""
    work = tmp_path_factory.mktemp("plain_matrix")
    write_airway(work, repo)
    proc = run(repo, work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = subprocess.run([*command(repo), "--report", "report.html"], cwd=work, capture_output=True, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=600)
    assert report.returncode == 0, report.stderr[-4000:]
    return work


def test_plain_matrix_without_annotation_makes_every_output(plain_matrix_run):
    """Issue 18 item 1: it crashed in bulk_deg_heatmap (KeyError 'gene_name'); gene IDs now serve as names."""
    res_dir = plain_matrix_run / "results" / "bulk"
    res = pd.read_csv(res_dir / "de" / "dex_vs_untrt" / "results.tsv", sep="\t", dtype={"gene_name": str})
    assert list(res.columns[:3]) == ["gene_id", "gene_name", "baseMean"]
    assert (res["gene_name"] == res["gene_id"]).all() and len(res) > 2000
    deg = pd.read_csv(res_dir / "de" / "dex_vs_untrt" / "deg.tsv", sep="\t")
    assert (deg["gene_name"] == deg["gene_id"]).all() and len(deg) > 0
    for fig in ("deg_heatmap", "volcano", "ma"):
        assert (res_dir / "plots" / "dex_vs_untrt" / f"{fig}.png").stat().st_size > 10_000, fig
    summary = pd.read_csv(res_dir / "de" / "summary.tsv", sep="\t")
    assert summary.loc[0, "n_up"] + summary.loc[0, "n_down"] == len(deg)
    assert (plain_matrix_run / "results" / "run_info.html").is_file()
    html = (plain_matrix_run / "report.html").read_text(errors="replace")
    assert len(html) > 100_000 and "deg_heatmap" in html


def test_killed_run_resumes_with_the_same_command(repo, tmp_path, plain_matrix_run):
    """Issue 18 item 6: SIGKILL during the DE fit (a power cut), the same command again, identical tables."""
    write_airway(tmp_path, repo)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(command(repo), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    fit_log = tmp_path / "results" / "logs" / "bulk" / "fit.log"
    deadline = time.monotonic() + 600
    while not fit_log.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the fit started"
    time.sleep(1.0)  # inside the fit job (importing the fit's modules alone takes longer)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and its running job, as a power cut would
    proc.wait()
    assert not (tmp_path / "results" / "bulk" / "de" / "dex_vs_untrt" / "results.tsv").exists()
    assert list((tmp_path / ".snakemake" / "locks").glob("*.lock")), "the killed run left no lock to test"
    again = run(repo, tmp_path)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "removed the lock left by an earlier run" in again.stderr
    got, want = tables(tmp_path / "results"), tables(plain_matrix_run / "results")
    assert sorted(got) == sorted(want) and len(want) >= 10
    assert [name for name in want if got[name] != want[name]] == []


def test_runtime_failure_shows_the_reason_on_the_terminal(repo, tmp_path):
    """Issue 18 item 7: the annotation of another genome (mouse GSE121659 for human airway) is read at run time;
    the terminal gets the one-line reason, not only snakemake's "check log", and no half-written dataset."""
    write_airway(tmp_path, repo, annotation=str(repo / "resources" / "gse121659" / "genes.tsv"))
    proc = run(repo, tmp_path)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("degflow:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "gse121659/genes.tsv" in lines[0] and "none of the 3000 gene IDs" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "results" / "bulk" / "counts" / "dataset.h5ad").exists()
    log = (tmp_path / "results" / "logs" / "bulk" / "dataset.log").read_text()
    assert lines[0] in log


def test_unexpected_error_in_a_job_is_one_terminal_line(repo, tmp_path):
    """Any other exception in a rule's script: traceback in the log, one `degflow: rule ... failed` line outside."""
    script = tmp_path / "job.py"
    log = tmp_path / "logs" / "job.log"
    script.write_text(
        "import sys, types\n"
        f"sys.path.insert(0, {str(repo / 'workflow' / 'scripts')!r})\n"
        "from _common import setup\n"
        f"setup(types.SimpleNamespace(log=[{str(log)!r}], threads=1, rule='bulk_deg_heatmap'))\n"
        "import pandas as pd\n"
        "pd.DataFrame({'gene_id': ['a']})['gene_name']\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"degflow: rule bulk_deg_heatmap failed: KeyError: 'gene_name' (traceback in {log})"]
    assert "Traceback" in log.read_text() and "KeyError: 'gene_name'" in log.read_text()


def test_cell_type_without_markers_in_the_data_is_told(repo, tmp_path):
    """Issue 18 item 5: a marker list of another species' symbols only warned in a log; now the terminal, the
    annotation page and the log say which cell type can never be assigned. Runs the rule's script (sc_annotate)
    on PBMC 3k, log-normalised, grouped by the published Seurat tutorial labels."""
    import anndata as ad
    import scanpy as sc

    from degflow.io.singlecell import read_sample

    adata = read_sample(repo / "resources" / "pbmc3k" / "filtered_min3cells_v3", sample="pbmc3k")
    labels = pd.read_csv(repo / "resources" / "pbmc3k" / "seurat_pbmc3k_final_annotations.csv", index_col=0)
    labels = labels.dropna()  # the cells the tutorial's QC kept
    adata = adata[adata.obs_names.str.removeprefix("pbmc3k_").isin(labels.index)].copy()
    adata.obs["leiden_1.0"] = pd.Categorical(
        labels["seurat_annotation"].reindex(adata.obs_names.str.removeprefix("pbmc3k_")).to_numpy())
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    adata.write_h5ad(tmp_path / "processed.h5ad")
    markers = yaml.safe_load((repo / "resources" / "markers" / "pbmc.yaml").read_text())
    markers["Microglia"] = ["Tmem119", "P2ry12", "Cx3cr1"]  # mouse symbols: none is in human PBMC data
    (tmp_path / "markers.yaml").write_text(yaml.safe_dump(markers))
    out = tmp_path / "out"
    runner = tmp_path / "run_rule.py"
    runner.write_text(
        "import runpy, sys, types\n"
        f"sys.path.insert(0, {str(repo / 'workflow' / 'scripts')!r})\n"
        "ns = types.SimpleNamespace\n"
        "class NL(list):  # snakemake's Namedlist: by name, by position, keys()\n"
        "    def __init__(self, **kw):\n"
        "        super().__init__(kw.values()); self.__dict__.update(kw)\n"
        "    def keys(self):\n"
        "        return self.__dict__.keys()\n"
        f"smk = ns(input=NL(h5ad={str(tmp_path / 'processed.h5ad')!r}, markers={str(tmp_path / 'markers.yaml')!r}),\n"
        "          params=ns(groupby='leiden_1.0', min_score=0, min_margin=0.5,\n"
        "                    scale={'on_disk': 'auto', 'chunk_cells': 20000, 'marker_cells_per_group': 2000}),\n"
        "          threads=1, rule='sc_annotate',\n"
        f"          output=NL(scores={str(out / 'scores.tsv')!r}, html={str(out / 'scores.html')!r},\n"
        f"                    h5ad={str(out / 'annotated.h5ad')!r}), log=[{str(out / 'annotate.log')!r}])\n"
        f"runpy.run_path({str(repo / 'workflow' / 'scripts' / 'sc_annotate.py')!r}, init_globals={{'snakemake': smk}})\n")
    out.mkdir()
    proc = subprocess.run([sys.executable, str(runner)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [ln for ln in proc.stderr.splitlines() if ln.startswith("degflow note:")]
    assert len(notes) == 1 and "'Microglia'" in notes[0] and "none of its marker genes" in notes[0]
    assert "never assigned: Microglia" in (out / "scores.html").read_text()
    assert "Microglia" in (out / "annotate.log").read_text()
    scores = pd.read_csv(out / "scores.tsv", sep="\t")
    assert scores["Microglia"].isna().all() and "Microglia" not in set(scores["cell_type"])
    assert ad.read_h5ad(out / "annotated.h5ad").obs["cell_type"].notna().all()


def test_lock_of_a_live_run_is_kept(tmp_path):
    """The stale-lock removal never takes the lock of a run that is still going (two runs writing one folder)."""
    from degflow.runstate import clear_stale_lock, snakemake_running_in

    (tmp_path / "Snakefile").write_text('rule slow:\n    output: "done.txt"\n    shell: "sleep 60; touch {output}"\n')
    proc = subprocess.Popen([str(SNAKEMAKE), "--cores", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        locks = tmp_path / ".snakemake" / "locks"
        deadline = time.monotonic() + 120
        while not list(locks.glob("*.lock")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(locks.glob("*.lock")), "the live run took no lock"
        assert proc.pid in snakemake_running_in(tmp_path)
        assert clear_stale_lock(tmp_path) is False and list(locks.glob("*.lock"))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert snakemake_running_in(tmp_path) == []
    assert clear_stale_lock(tmp_path) is True and not list(locks.glob("*.lock"))


def test_lock_taken_on_another_host_is_kept(tmp_path):
    """On a shared filesystem the run holding the lock may be on another node, invisible to this machine's process
    list: a lock whose run was recorded on another host is never removed (``--unlock`` stays the way there)."""
    import socket

    from degflow.runstate import OWNER_FILE, clear_stale_lock, lock_host, record_owner

    locks = tmp_path / ".snakemake" / "locks"
    record_owner(tmp_path)  # no lock yet: this host is recorded
    assert lock_host(tmp_path) == socket.gethostname()
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    (tmp_path / ".snakemake" / OWNER_FILE).write_text("compute-node-17\t4242\n")
    record_owner(tmp_path)  # a lock is held: the live run's record is left as it is
    assert lock_host(tmp_path) == "compute-node-17"
    assert clear_stale_lock(tmp_path) is False and list(locks.glob("*.lock"))
    (tmp_path / ".snakemake" / OWNER_FILE).write_text(f"{socket.gethostname()}\t4242\n")
    assert clear_stale_lock(tmp_path) is True and not list(locks.glob("*.lock"))
