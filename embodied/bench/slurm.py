"""A bench on a SLURM cluster through submitit: each unfinished run one job of a job array.

    embodied-bench --preset visual --launcher slurm --slurm-partition gpu --slurm-gpus-per-task 1

Each job calls :func:`~embodied.bench.runner.run_one`, as a local run does, with
``cpus_per_task`` training threads: the same run at the same seed and thread count gives the
same numbers. The files of the jobs (submitit's pickles and each job's log,
``<job>_0_log.out`` and ``.err``) are in ``<out>/slurm/``.

Bookkeeping: beside each submitted run, ``<out>/<method>/seed<k>/slurm_job.json`` records its
job id, its logs and what it waits for. The same command run again (or after ``--no-wait``)
collects what finished (``bench.json``, as ever), leaves a run whose job is still queued or
running to that job (SLURM is asked: ``squeue``, and ``sacct`` for jobs squeue no longer
knows), and submits only the others: no run is trained twice at once. A run whose job ended
without its ``bench.json`` (a crash, a lost node, the time limit, ``scancel``) is reported with
its job id, its log and the log's last lines, and a rerun submits it again.

Dependencies: a run that reads other runs' checkpoints (a probe: this seed's policy and
recognizer; an ablation in frozen_u mode: the recognizer) is submitted with them, in an array
of its own that SLURM holds until they succeed (``--dependency=afterok:<their jobs>``, and
``--kill-on-invalid-dep=yes``: if one fails, SLURM cancels it, and a rerun submits both). So
one submission holds the whole grid: the runs that read nothing in one array, those that read
the same runs in one array each (a seed's two probes together).

Time limits: a job near its limit (SIGUSR2, ``timeout_min``) is requeued by submitit with the
same job id and resumes from its last checkpoint (``checkpoints/last.pt``, every ``ckpt_every``
steps), at most 3 times.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import submitit

from embodied.bench.config import BenchConfig
from embodied.bench.jobs import (
    JOB_FORMAT,
    QUEUED,
    RUNNING,
    alive_jobs,
    base_state,
    is_alive,
    job_states,
    read_record,
    record_path,
)
from embodied.bench.launchers import Failure, Outcome, Run, share_cores, sort_out, unmet
from embodied.bench.runner import MARKER, log, read_marker, run_dir
from embodied.errors import UserError
from embodied.fileio import write_text


def jobs_folder(cfg: BenchConfig) -> Path:
    return Path(cfg.out) / "slurm"


# --------------------------------------------------------------------------- the job
class ClusterRun(submitit.helpers.Checkpointable):
    """One run as a SLURM job: :func:`run_one` in the submitting command's folder with
    ``SLURM_CPUS_PER_TASK`` training threads. Checkpointable: near its time limit submitit
    requeues the same call, which resumes the training from ``checkpoints/last.pt``."""

    def __init__(self, cfg: BenchConfig, method: str, seed: int, data: dict, cwd: str) -> None:
        self.cfg, self.method, self.seed, self.data, self.cwd = cfg, method, seed, data, cwd

    def __call__(self) -> str:
        import torch

        from embodied.bench.runner import run_one

        os.chdir(self.cwd)  # the preset's relative paths (out, data) mean what they meant there
        cpus = int(os.environ.get("SLURM_CPUS_PER_TASK", "0"))
        cfg = self.cfg
        if cpus:
            torch.set_num_threads(cpus)
            cfg = share_cores(cfg, cpus)
        _, status = run_one(cfg, self.method, self.seed, self.data)
        return status


# --------------------------------------------------------------------------- submitting
def executor(cfg: BenchConfig) -> submitit.AutoExecutor:
    """submitit's executor with the preset's ``launcher`` parameters."""
    if shutil.which("sbatch") is None:
        raise UserError("launcher slurm: sbatch is not found here (run embodied-bench on a SLURM login node)")
    launcher = cfg.launcher
    folder = jobs_folder(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = {
        "timeout_min": launcher.timeout_min,
        "cpus_per_task": launcher.cpus_per_task,
        "slurm_array_parallelism": launcher.slurm_array_parallelism,
        "slurm_job_name": f"bench-{cfg.name}",
        "slurm_setup": list(launcher.slurm_setup),
        # a requeued job writes on after its earlier attempts in the same log (srun truncates it)
        "slurm_srun_args": ["--open-mode=append"],
    }
    if launcher.slurm_partition:
        params["slurm_partition"] = launcher.slurm_partition
    if launcher.gpus_per_task:
        params["slurm_gpus_per_task"] = launcher.gpus_per_task
    if launcher.mem_gb is not None:
        params["mem_gb"] = launcher.mem_gb
    ex.update_parameters(**params)
    return ex


def submit(cfg: BenchConfig, runs: list[Run], data: dict, ids: dict[tuple[str, int], str]) -> list[Failure]:
    """Submit ``runs``: an array of those that read no unfinished run, then one array per set
    of jobs the others wait for. ``ids``: the jobs of runs already queued or running; the new
    ones are added. Returns the runs that cannot be submitted (they read a run that is neither
    finished nor among these)."""
    if not runs:
        return []
    ex = executor(cfg)
    cwd = os.getcwd()
    extra = dict(cfg.launcher.slurm_additional_parameters)
    failures = []
    left = list(runs)
    while left:
        coming = {r.key for r in left}
        ready = [r for r in left if not any(n in coming for n in r.needs)]
        if not ready:
            raise RuntimeError(f"runs waiting for each other: {', '.join(map(str, left))}")
        groups: dict[tuple[str, ...], list[Run]] = defaultdict(list)
        for run in ready:
            waiting = [n for n in run.needs if n in ids]
            missing = unmet(run, _finished(cfg, run.needs), set(ids))
            if missing:
                names = ", ".join(f"{m}/seed{s}" for m, s in missing)
                failures.append(
                    Failure(run, f"not submitted: it reads {names}, neither finished nor submitted")
                )
                continue
            groups[tuple(sorted({ids[n] for n in waiting}))].append(run)
        for after, group in groups.items():
            params = dict(extra)
            if after:
                dependency = "afterok:" + ":".join(after)  # with the preset's own, if it has one
                params["dependency"] = ",".join(filter(None, (params.get("dependency"), dependency)))
                params["kill-on-invalid-dep"] = "yes"
            ex.update_parameters(slurm_additional_parameters=params)
            jobs = []
            with ex.batch():
                for run in group:
                    jobs.append(ex.submit(ClusterRun(cfg, run.method, run.seed, data, cwd)))
            submitted = datetime.now(timezone.utc).isoformat(timespec="seconds")
            for run, j in zip(group, jobs, strict=True):
                ids[run.key] = j.job_id
                record = {
                    "format": JOB_FORMAT,
                    "job_id": j.job_id,
                    "method": run.method,
                    "seed": run.seed,
                    "submitted": submitted,
                    "after": list(after),
                    "stdout": str(j.paths.stdout),
                    "stderr": str(j.paths.stderr),
                }
                path = record_path(cfg, run.key)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_text(path, json.dumps(record, indent=1) + "\n")
            first, last = jobs[0].job_id, jobs[-1].job_id
            span = first if first == last else f"{first}..{last}"
            waits = f", after {', '.join(after)}" if after else ""
            log(f"slurm: submitted {len(group)} run(s) as jobs {span}{waits}")
        left = [r for r in left if r not in ready]
    return failures


def _finished(cfg: BenchConfig, keys) -> set:
    return {k for k in keys if read_marker(run_dir(cfg, *k) / MARKER) is not None}


# --------------------------------------------------------------------------- waiting
def ended_failure(cfg: BenchConfig, run: Run, state: str | None, lines: int = 12) -> Failure:
    """A run whose job ended without its bench.json: the job, its state, its log's last lines."""
    record = read_record(cfg, run.key) or {}
    job = record.get("job_id")
    log_path, tail = None, []  # none: the job never started (a dependency failed)
    for path in (record.get("stderr"), record.get("stdout")):
        if path and Path(path).is_file():
            log_path = log_path or path
            text = _read(path)
            if text.strip():
                log_path, tail = path, [line for line in text.splitlines() if line.strip()][-lines:]
                break
    why = f"job ended {state}" if state else "job ended (SLURM no longer knows it)"
    return Failure(run, f"{why} without finishing the run", job=job, log=log_path, tail=tail)


