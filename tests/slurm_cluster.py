"""A real, throwaway one-node SLURM cluster on localhost, for tests/test_slurm.py.

It is the Debian ``slurm-wlm`` stack, nothing mocked: munged, MariaDB + slurmdbd (job accounting, so
``sacct`` answers exactly as on a production cluster), slurmctld and one slurmd, all started from
configuration files written to a temporary folder and stopped again by :meth:`SlurmCluster.stop`.

Why these choices (Slurm 22.05, Debian 12):

* ``sacct`` needs accounting storage. With ``AccountingStorageType=accounting_storage/none`` it only
  prints "Slurm accounting storage is disabled" (``sacct -c`` can read a ``jobcomp/filetxt`` log, but
  that log has no job comment and snakemake-executor-plugin-slurm calls plain ``sacct``). So the
  cluster runs slurmdbd on a private MariaDB (its own datadir, port and socket).
* slurmd runs "configless" (``--conf-server``, ``SlurmctldParameters=enable_configless``), as most
  current clusters do: the executor plugin's job step strips every ``SLURM_*`` variable (so also
  ``SLURM_CONF``) before it calls ``srun`` inside a job, and ``srun`` must find the configuration the
  way it does on a compute node: slurmd links ``/run/slurm/conf`` to its configuration cache.
  Consequences: an existing ``/etc/slurm/slurm.conf`` would win over ``/run/slurm/conf`` (we refuse to
  start then), and munge must listen on its default socket (slurmd fetches the configuration before it
  can read ``AuthInfo``): a munged already answering there is used, otherwise we start one.
* No cgroups (``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``): works in containers
  and sandboxes.

Everything is root-only (slurmd must run as root), like the packages' own service units.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# executable -> Debian package providing it
EXECUTABLES = {
    "munged": "munge",
    "munge": "munge",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "slurmdbd": "slurmdbd",
    "sbatch": "slurm-client",
    "sacct": "slurm-client",
    "srun": "slurm-client",
    "mariadbd": "mariadb-server",
    "mariadb-install-db": "mariadb-server",
    "mariadb": "mariadb-client",
}
APT_PACKAGES = ["slurm-wlm", "slurmdbd", "munge", "mariadb-server"]
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
CONFIGLESS_LINK = Path("/run/slurm/conf")
SYSTEM_SLURM_CONF = Path("/etc/slurm/slurm.conf")
LOCK_FILE = Path(tempfile.gettempdir()) / "degflow-slurm-test.lock"  # one cluster per machine


class ClusterError(RuntimeError):
    """The cluster could not be installed or started; the message says why."""


def _which(exe: str) -> str | None:
    return shutil.which(exe, path=os.environ.get("PATH", "") + ":" + SBIN_PATH)


def _tail(path: Path, n: int = 25) -> str:
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} not written)"
    return "\n".join(lines[-n:])


def missing_executables() -> list[str]:
    return [exe for exe in EXECUTABLES if _which(exe) is None]


def ensure_installed(timeout: float = 600) -> float:
    """Install Debian's slurm-wlm, slurmdbd, munge and MariaDB when any piece is missing.

    Returns the seconds spent installing (0 when everything was there). Raises ClusterError.
    """
    missing = missing_executables()
    if not missing:
        return 0.0
    if os.geteuid() != 0:
        raise ClusterError(f"SLURM is not installed ({', '.join(missing)} missing) and we are not root to apt-get it")
    if _which("apt-get") is None:
        raise ClusterError(f"SLURM is not installed ({', '.join(missing)} missing) and there is no apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", PATH=SBIN_PATH)
    t0 = time.monotonic()
    from apt_lock import apt_lock

    with apt_lock():
        for cmd in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
        ):
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                raise ClusterError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n"
                                   f"{(proc.stdout + proc.stderr)[-3000:]}")
    still = missing_executables()
    if still:
        raise ClusterError(f"after apt-get install {' '.join(APT_PACKAGES)}, still missing: {', '.join(still)}")
    return time.monotonic() - t0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _node_hardware() -> dict[str, int]:
    """CPUs/sockets/cores/threads as slurmd sees them (``slurmd -C``), memory from /proc/meminfo."""
    out = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=60).stdout
    hw = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", out)}
    cpus = hw.get("CPUs") or os.cpu_count() or 1
    mem_mb = hw.get("RealMemory") or 1024
    return {
        "CPUs": cpus,
        "Sockets": hw.get("SocketsPerBoard", 1) * hw.get("Boards", 1),
        "CoresPerSocket": hw.get("CoresPerSocket", cpus),
        "ThreadsPerCore": hw.get("ThreadsPerCore", 1),
        # a bit below the machine's memory: slurmd drains a node that has less than configured
        "RealMemory": max(256, mem_mb - min(1024, mem_mb // 10)),
    }


class SlurmCluster:
    """One-node cluster ``degflow`` on 127.0.0.1. ``start()``, use ``env`` for client commands, ``stop()``."""

    def __init__(self, root: Path, cluster_name: str = "degflow"):
        self.root = Path(root)
        self.name = cluster_name
        self.node = socket.gethostname().split(".")[0]
        self.procs: dict[str, subprocess.Popen] = {}
        self.timings: dict[str, float] = {}
        self._lock_fd = None
        self._own_munged = False
        self.conf = self.root / "etc" / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.env["PATH"] = self.env.get("PATH", "") + ":" + SBIN_PATH

    # ------------------------------------------------------------------ helpers
    def _spawn(self, name: str, cmd: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.root / "log" / f"{name}.out", "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env or self.env, start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def _wait(self, what: str, ready, timeout: float, proc_name: str | None = None, log: Path | None = None):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            proc = self.procs.get(proc_name) if proc_name else None
            if proc is not None and proc.poll() is not None:
                raise ClusterError(
                    f"{proc_name} exited with code {proc.returncode} while waiting for {what}:\n"
                    f"{_tail(self.root / 'log' / f'{proc_name}.out')}\n{_tail(log) if log else ''}"
                )
            time.sleep(0.2)
        tail = _tail(self.root / "log" / f"{proc_name}.out") if proc_name else ""
        raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}\n{_tail(log) if log else ''}")

    def run(self, *cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        """A SLURM client command (sacct, squeue, scontrol, ...) against this cluster."""
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise ClusterError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    # ------------------------------------------------------------------ start
    def start(self, lock_timeout: float = 900) -> "SlurmCluster":
        if os.geteuid() != 0:
            raise ClusterError("slurmd must run as root and this test is not root")
        # one test cluster per machine at a time (/run/slurm/conf and the munge socket are machine-wide)
        self._lock_fd = open(LOCK_FILE, "w")
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ClusterError(f"another SLURM test cluster held {LOCK_FILE} for {lock_timeout:.0f}s") from None
                time.sleep(1)
        if SYSTEM_SLURM_CONF.exists():
            raise ClusterError(
                f"{SYSTEM_SLURM_CONF} exists: srun inside jobs would read it instead of the test cluster's "
                "configuration (it takes precedence over /run/slurm/conf); run this test on a machine "
                "without a configured SLURM"
            )
        t0 = time.monotonic()
        for sub in ("etc", "log", "state", "spool", "db", "run"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.ports = {k: _free_port() for k in ("slurmctld", "slurmd", "slurmdbd", "mysql")}
        for step in (self._start_munge, self._start_mariadb, self._write_configs, self._start_slurmdbd,
                     self._start_slurmctld, self._start_slurmd):
            t = time.monotonic()
            step()
            self.timings[step.__name__.lstrip("_")] = round(time.monotonic() - t, 2)
        self.timings["start"] = round(time.monotonic() - t0, 2)
        return self

    def _start_munge(self):
        def munge_ok() -> bool:
            if not MUNGE_SOCKET.exists():
                return False
            enc = subprocess.run([_which("munge"), "-n"], capture_output=True, timeout=10)
            if enc.returncode != 0:
                return False
            dec = subprocess.run([_which("unmunge")], input=enc.stdout, capture_output=True, timeout=10)
            return dec.returncode == 0

        if munge_ok():  # a munged already serves this machine (e.g. the package's service): use it
            return
        key = self.root / "etc" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        MUNGE_SOCKET.parent.chmod(0o755)
        run = self.root / "run"
        self._spawn("munged", [
            _which("munged"), "--foreground", "--force", f"--key-file={key}", f"--socket={MUNGE_SOCKET}",
            f"--pid-file={run / 'munged.pid'}", f"--log-file={self.root / 'log' / 'munged.log'}",
            f"--seed-file={run / 'munged.seed'}",
        ])
        self._own_munged = True
        self._wait("munged", munge_ok, 30, "munged")

    def _start_mariadb(self):
        db, run = self.root / "db", self.root / "run"
        proc = subprocess.run(
            [_which("mariadb-install-db"), "--no-defaults", f"--datadir={db}", "--user=root",
             "--auth-root-authentication-method=socket", "--skip-test-db"],
            capture_output=True, text=True, timeout=120, env=self.env,
        )
        if proc.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
        self.mysql_socket = run / "mysqld.sock"
        self._spawn("mariadbd", [
            _which("mariadbd"), "--no-defaults", f"--datadir={db}", f"--socket={self.mysql_socket}",
            f"--port={self.ports['mysql']}", "--bind-address=127.0.0.1", "--skip-name-resolve", "--user=root",
            f"--pid-file={run / 'mysqld.pid'}", "--innodb-buffer-pool-size=64M", "--innodb-lock-wait-timeout=900",
            "--skip-log-bin",
        ])
        self._wait("MariaDB", lambda: self.mysql_socket.exists() and _port_open(self.ports["mysql"]), 60, "mariadbd")
        sql = ("CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'degflow-test'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        proc = subprocess.run([_which("mariadb"), "--no-defaults", "-S", str(self.mysql_socket), "-u", "root",
                               "-e", sql], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise ClusterError(f"creating the slurm database user failed: {proc.stderr}")

    def _write_configs(self):
        hw = _node_hardware()
        r = self.root
        self.conf.write_text(f"""\
