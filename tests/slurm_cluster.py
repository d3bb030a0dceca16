"""A real single-node Slurm for the tests, from Debian's packages (`slurm-wlm`, `slurmdbd`,
`mariadb-server`, `munge`), every file in one temporary folder: munged, MariaDB (no grant tables,
TCP on a free port), slurmdbd (accounting, because submitit reads job states with sacct),
slurmctld and slurmd (proctrack/linuxproc, task/none: no cgroups). ``SLURM_CONF`` points the
client commands (sbatch, squeue, sacct, scancel) at it.

:func:`missing` says what is not installed and the command that installs it; ``make slurm``
installs it where it runs as root with apt."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

PACKAGES = ("slurm-wlm", "slurmdbd", "mariadb-server", "munge")
PROGRAMS = {"slurmctld": "slurm-wlm", "slurmd": "slurm-wlm", "sbatch": "slurm-wlm",
            "sacct": "slurm-wlm", "slurmdbd": "slurmdbd", "mariadbd": "mariadb-server",
            "mariadb-install-db": "mariadb-server", "munged": "munge"}
PARTITION = "debug"
_SBIN = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")


def _which(name: str) -> Optional[str]:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN))


def missing() -> Optional[str]:
    """None when the cluster can start here; else one line: what is missing and how to get it."""
    absent = sorted({pkg for prog, pkg in PROGRAMS.items() if _which(prog) is None})
    if absent:
        return (f"the Slurm tests need Debian's {', '.join(absent)} (missing programs); install "
                f"them with `make slurm` as root, or `sudo apt-get install -y {' '.join(PACKAGES)}`")
    if os.geteuid() != 0:
        return ("the Slurm tests start slurmd, which must run as root to launch jobs; run the "
                "tests as root (they install nothing and write only a temporary folder)")
    return None


def _free_ports(n: int) -> List[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _slurm_conf(d: Path, ports: Dict[str, int], cpus: int, mem_mb: int) -> str:
    host = socket.gethostname().split(".")[0]
    return f"""ClusterName=unirepclip
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ports['ctld']}
SlurmdPort={ports['slurmd']}
AuthType=auth/munge
AuthInfo=socket={d}/munge.socket
CredType=cred/munge
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports['dbd']}
AccountingStoragePass={d}/munge.socket
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=600
InactiveLimit=0
SchedulerParameters=sched_interval=1,bf_interval=1
MessageTimeout=20
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


def _dbd_conf(d: Path, ports: Dict[str, int]) -> str:
    return f"""AuthType=auth/munge
AuthInfo=socket={d}/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={ports['dbd']}
SlurmUser=root
PidFile={d}/slurmdbd.pid
LogFile={d}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports['db']}
StorageUser=root
StorageLoc=slurm_acct_db
"""