def _read(path: str | None) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def wait_for(cfg: BenchConfig, runs: list[Run], poll_s: float) -> list[Failure]:
    """Wait until each of ``runs`` finished or its job ended, showing queued / running / done /
    failed and an ETA; returns the failures (each reported as its job ends)."""
    state_of: dict[tuple[str, int], str] = {}
    failures: dict[tuple[str, int], Failure] = {}
    done: set[tuple[str, int]] = set()
    started = time.monotonic()
    shown, shown_at = None, 0.0
    while True:
        open_runs = [r for r in runs if r.key not in done and r.key not in failures]
        done |= _finished(cfg, [r.key for r in open_runs])
        open_runs = [r for r in open_runs if r.key not in done]
        records = {r.key: read_record(cfg, r.key) or {} for r in open_runs}
        states = job_states(sorted({rec["job_id"] for rec in records.values() if "job_id" in rec}))
        for run in open_runs:
            state = states.get(records[run.key].get("job_id"))
            state_of[run.key] = base_state(state)
            if not is_alive(state) and run.key not in _finished(cfg, [run.key]):
                failures[run.key] = failure = ended_failure(cfg, run, state)
                log(f"failed: {failure.report()}")
        waiting = [state_of[r.key] for r in runs if r.key not in done and r.key not in failures]
        queued = sum(1 for state in waiting if state in QUEUED)
        running = sum(1 for state in waiting if state in RUNNING)
        counts = (queued, running, len(done), len(failures))
        now = time.monotonic()
        if counts != shown or now - shown_at > 300:
            log(
                f"slurm: {queued} queued, {running} running, {len(done)} done, {len(failures)} failed "
                f"of {len(runs)}{_eta(len(done) + len(failures), queued + running, now - started)}"
            )
            shown, shown_at = counts, now
        if queued + running == 0:
            return list(failures.values())
        time.sleep(poll_s)


