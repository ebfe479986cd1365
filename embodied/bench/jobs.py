"""The SLURM jobs of a bench's runs, as recorded beside them and as SLURM reports them: what both the
launchers (never train a run whose job still runs) and :mod:`.slurm` (submit, wait, report) read.

Beside each submitted run, ``<out>/<method>/seed<k>/slurm_job.json`` records its job id, its
logs and what it waits for; ``squeue`` (and ``sacct`` for jobs squeue no longer knows) says
whether that job is still queued or running.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from embodied.bench.config import BenchConfig
from embodied.bench.runner import run_dir
from embodied.errors import UserError

JOB_FILE = "slurm_job.json"
"""Beside a run submitted to SLURM: its job id, its logs, what it waits for."""

JOB_FORMAT = "embodied-bench-slurm-job"

QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
RUNNING = {"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "SUSPENDED"}
"""Job states (squeue's %T) in which the job may still train its run."""


# --------------------------------------------------------------------------- records
def record_path(cfg: BenchConfig, key: tuple[str, int]) -> Path:
    return run_dir(cfg, *key) / JOB_FILE


def read_record(cfg: BenchConfig, key: tuple[str, int]) -> dict | None:
    try:
        record = json.loads(record_path(cfg, key).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == JOB_FORMAT else None


# --------------------------------------------------------------------------- asking SLURM
def job_states(ids: list[str]) -> dict[str, str]:
    """``{job id: state}`` (with the reason after an ended job's: ``CANCELLED (Dependency...)``)
    of the jobs SLURM still knows (``squeue --states=all``: the queued,
    running and recently ended ones; then ``sacct`` for older ones, where the cluster keeps
    accounts). A job in neither is gone: it ended long ago. A :class:`UserError` when squeue
    cannot answer: then nobody can tell whether a job still runs, and nothing is submitted."""
    if not ids:
        return {}
    if shutil.which("squeue") is None:
        raise UserError(
            f"runs of this bench were submitted to SLURM (jobs {', '.join(sorted(ids)[:3])}...), but "
            "squeue is not found here to ask whether they still run; run it where SLURM is, or delete "
            f"the runs' {JOB_FILE} if those jobs are gone"
        )
    arrays = sorted({i.split("_")[0] for i in ids})
    done = subprocess.run(
        [
            "squeue",
            "--noheader",
            "--array",
            "--states=all",
            f"--jobs={','.join(arrays)}",
            "--format=%i|%T|%r",
        ],
        capture_output=True,
        text=True,
    )
    states: dict[str, str] = {}
    if done.returncode == 0:
        for line in done.stdout.splitlines():
            job, state, reason = (line.strip().split("|") + ["", ""])[:3]
            ended = state and state not in QUEUED | RUNNING
            states[job] = (
                f"{state} ({reason})" if ended and reason not in ("", "None") else state or "UNKNOWN"
            )
    elif "invalid job id" not in done.stderr.lower():  # none of them known any more: all ended
        raise UserError(f"squeue could not say whether this bench's jobs still run: {done.stderr.strip()}")
    missing = [i for i in ids if i not in states]
    if missing and shutil.which("sacct"):
        done = subprocess.run(
            [
                "sacct",
                "--noheader",
                "--parsable2",
                "--allocations",
                "--format=JobID,State",
                "-j",
                ",".join(missing),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode == 0:  # no accounting on this cluster: nothing more to learn
            for line in done.stdout.splitlines():
                job, _, state = line.strip().partition("|")
                if job in missing and state:
                    states[job] = state.split()[0]
    return {i: states[i] for i in ids if i in states}


def base_state(state: str | None) -> str:
    return state.split()[0] if state else "GONE"


def is_alive(state: str | None) -> bool:
    return base_state(state) in QUEUED | RUNNING


def alive_jobs(cfg: BenchConfig, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """``{run: job id}`` of the runs whose recorded job is still queued or running."""
    records = {k: r for k in keys if (r := read_record(cfg, k)) is not None}
    states = job_states(sorted({r["job_id"] for r in records.values()}))
    return {k: r["job_id"] for k, r in records.items() if is_alive(states.get(r["job_id"]))}