class Cluster:
    """The daemons of one test cluster under ``folder``; :meth:`stop` ends them all."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.procs: List[subprocess.Popen] = []
        self.env = dict(os.environ, SLURM_CONF=str(self.folder / "slurm.conf"))

    def _spawn(self, name: str, cmd: List[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.out", "w")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def _wait(self, what: str, ok, timeout: float = 60.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ok():
                return
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                break
            time.sleep(0.3)
        logs = "; ".join(f"{f.name}: {f.read_text()[-400:]!r}"
                         for f in sorted(self.folder.glob("*.out")) + sorted(
                             self.folder.glob("*.log")) if f.stat().st_size)
        raise RuntimeError(f"test Slurm: {what} did not come up within {timeout:.0f} s ({logs})")

    def _run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True,
                              timeout=30)

    def start(self, cpus: int = 8, mem_mb: int = 8000) -> "Cluster":
        d = self.folder
        for sub in ("state", "spool", "db"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        ports = dict(zip(("ctld", "slurmd", "dbd", "db"), _free_ports(4)))
        key = d / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn("munged", [_which("munged"), "--foreground", "--force",
                               f"--socket={d}/munge.socket", f"--key-file={key}",
                               f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log",
                               f"--seed-file={d}/munge.seed"])
        subprocess.run([_which("mariadb-install-db"), f"--datadir={d}/db", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True, env=self.env, timeout=120)
        self._spawn("mariadb", [_which("mariadbd"), "--no-defaults", f"--datadir={d}/db",
                                "--user=root", "--skip-grant-tables", "--bind-address=127.0.0.1",
                                f"--port={ports['db']}", f"--socket={d}/mysql.sock",
                                f"--pid-file={d}/mysql.pid", "--innodb-buffer-pool-size=32M"])
        self._wait("munged", lambda: (d / "munge.socket").exists())
        self._wait("MariaDB", lambda: _listening(ports["db"]))
        (d / "slurm.conf").write_text(_slurm_conf(d, ports, cpus, mem_mb))
        dbd = d / "slurmdbd.conf"
        dbd.write_text(_dbd_conf(d, ports))
        dbd.chmod(0o600)
        self._spawn("slurmdbd", [_which("slurmdbd"), "-D"])
        self._wait("slurmdbd", lambda: _listening(ports["dbd"]))
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-i"])
        self._wait("slurmctld", lambda: self._run("scontrol", "ping").returncode == 0
                   and "UP" in self._run("scontrol", "ping").stdout)
        self._spawn("slurmd", [_which("slurmd"), "-D"])
        self._wait("slurmd", lambda: self._run("sinfo", "-h", "-o", "%t").stdout.strip()
                   in ("idle", "mix", "alloc"))
        # accounting: the cluster registered in slurmdbd, so sacct answers
        self._wait("accounting", lambda: self._run("sacct", "-n", "-X").returncode == 0)
        return self

    def stop(self) -> None:
        import signal
        _drain(self.env)
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in reversed(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
        _kill_leftovers(self.env["SLURM_CONF"])


def _drain(env: Dict[str, str], timeout: float = 20.0) -> None:
    """Cancel every job of the test cluster and wait for them to end."""
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(list(cmd), env=env, capture_output=True, text=True,
                                  timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    run("scancel", f"--partition={PARTITION}")
    end = time.monotonic() + timeout
    while time.monotonic() < end and run("squeue", "-h", "-o", "%i").strip():
        time.sleep(0.5)


def _kill_leftovers(conf: str) -> None:
    """SIGKILL any process still running under this cluster's configuration (a job step the
    stopped slurmd left behind): found by ``SLURM_CONF`` in its environment."""
    import signal
    mark = f"SLURM_CONF={conf}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if mark in (d / "environ").read_bytes().split(b"\0"):
                os.kill(int(d.name), signal.SIGKILL)
        except (OSError, ValueError):
            pass


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop_pids(pids: List[int]) -> None:
    import signal
    for pid in reversed(pids):
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + 20
    for pid in reversed(pids):
        while time.monotonic() < end and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


class SharedCluster:
    """One cluster for every pytest-xdist worker: the first user starts it under a file lock in
    the workers' common folder ``root``, each registers itself, and the last to leave stops it."""

    def __init__(self, root: Path, user: str):
        self.root, self.user = Path(root), user
        self.folder = self.root / "slurm-cluster"
        self.users = self.root / "slurm-users"

    def _lock(self):
        from filelock import FileLock
        return FileLock(str(self.root / "slurm-cluster.lock"))

    def enter(self) -> Dict[str, str]:
        """Start the cluster (or join it); returns the environment its clients need."""
        with self._lock():
            up = self.folder / "pids"
            if not up.exists():
                shutil.rmtree(self.folder, ignore_errors=True)
                self.folder.mkdir(parents=True)
                c = Cluster(self.folder)
                t0 = time.monotonic()
                try:
                    c.start()
                except BaseException:
                    c.stop()
                    raise
                (self.folder / "startup_s").write_text(f"{time.monotonic() - t0:.1f}")
                up.write_text(" ".join(str(p.pid) for p in c.procs))
            self.users.mkdir(exist_ok=True)
            (self.users / self.user).touch()
        return {"SLURM_CONF": str(self.folder / "slurm.conf")}

    def leave(self) -> None:
        with self._lock():
            (self.users / self.user).unlink(missing_ok=True)
            up = self.folder / "pids"
            if up.exists() and not any(self.users.iterdir()):
                conf = str(self.folder / "slurm.conf")
                _drain(dict(os.environ, SLURM_CONF=conf))
                _stop_pids([int(p) for p in up.read_text().split()])
                _kill_leftovers(conf)
                up.unlink()