# written by tests/slurm_cluster.py: a one-node test cluster on 127.0.0.1
ClusterName={self.name}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ports['slurmctld']}
SlurmdPort={self.ports['slurmd']}
SlurmctldParameters=enable_configless
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={r / 'state'}
SlurmdSpoolDir={r / 'spool'}/%n
SlurmctldPidFile={r / 'run'}/slurmctld.pid
SlurmdPidFile={r / 'run'}/slurmd.pid
SlurmctldLogFile={r / 'log'}/slurmctld.log
SlurmdLogFile={r / 'log'}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports['slurmdbd']}
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
ReturnToService=2
# reject at sbatch time a job no node can ever run (instead of leaving it PENDING forever)
EnforcePartLimits=ALL
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
NodeName={self.node} NodeHostname={self.node} NodeAddr=127.0.0.1 CPUs={hw['CPUs']} Sockets={hw['Sockets']} \
CoresPerSocket={hw['CoresPerSocket']} ThreadsPerCore={hw['ThreadsPerCore']} RealMemory={hw['RealMemory']} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        self.hardware = hw
        dbd = r / "etc" / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={self.ports['slurmdbd']}
SlurmUser=root
LogFile={r / 'log'}/slurmdbd.log
PidFile={r / 'run'}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports['mysql']}
StorageUser=slurm
StoragePass=degflow-test
StorageLoc=slurm_acct_db
""")
        dbd.chmod(0o600)  # slurmdbd refuses a world-readable file holding a password

    def _start_slurmdbd(self):
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"])
        self._wait("slurmdbd", lambda: _port_open(self.ports["slurmdbd"]), 60, "slurmdbd",
                   self.root / "log" / "slurmdbd.log")

    def _start_slurmctld(self):
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"])
        self._wait("slurmctld", lambda: self.run("scontrol", "ping", check=False, timeout=10).returncode == 0
                   and "UP" in self.run("scontrol", "ping", check=False, timeout=10).stdout,
                   60, "slurmctld", self.root / "log" / "slurmctld.log")

    def _start_slurmd(self):
        env = {k: v for k, v in self.env.items() if k != "SLURM_CONF"}
        self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node,
                               "--conf-server", f"127.0.0.1:{self.ports['slurmctld']}"], env=env)

        def idle() -> bool:
            out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False, timeout=10).stdout.strip()
            return out.startswith("idle") and (CONFIGLESS_LINK / "slurm.conf").exists()

        self._wait("slurmd to register and the node to be idle", idle, 90, "slurmd",
                   self.root / "log" / "slurmd.log")
        # the root user and its default account are created in slurmdbd when slurmctld registers
        self._wait("the cluster in slurmdbd", lambda: self.name in self.run(
            "sacctmgr", "-n", "-P", "list", "cluster", "format=cluster", check=False).stdout, 30,
            "slurmdbd", self.root / "log" / "slurmdbd.log")

    # ------------------------------------------------------------------ query / stop
    def sacct(self, *fields: str, since: str = "2000-01-01T00:00:00", steps: bool = False) -> list[dict[str, str]]:
        """Every job of the cluster since ``since`` as dicts of the given sacct fields."""
        args = ["sacct", "-a", "-P", "-n", "-S", since, "-E", "now", f"--format={','.join(fields)}"]
        if not steps:
            args.insert(1, "-X")
        out = self.run(*args).stdout
        return [dict(zip(fields, line.split("|"), strict=False)) for line in out.splitlines() if line.strip()]

    def logs(self, n: int = 30) -> str:
        return "\n".join(f"--- {p.name}\n{_tail(p, n)}" for p in sorted((self.root / "log").glob("*")))

    def stop(self):
        """Cancel jobs, stop every daemon this object started (reverse order), remove what it linked."""
        try:
            if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
                self.run("scancel", "--full", "--user", "root", check=False, timeout=20)
                end = time.monotonic() + 20
                while time.monotonic() < end:
                    if not self.run("squeue", "-h", check=False, timeout=10).stdout.strip():
                        break
                    time.sleep(0.5)
        except Exception:  # noqa: BLE001 - stopping must go on
            pass
        for name in ["slurmd", "slurmctld", "slurmdbd", "mariadbd", "munged"]:
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        try:
            if CONFIGLESS_LINK.is_symlink() and str(self.root) in os.readlink(CONFIGLESS_LINK):
                CONFIGLESS_LINK.unlink()
        except OSError:
            pass
        if self._own_munged and MUNGE_SOCKET.exists():
            for p in (MUNGE_SOCKET, Path(str(MUNGE_SOCKET) + ".lock")):
                try:
                    p.unlink()
                except OSError:
                    pass
        if self._lock_fd is not None:
            self._lock_fd.close()
            self._lock_fd = None

