"""Record or check the sha256 of every TSV the bundled examples write.

A behaviour check for refactoring: record the hashes before a change, rerun after it, and any table that moved by
one byte is listed. Each example runs in a throw-away clone of the current commit (so nothing in the working tree
is touched) with the repository's ``.venv``; the shared data must be beside the repository (``../shared/data``) or
named by ``$DEGFLOW_SHARED_DATA``.

Usage (from the repository root)::

    .venv/bin/python tests/_scripts/example_hashes.py --record tests/data/example_hashes.tsv
    .venv/bin/python tests/_scripts/example_hashes.py --check tests/data/example_hashes.tsv

``--only NAME`` limits the run to some examples (repeatable). The table is ``example``, ``path``, ``sha256``; the
check exits 1 and lists every missing, new or changed table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: name -> config file (None: the default config/config.yaml)
EXAMPLES: dict[str, str | None] = {
    "default": None,
    "gse121659": "config/examples/gse121659.yaml",
    "star_tcell": "config/examples/star_tcell.yaml",
    "salmon_yeast": "config/examples/salmon_yeast.yaml",
    "kang2018": "config/examples/kang2018.yaml",
}


def run_example(name: str, configfile: str | None, *, workdir: Path, cores: int) -> dict[str, str] | None:
    """Run one example in ``workdir`` (a clone); ``{relative path: sha256}`` of its TSVs, None if it failed."""
    results = workdir / f"hash_results_{name}"
    cmd = [str(REPO / ".venv" / "bin" / "snakemake"), "--cores", str(cores), "--quiet"]
    if configfile:
        cmd += ["--configfile", configfile]
    cmd += ["--config", f"results={results.name}"]
    log = workdir / f"hash_{name}.log"
    # the clone's own library, not the one the shared .venv has installed in editable mode
    env = {**os.environ, "PYTHONPATH": str(workdir / "src")}
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        print(f"example_hashes: {name} failed (rc {proc.returncode}); see {log}", flush=True)
        return None
    return {
        str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(results.rglob("*.tsv"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--record", type=Path, help="write the hashes to this TSV")
    mode.add_argument("--check", type=Path, help="compare with this TSV; exit 1 on any difference")
    parser.add_argument("--only", action="append", choices=sorted(EXAMPLES), help="run only these examples")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--keep", action="store_true", help="keep the throw-away clone (its path is printed)")
    args = parser.parse_args()

    names = args.only or list(EXAMPLES)
    tmp = Path(tempfile.mkdtemp(prefix="degflow_hashes_"))
    clone = tmp / "repo"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    # uncommitted edits of the working tree count too: copy tracked files over the clone
    diff = subprocess.run(["git", "diff", "HEAD", "--binary"], cwd=REPO, capture_output=True, check=True).stdout
    if diff:
        subprocess.run(["git", "apply", "--whitespace=nowarn"], cwd=clone, input=diff, check=True)
    (clone / ".venv").symlink_to(REPO / ".venv")
    shared = os.environ.get("DEGFLOW_SHARED_DATA")
    shared_dir = Path(shared).parent if shared else REPO.parent / "shared"
    if not (tmp / "shared").exists():
        (tmp / "shared").symlink_to(shared_dir.resolve())
    rows: list[tuple[str, str, str]] = []
    failed = []
    for name in names:
        print(f"example_hashes: running {name} ...", flush=True)
        tables = run_example(name, EXAMPLES[name], workdir=clone, cores=args.cores)
        if tables is None:
            failed.append(name)
            continue
        rows += [(name, path, digest) for path, digest in tables.items()]
    print(f"example_hashes: {len(rows)} tables in {len(names) - len(failed)} examples ({tmp})")

    if args.record:
        with open(args.record, "w") as fh:
            fh.write("example\tpath\tsha256\n")
            fh.writelines(f"{e}\t{p}\t{h}\n" for e, p, h in rows)
        print(f"example_hashes: wrote {args.record}")
        sys.exit(1 if failed else 0)
    want = {}
    for line in args.check.read_text().splitlines()[1:]:
        e, p, h = line.split("\t")
        if e in names and e not in failed:
            want[(e, p)] = h
    got = {(e, p): h for e, p, h in rows}
    bad = [f"missing  {e}/{p}" for (e, p) in sorted(want.keys() - got.keys())]
    bad += [f"new      {e}/{p}" for (e, p) in sorted(got.keys() - want.keys())]
    bad += [f"changed  {e}/{p}" for k in sorted(want.keys() & got.keys()) if want[k] != got[k] for e, p in [k]]
    for line in bad:
        print(line)
    print(f"example_hashes: {len(want) - len(bad)} of {len(want)} tables identical" if bad else
          f"example_hashes: all {len(want)} tables identical")
    if failed:
        print(f"example_hashes: failed to run: {', '.join(failed)}")
    sys.exit(1 if bad or failed else 0)


if __name__ == "__main__":
    main()
