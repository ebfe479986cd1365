"""Where a bench's runs go: a bench is a list of calls of :func:`~embodied.bench.runner.run_one`,
one per (method, seed); a launcher only decides where each call runs (submitit's idea: the
cluster is the executor's concern, the same code runs locally or on SLURM).

- ``local``, ``jobs: 1`` (the default): one after another in this process (``run_bench``'s loop);
- ``local``, ``jobs: N``: N at once, each in its own process (:func:`run_local`);
- ``slurm``: each run one job of a SLURM job array through submitit (:mod:`embodied.bench.slurm`).

Every launcher has the same bookkeeping: a run is finished when its ``bench.json`` is there (made
with the same settings on the same data), so a rerun of the same command trains only what is
not; a run that reads another's checkpoints (a probe, a frozen_u ablation: :attr:`Run.needs`)
starts after that one finished; a run that fails is reported (:class:`Failure`) and the others
go on. A run whose SLURM job is still queued or running (``slurm_job.json`` beside it) is left
to it by every launcher: no run is trained twice at once.

Cores: with N runs at once each trains with ``cores // N`` threads, and its evaluation uses at
most as many rollout workers (each one thread; neither changes an evaluation's numbers). A
training's numbers are bit-identical at the same thread count; torch may round differently
with another (as a resumed run with other ``threads``: train/config.py, RESUME_FREE_KEYS).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass

from embodied.bench.config import BenchConfig, label
from embodied.bench.jobs import JOB_FILE, alive_jobs
from embodied.bench.runner import ablation_runs, finished_marker, log, run_dir, run_one, train_config
from embodied.errors import UserError, one_line

"""Beside a run submitted to SLURM (embodied.bench.slurm): its job id and logs."""


@dataclass(frozen=True)
class Run:
    """One (method, seed) of a bench and the runs whose checkpoints it reads."""

    method: str
    seed: int
    needs: tuple[tuple[str, int], ...] = ()

    @property
    def key(self) -> tuple[str, int]:
        return (self.method, self.seed)

    def __str__(self) -> str:
        return f"seed {self.seed}, {label(self.method)}"


@dataclass
class Failure:
    """A run that did not finish: why, and on SLURM its job and the log to read."""

    run: Run
    why: str
    job: str | None = None
    log: str | None = None
    tail: list[str] = dataclasses.field(default_factory=list)

    def report(self) -> str:
        where = f" (job {self.job}; log {self.log})" if self.log else f" (job {self.job})" if self.job else ""
        lines = [f"{self.run}: {self.why}{where}"]
        lines += [f"    {line}" for line in self.tail]
        return "\n".join(lines)

    def to_json(self) -> dict:
        return {
            "method": self.run.method,
            "seed": self.run.seed,
            "why": self.why,
            "job": self.job,
            "log": self.log,
            "tail": self.tail,
        }


@dataclass
class Outcome:
    """What a launcher did: ``ran`` and ``skipped`` as run_bench reports them, the failures,
    the runs submitted to SLURM now and those still queued or running there."""

    ran: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    skipped: list[tuple[str, int]] = dataclasses.field(default_factory=list)
    failed: list[Failure] = dataclasses.field(default_factory=list)
    submitted: list[tuple[tuple[str, int], str]] = dataclasses.field(default_factory=list)
    queued: list[tuple[str, int]] = dataclasses.field(default_factory=list)


def plan(cfg: BenchConfig, seeds: list[int], methods: list[str] | None = None) -> list[Run]:
    """The runs of ``seeds`` (of ``methods``, every one without), in the order one process
    runs them: the comparison, seed by seed, then the ablations, seed by seed."""
    ablations = list(ablation_runs(cfg))
    known = [*cfg.methods, *ablations]
    if methods is not None:
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise UserError(f"method {unknown[0]!r} is not one of the bench's runs: {', '.join(known)}")
    runs = []
    for group in (cfg.methods, ablations):
        for seed in seeds:
            for method in group:
                if methods is None or method in methods:
                    runs.append(Run(method, seed, needs(cfg, method, seed)))
    return runs


def needs(cfg: BenchConfig, method: str, seed: int) -> tuple[tuple[str, int], ...]:
    """The runs whose checkpoints (method, seed) reads: its frozen models are this seed's runs
    of the methods that train them alone (``train_config`` wires ``probe.*_ckpt`` to them)."""
    frozen = train_config(cfg, method, seed).objective.frozen
    return tuple((name, seed) for name in sorted(frozen))


def unmet(run: Run, done: set, coming: set) -> list[tuple[str, int]]:
    """The runs ``run`` reads that are neither finished nor on their way in this bench."""
    return [n for n in run.needs if n not in done and n not in coming]


def share_cores(cfg: BenchConfig, cores: int) -> BenchConfig:
    """``cfg`` with at most ``cores`` rollout workers per evaluation (a free setting: the
    numbers do not depend on it)."""
    workers = cfg.eval.workers
    if workers > cores:
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, workers=max(1, cores)))
    return cfg


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def sort_out(cfg: BenchConfig, runs: list[Run], data: dict, outcome: Outcome) -> list[Run]:
    """The runs still to train: a finished one is skipped (one finished with other settings is
    a UserError, before anything starts), one whose SLURM job is alive is left to it."""
    todo = []
    for run in runs:
        if finished_marker(cfg, run.method, run.seed, data) is not None:
            outcome.skipped.append(run.key)
        else:
            todo.append(run)
    alive = {}
    if any((run_dir(cfg, *r.key) / JOB_FILE).is_file() for r in todo):  # some were sent to SLURM
        alive = alive_jobs(cfg, [r.key for r in todo])
    for run in todo:
        if run.key in alive:
            log(f"{run}: job {alive[run.key]} is still queued or running on SLURM; left to it")
            outcome.queued.append(run.key)
    return [r for r in todo if r.key not in alive]


# --------------------------------------------------------------------------- N at once, here
def run_local(cfg: BenchConfig, runs: list[Run], data: dict, jobs: int) -> Outcome:
    """Train and evaluate ``runs`` with ``jobs`` at once, each in a process of its own (spawned:
    no copy of this process's threads or torch state), a run only after those it reads."""
    outcome = Outcome()
    todo = sort_out(cfg, runs, data, outcome)
    done = set(outcome.skipped)
    cores = available_cores()
    threads = max(1, cores // jobs)
    job_cfg = share_cores(cfg, threads)
    log(f"{len(todo)} run(s), {jobs} at once, {threads} thread(s) each ({cores} cores)")
    failed: set[tuple[str, int]] = set()
    pending = list(todo)
    running: dict[Future, Run] = {}
    pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        while pending or running:
            for run in list(pending):
                if len(running) >= jobs:
                    break
                lost = [n for n in run.needs if n in failed]
                missing = unmet(run, done, {r.key for r in pending} | {r.key for r in running.values()})
                if lost or missing:
                    pending.remove(run)
                    failed.add(run.key)
                    outcome.failed.append(Failure(run, _blocked(lost, missing)))
                elif all(n in done for n in run.needs):
                    pending.remove(run)
                    running[pool.submit(_run_here, job_cfg, run.method, run.seed, data, threads)] = run
            if not running:
                if pending:  # every run left waits for another left: cannot happen with plan()'s runs
                    raise RuntimeError(f"runs waiting for each other: {', '.join(map(str, pending))}")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                run = running.pop(future)
                err = future.exception()
                if err is None:
                    done.add(run.key)
                    (outcome.ran if future.result() == "ran" else outcome.skipped).append(run.key)
                else:
                    failed.add(run.key)
                    outcome.failed.append(Failure(run, one_line(err, typed=True), tail=_tail_of(err)))
                    log(f"{run}: failed ({one_line(err, typed=True, limit=200)}); the others go on")
    finally:  # Ctrl-C reached the workers too: do not start what is queued, wait for them to stop
        pool.shutdown(wait=True, cancel_futures=True)
    return outcome


def _run_here(cfg: BenchConfig, method: str, seed: int, data: dict, threads: int) -> str:
    """One run in a worker process of :func:`run_local`, with ``threads`` training threads (a
    config's own ``threads`` wins)."""
    import torch

    torch.set_num_threads(threads)
    _, status = run_one(cfg, method, seed, data)
    return status


def _blocked(lost: list, missing: list) -> str:
    if lost:
        return f"not run: it reads {_names(lost)}, which failed"
    return f"not run: it reads {_names(missing)}, not finished and not among the runs asked for"


def _names(keys) -> str:
    return ", ".join(f"{m}/seed{s}" for m, s in keys)


def _tail_of(err: BaseException, lines: int = 8) -> list[str]:
    """The last lines of ``err``'s traceback (a worker's own, which concurrent.futures keeps as
    the cause)."""
    cause = err.__cause__
    text = str(cause) if cause is not None else "".join(traceback.format_exception(err))
    return [line for line in text.strip().splitlines() if line.strip()][-lines:]
