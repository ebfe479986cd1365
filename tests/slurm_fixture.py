"""A one-node SLURM cluster on this machine, for the launcher tests: munged, slurmctld and
slurmd started as root with a minimal ``slurm.conf`` whose state, logs and sockets live in one
temporary folder (nothing under /etc is written, and a munged already serving the default
socket is left alone: ours has its own). Debian's ``slurm-wlm`` and ``munge`` packages provide
the daemons (``.ci/run`` installs them).

    cluster = start_cluster(tmp)          # raises ClusterUnavailable with the reason
    os.environ.update(cluster.env)        # SLURM_CONF: sbatch, squeue, scancel find it
    ...
    cluster.stop()

No accounting daemon (``sacct`` answers nothing here): the launcher must not need one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "sinfo", "srun", "scontrol")


class ClusterUnavailable(RuntimeError):
    """Why no cluster could be started here (the tests skip with it)."""


@dataclass
class Cluster:
    root: Path
    conf: Path
    cpus: int
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def log(self, name: str, lines: int = 20) -> str:
        path = self.root / f"{name}.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Cancel what is left and wait for it to end, then stop the daemons this cluster started
        (slurmd first) and any of its step daemons left without their slurmd."""
        env = {**os.environ, **self.env}
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["scancel", "--full", "--user", "root"], env=env, timeout=10, capture_output=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                done = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, timeout=10, capture_output=True)
                if done.returncode or not done.stdout.strip():
                    break
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            pid = self.pids.pop(name, None)
            if pid is not None:
                _terminate(pid)
        for pid in self.step_daemons():
            _terminate(pid, wait=2)

    def step_daemons(self) -> list[int]:
        """slurmstepd processes of this cluster: started by its slurmd, so with its SLURM_CONF."""
        mine = f"SLURM_CONF={self.conf}".encode()
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if (proc / "comm").read_text().strip() == "slurmstepd" and mine in (
                    proc / "environ"
                ).read_bytes().split(b"\0"):
                    found.append(int(proc.name))
            except OSError:
                continue
        return found


def _terminate(pid: int, wait: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        if Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z":
            return False  # ended; its parent (init, for a daemon) reaps it
    except (ProcessLookupError, FileNotFoundError):
        return False
    with contextlib.suppress(OSError):  # a zombie of ours: reap it
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 1024


def slurm_conf(root: Path, host: str, cpus: int, munge_socket: Path) -> str:
    return "\n".join(
        [
            "ClusterName=embodied-test",
            f"SlurmctldHost={host}(127.0.0.1)",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={munge_socket}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={root}/state",
            f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/slurmctld.pid",
            f"SlurmdPidFile={root}/slurmd.pid",
            f"SlurmctldLogFile={root}/slurmctld.log",
            f"SlurmdLogFile={root}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=sched_interval=1",
            "ReturnToService=2",
            "MpiDefault=none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MaxArraySize=1000",
            "MinJobAge=600",  # finished jobs stay known to squeue/scontrol for 10 minutes
            "KillWait=2",  # scancel: SIGKILL 2 s after SIGTERM (which submitit ignores)
            "InactiveLimit=0",
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={_memory_mb()} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def start_cluster(root: Path, timeout: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd with their state in ``root``; wait until the node is idle."""
    missing = [n for n in DAEMONS + CLIENTS if shutil.which(n) is None]
    if missing:
        raise ClusterUnavailable(
            f"SLURM is not installed here ({', '.join(missing)} not found; as root: "
            "apt-get install -y slurm-wlm munge, as .ci/run does)"
        )
    if os.geteuid() != 0:
        raise ClusterUnavailable("starting slurmd and munged needs root")
    key = Path("/etc/munge/munge.key")
    if not key.is_file():
        raise ClusterUnavailable(f"{key} is missing (the munge package makes it on install)")
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(exist_ok=True)
    host = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    munge_socket = root / "munge" / "munge.socket"
    conf = root / "slurm.conf"
    conf.write_text(slurm_conf(root, host, cpus, munge_socket))
    cluster = Cluster(root, conf, cpus)
    env = {**os.environ, **cluster.env}
    commands = {
        "munged": [
            "munged",
            "--force",
            "--foreground",
            f"--socket={munge_socket}",
            f"--key-file={key}",
            f"--log-file={root}/munged.log",
            f"--pid-file={root}/munge/munged.pid",
            f"--seed-file={root}/munge/munged.seed",
        ],
        "slurmctld": ["slurmctld", "-D", "-i", "-f", str(conf)],  # -i: no state from a previous run
        "slurmd": ["slurmd", "-D", "-f", str(conf), "-N", host],
    }
    try:
        for name in DAEMONS:
            out = open(root / f"{name}.out", "wb")  # noqa: SIM115 - the daemon keeps it
            proc = subprocess.Popen(commands[name], env=env, stdout=out, stderr=subprocess.STDOUT)
            out.close()
            cluster.pids[name] = proc.pid
            if name == "munged":
                _wait(lambda: munge_socket.exists(), 10, lambda: cluster.log("munged") or "no socket")
            time.sleep(0.5)
            if proc.poll() is not None:
                text = (root / f"{name}.out").read_text(errors="replace").strip()
                raise ClusterUnavailable(
                    f"{name} exited at once ({proc.returncode}): {text or cluster.log(name)}"
                )

        def idle() -> bool:
            done = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            return done.returncode == 0 and done.stdout.strip() == "idle"

        _wait(
            idle,
            timeout,
            lambda: f"slurmctld: {cluster.log('slurmctld', 5)}\nslurmd: {cluster.log('slurmd', 5)}",
        )
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait(ready, timeout: float, why) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"the cluster did not come up in {timeout:.0f} s: {why()}")
        time.sleep(0.5)