def _eta(ended: int, left: int, elapsed: float) -> str:
    """From the rate at which runs ended while this command waited."""
    if not left:
        return ""
    if not ended:
        return " (ETA once a run ends)"
    minutes = left * elapsed / ended / 60
    return f", ETA {minutes:.0f} min" if minutes >= 1 else ", ETA < 1 min"


# --------------------------------------------------------------------------- the launcher
def run_slurm(cfg: BenchConfig, runs: list[Run], data: dict, wait: bool = True) -> Outcome:
    """Submit the unfinished ``runs`` that no job is training (the others are skipped or left to
    their jobs), then, with ``wait``, wait for every run of the bench still on the cluster."""
    outcome = Outcome()
    todo = sort_out(cfg, runs, data, outcome)
    ids = {key: record["job_id"] for key in outcome.queued if (record := read_record(cfg, key))}
    again = {r.key: record for r in todo if (record := read_record(cfg, r.key)) is not None}
    states = job_states(sorted({record["job_id"] for record in again.values()}))
    for run in todo:  # say why a run is submitted again
        if run.key in again:
            job = again[run.key]["job_id"]
            ended = states.get(job, "(no longer known)")
            log(f"{run}: job {job} ended {ended} without finishing; submitting it again")
    # what the runs to submit wait for: unfinished runs still on the cluster from before (a run
    # whose bench.json is written is finished, though its job may be exiting yet)
    needed = {n for r in todo for n in r.needs if n not in ids}
    ids.update(alive_jobs(cfg, sorted(needed - _finished(cfg, needed))))
    before = set(ids)
    outcome.failed += submit(cfg, todo, data, ids)
    outcome.submitted = [(k, ids[k]) for k in ids if k not in before]
    on_cluster = [r for r in runs if r.key in ids]
    if not wait:
        if on_cluster:
            log(
                f"slurm: {len(on_cluster)} run(s) on the cluster ({len(outcome.submitted)} submitted now); "
                "run the same command again to collect them"
            )
        outcome.queued = [r.key for r in on_cluster]
        return outcome
    try:
        if on_cluster:
            outcome.failed += wait_for(cfg, on_cluster, cfg.launcher.poll_s)
    except KeyboardInterrupt:
        log("stopped waiting; the jobs go on on the cluster: run the same command again to collect them")
        raise
    failed = {f.run.key for f in outcome.failed}
    outcome.ran = [r.key for r in on_cluster if r.key not in failed]
    outcome.queued = []
    return outcome
