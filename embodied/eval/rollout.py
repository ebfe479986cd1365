"""Policy rollouts in the simulator: success with Wilson intervals, returns, lengths, episodes.

    results = evaluate_policy(policy, spec, ["drawer-open-v3"], episodes=50)
    results.success_rate, results.ci_low, results.ci_high      # overall, pooled over tasks
    results.tasks["drawer-open-v3"].success_rate                 # per task
    results.episodes[0]                                          # EpisodeRecord(task, seed, ...)

Seeds: episode i of every task runs with seed ``seed_start + i``; the default start,
:data:`~embodied.data.collect.EVAL_SEED_START`, is above every demonstration seed, and the
same seeds for every method and training seed make their results paired; a suite's own
``protocol`` (``metaworld``) fixes the episodes instead (:mod:`embodied.eval.protocol`).

Where the policy runs
---------------------
N = ``workers`` x ``envs_per_worker`` environments run in an
:class:`~embodied.eval.pool.EnvPool`: ``workers`` processes (0 or 1: in this process), each
holding ``envs_per_worker`` environments and stepping them one after the other.

- On a CPU (the default there, ``policy_in_workers``): every worker gets its own copy of the
  policy (pickled) and runs its share of the episodes by itself: ``predict_action`` on its
  ``envs_per_worker`` stacked observations, step them, again, and sends each episode back as
  it ends. No process waits for another, nothing crosses a pipe per step, and the policy's
  compute is spread over the workers' cores.
- Otherwise (a policy on a GPU, ``workers`` 0 or 1, ``policy_in_workers=False``, or a policy
  that cannot be pickled): this process acts for all N at once, ``predict_action`` on the
  stacked observations (N, ...), and sends the actions to the workers, in lock-step: the
  workers wait while the policy runs, and this process waits while they step.

Measured on the 2-core test machine with the quick benchmark's trained bc_mlp, 2 workers x 16
environments (``tools/bench_eval.py``, which prints every figure here): the lock-step made
about 0.75 of the steps per second of stepping the same episodes bare with zero actions, and
the policy in the workers about 1.0-1.1 (medians of 5 repeats). The lock-step loses the
policy's time, ~1 ms a call for 32 rows that every step waits for, and the barrier of the
slowest worker on every step. Several environments per worker pay the fixed part of a policy
call (torch's per-module dispatch, ~10 us a layer) once per ``envs_per_worker`` environment
steps.

A policy keeps rollout state for the whole batch (observation history, action queue,
temporal ensemble) and ``reset()`` clears all of it, so one environment cannot start its next
episode while the others go on. Evaluation therefore runs in lock-step *waves*: the planned
episodes are taken N at a time; every environment of a wave resets to its own task and seed,
``policy.reset()`` is called once, and all step together until each has ended; an environment
whose episode has ended idles (it is no longer stepped; its row of the policy's batch keeps
its last observation and its action is ignored) until the wave's longest episode ends::

    wave k, N = 3      step 0   1   2  ...                      policy.reset() once, at step 0
      env 0  (a, s)    act act act success | idle idle idle
      env 1  (a, s+1)  act act act act act act ... horizon
      env 2  (a, s+2)  act act error (recorded, failed) | idle ...

The cost is the idle slots of a wave, small when episodes have similar lengths (the usual
failure runs to the horizon), and an idle environment costs nothing but its row of the
policy's batch; the gain is that every policy, with or without history, sees exactly the
episodes it would see alone, whatever N. With the policy in the workers each worker runs its
share of a wave (its environments of the wave) as a wave of its own, at its own pace.

Order: building a Meta-World environment costs as much as ~600 steps, and an environment is
rebuilt when its task changes. So when N is at least the number of tasks the episodes run
seed after seed, task after task (every wave holds every task), and each wave's episodes go
to environments already built for their task (:func:`place`); with fewer environments than
tasks, task after task. ``on_episode`` sees each episode as it ends (the workers' episodes
interleave when the policy runs in them); :attr:`EvalResults.episodes` lists them in plan
order (task after task, seed after seed).

Robustness: an environment that raises, or returns NaN, ends its episode as a failure with
the reason in :attr:`EpisodeRecord.failure`; the evaluation goes on (the worker rebuilds its
environment). Ctrl-C raises :class:`EvaluationInterrupted`, a ``KeyboardInterrupt`` holding
the results of the episodes finished so far.
"""

from __future__ import annotations

import functools
import math
import multiprocessing as mp
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import torch

from embodied.data.collect import EVAL_SEED_START
from embodied.errors import UserError
from embodied.eval.envs import EpisodePlan, EvalEnv, Recording, default_env_fn
from embodied.eval.pool import EnvPool, Extension
from embodied.eval.protocol import EMBODIED, schedule
from embodied.eval.results import (
    EpisodeRecord,
    EvalResults,
    EvaluationFailed,
    EvaluationInterrupted,
    build_results,
)
from embodied.eval.waves import env_key, pickled_policy, place, policy_commands, run_wave
from embodied.models.common import DataSpec
from embodied.sim import SUITES, image_key, known_suites, load_suite


# --------------------------------------------------------------------------- set-up
def suite_of(tasks: Sequence[str]) -> str:
    """The one known suite whose spec holds every task of ``tasks``."""
    matches = [s for s in known_suites() if all(t in load_suite(s).tasks for t in tasks)]
    if len(matches) != 1:
        found = "no suite" if not matches else f"several suites ({', '.join(matches)})"
        raise UserError(f"tasks {', '.join(tasks)}: {found} holds them all; name the suite")
    return matches[0]


def instruction_ids(spec: DataSpec, suite: str, tasks: Sequence[str]) -> dict[str, int]:
    """The policy's instruction id of each task: the one its data gave the task
    (``spec.task_instructions``); for a spec saved before those existed, the suite's
    instruction's position in ``spec.instructions``, or, for data worded otherwise with one
    instruction per task, the task's class index."""
    suite_spec = load_suite(suite)
    trained = spec.task_names
    ids = {}
    for task in tasks:
        if trained and task not in trained:
            raise UserError(f"the policy was trained on {', '.join(trained)}; {task} is not among them")
        text = suite_spec.task(task).instruction
        if spec.tasks and len(spec.task_instructions) == len(spec.tasks):
            ids[task] = spec.task_instructions[spec.tasks.index(task)]
        elif not spec.instructions:
            ids[task] = 0
        elif text in spec.instructions:
            ids[task] = spec.instructions.index(text)
        elif spec.classes and len(spec.instructions) == len(spec.classes):
            # Data with its own wording, one instruction per task: the reader lists both in
            # the order the episodes first show them, so they correspond one to one.
            ids[task] = spec.classes.index(task)
        else:
            raise UserError(
                f"task {task}'s instruction {text!r} is not one the policy was trained with "
                f"({'; '.join(spec.instructions)})"
            )
    return ids


def policy_cameras(policy, spec: DataSpec, suite: str) -> tuple[tuple[str, ...], int | None]:
    """Cameras whose images the policy reads, and their size (None when it reads none)."""
    keys = list(getattr(getattr(policy, "config", None), "obs_keys", None) or spec.obs_shapes)
    cameras = load_suite(suite).cameras
    found = tuple(c for c in cameras if image_key(c) in keys)
    sizes = {spec.obs_shapes[image_key(c)][-1] for c in found if image_key(c) in spec.obs_shapes}
    if len(sizes) > 1:
        raise UserError(f"the policy reads images of several sizes ({sorted(sizes)}); one is supported")
    return found, (sizes.pop() if sizes else None)


@dataclass(frozen=True)
class Videos:
    """Rollout videos: the first ``episodes`` episodes of each task, ``cameras`` side by side, into
    ``folder`` (mp4, or GIF with ``gif``)."""

    episodes: int = 0
    folder: str | Path | None = None
    cameras: tuple[str, ...] = ()
    """Empty: the caller's default (embodied-eval: the observer camera); evaluate_policy needs one."""
    gif: bool = False
    fps: int = 20
    size: int = 256
    """Side of each camera's frames in pixels, rendered for watching apart from the policy's
    observations (which keep their size); 0: the observations' size, scaled up by whole factors."""


DEFAULT_ENVS_PER_WORKER = 16
"""Environments per worker process when not given (in process: 1): enough to amortise the
fixed part of a policy call (bc_mlp on an idle core: ~0.2 ms for 1 row, ~0.27 ms for 16) over
16 environment steps (~0.2-0.4 ms each); more would lengthen start-up (~0.15 s to build each)
and leave more slots idle at the end of a wave for little gain. Never more than the episodes need."""


WORKER_PRELOAD = (
    "embodied.eval.waves",
    "embodied.policies",
    *(module for suite in SUITES.values() for module in suite.worker_preload),
)
"""What the forkserver imports once for every worker: torch and the policies (for the policy
workers), the suites' environments. A worker forked from it starts in ~2 s on the test machine
instead of ~5 s for a spawned one that imports them itself (the second evaluation of a program
on; the first starts the server)."""


def make_env_pool(
    suite: str,
    plan: list[EpisodePlan],
    num_envs: int,
    workers: int,
    cameras: tuple[str, ...],
    image_size: int,
    horizon: int | None,
    terminate_on_success: bool,
    env_fn: Callable[..., gym.Env],
    context: str | None,
    extension: Extension | None = None,
) -> EnvPool:
    """``num_envs`` :class:`~embodied.eval.envs.EvalEnv` s in ``workers`` processes (0: in
    process), each built for its first planned episode; ``extension``: the workers' extra
    commands (the policy workers, :func:`policy_commands`)."""
    fns = [
        functools.partial(
            EvalEnv,
            suite,
            plan[min(i, len(plan) - 1)],
            cameras,
            image_size,
            horizon,
            terminate_on_success,
            env_fn=env_fn,
        )
        for i in range(num_envs)
    ]
    # Not fork: workers must not inherit this process's GL contexts or torch's thread pools.
    if context == "forkserver" and "forkserver" not in mp.get_all_start_methods():
        context = "spawn"
    return EnvPool(fns, workers, context=context, extension=extension, preload=WORKER_PRELOAD)


# --------------------------------------------------------------------------- evaluation
def evaluate_policy(
    policy,
    spec: DataSpec,
    tasks: Sequence[str],
    episodes: int,
    seed_start: int = EVAL_SEED_START,
    workers: int = 2,
    horizon: int | None = None,
    videos: Videos = Videos(),
    *,
    envs_per_worker: int | None = None,
    observer: str | None = None,
    observer_episodes: int = 0,
    suite: str | None = None,
    image_size: int | None = None,
    terminate_on_success: bool = True,
    on_episode: Callable[[EpisodeRecord, Recording | None], None] | None = None,
    env_fn: Callable[..., gym.Env] = default_env_fn,
    context: str | None = "forkserver",
    torch_threads: int | None = 1,
    policy_in_workers: bool | None = None,
    progress: bool = False,
    protocol: str = EMBODIED,
    protocol_seed: int | None = None,
) -> EvalResults:
    """Roll ``policy`` out for ``episodes`` episodes of each task; see the module doc.

    - ``policy``: ``predict_action(obs, instruction_id) -> (N, A)`` and ``reset()`` (the
      contract of :class:`embodied.policies.Policy`); put in eval mode for the evaluation.
    - ``spec``: the policy's :class:`DataSpec`; its tasks (:attr:`DataSpec.task_names`) must
      include every task, and give each task's instruction id.
    - ``workers``: worker processes stepping the environments; 0 or 1: none, all in this process.
    - ``envs_per_worker``: environments each worker steps (the policy acts for that many at
      once in a worker, or for ``workers x envs_per_worker`` in lock-step); None:
      :data:`DEFAULT_ENVS_PER_WORKER` with workers, 1 in process; never more than the
      episodes need. The results depend neither on it nor on ``workers``: every episode is
      fixed by its seed.
    - ``horizon``: step limit of every episode (None: each task's default, or the protocol's).
    - ``protocol``, ``protocol_seed``: ``embodied`` (seeds from ``seed_start``) or a suite's
      own, e.g. ``metaworld`` with its seed (:mod:`embodied.eval.protocol`).
    - ``videos``: which episodes are written as videos, of which cameras, where (:class:`Videos`).
    - ``observer``, ``observer_episodes``: the first ``observer_episodes`` episodes of each
      task also record the ``observer`` camera and the observations, passed to ``on_episode``
      (the recognizer's judgement, :mod:`embodied.eval.judge`).
    - ``suite``: None: the one suite that holds every task.
    - ``image_size``: side of every rendered image; None: the policy's image size, else the
      data's (``spec.image_size``), else 84.
    - ``on_episode(record, recording)``: called in the main process for every episode as it
      ends (see the module doc), with its frames and observations when they were recorded.
    - ``env_fn(suite, task, **make_env kwargs)``: builds one environment (tests inject
      failures through it); must be picklable for worker processes.
    - ``context``: how worker processes start. ``forkserver`` (default, where the platform
      has it; else ``spawn``) forks them from a clean server process that has imported
      :data:`WORKER_PRELOAD` once, so an evaluation after the first in a program (training's
      rollouts, a benchmark) starts faster; ``spawn`` starts fresh interpreters. Neither
      inherits a GL context or torch's thread pool from this process; a script that calls
      this with ``workers > 1`` needs the usual ``if __name__ == "__main__":`` guard.
    - ``torch_threads``: torch's intra-op threads in this process during the evaluation
      (restored after), and in each policy worker. The workers keep the cores busy, and a
      small batch on a busy CPU with several threads is slow: bc_mlp at W = 2 took 95 ms a
      step with 2 threads and 0.5 ms with 1 on the 2-core test machine under load. None
      leaves torch's setting.
    - ``policy_in_workers``: run a copy of the policy in each worker (module doc); None: when
      there are worker processes, the policy is on the CPU and it can be pickled; True when
      it cannot is a :class:`UserError`. The results say which ran
      (:attr:`EvalResults.policy_in_workers`).
    """
    tasks = list(tasks)
    if not tasks:
        raise UserError("no task to evaluate")
    if episodes < 1:
        raise UserError(f"episodes must be at least 1, got {episodes}")
    video_episodes, cameras = videos.episodes, tuple(videos.cameras)
    if video_episodes > 0 and not cameras:
        raise UserError("videos need at least one camera")
    if video_episodes > 0 and videos.folder is None:
        raise ValueError("videos.episodes > 0 needs a videos.folder")
    if observer_episodes > 0 and not observer:
        raise ValueError("observer_episodes > 0 needs an observer camera")
    suite = suite or suite_of(tasks)
    suite_spec = load_suite(suite)
    suite_spec.check_cameras([*cameras, *([observer] if observer else [])])
    instructions = instruction_ids(spec, suite, tasks)
    base_cameras, policy_size = policy_cameras(policy, spec, suite)
    if policy_size is not None and image_size is not None and image_size != policy_size:
        raise UserError(f"the policy reads {policy_size} px images; image_size {image_size} differs")
    image_size = int(policy_size or image_size or spec.image_size or 84)
    fixed = schedule(
        protocol,
        suite=suite,
        tasks=tasks,
        episodes=episodes,
        seed_start=seed_start,
        horizon=horizon,
        seed=protocol_seed,
    )
    horizon = fixed.horizon

    plan = [  # task after task, seed after seed
        EpisodePlan(
            task,
            seed_start + i,
            (observer,) if i < observer_episodes else (),
            keep_obs=i < observer_episodes,
            video=cameras if i < video_episodes else (),
            video_size=videos.size or image_size,
            variant=fixed.variants[task][i] if fixed.variants else None,
        )
        for task in tasks
        for i in range(episodes)
    ]
    in_process = workers <= 1
    processes = 0 if in_process else workers
    if envs_per_worker is None:
        envs_per_worker = 1 if in_process else DEFAULT_ENVS_PER_WORKER
    if envs_per_worker < 1:
        raise UserError(f"envs_per_worker must be at least 1, got {envs_per_worker}")
    num_envs = max(1, min(max(processes, 1) * envs_per_worker, len(plan)))
    processes = min(processes, num_envs)
    envs_per_worker = math.ceil(num_envs / max(processes, 1))
    run_order = plan
    if len(tasks) > 1 and num_envs >= len(tasks):
        # Seed after seed, task after task: every wave holds every task, so each environment can
        # keep its task from wave to wave (see place) instead of being rebuilt at task boundaries.
        run_order = [plan[t * episodes + i] for i in range(episodes) for t in range(len(tasks))]
    plan_index = {(p.task, p.seed): k for k, p in enumerate(plan)}

    params = list(policy.parameters()) if hasattr(policy, "parameters") else []
    device = params[0].device if params else torch.device("cpu")
    asked = policy_in_workers
    if asked and (processes == 0 or device.type != "cpu"):
        raise UserError("policy_in_workers needs worker processes (workers >= 2) and a policy on the CPU")
    was_training = getattr(policy, "training", False)
    if hasattr(policy, "eval"):
        policy.eval()  # before pickling: the workers' copies are in eval mode too
    blob = None
    if asked or (asked is None and processes > 0 and device.type == "cpu"):
        blob = pickled_policy(policy, required=bool(asked))
    policy_in_workers = blob is not None
    threads = torch.get_num_threads()

    # Every wave's placement, decided up front (it depends only on the plan).
    waves: list[tuple[list[EpisodePlan | None], list[int]]] = []
    built = [env_key(run_order[min(i, len(plan) - 1)]) for i in range(num_envs)]  # make_env_pool's
    for first in range(0, len(plan), num_envs):
        plans, in_run_order = place(run_order[first : first + num_envs], built)
        built = [env_key(p) if p is not None else b for p, b in zip(plans, built, strict=True)]
        waves.append((plans, in_run_order))

    def ids(plans: Sequence[EpisodePlan | None]) -> list[int]:
        return [instructions[p.task] if p is not None else 0 for p in plans]

    records: list[EpisodeRecord] = []
    started = time.perf_counter()
    extension = functools.partial(policy_commands, blob, torch_threads) if policy_in_workers else None
    try:
        envs = make_env_pool(
            suite,
            run_order,
            num_envs,
            processes,
            base_cameras,
            image_size,
            horizon,
            terminate_on_success,
            env_fn,
            context,
            extension,
        )
    except BaseException:
        if hasattr(policy, "train"):
            policy.train(was_training)
        raise
    startup_s = time.perf_counter() - started
    # Changed here and restored in the `finally` below, together with the policy's mode.
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    started = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm

        # Start-up is its own phase, so the rate and ETA count episodes only; smoothing 0: the
        # average since the start, since episodes come back a wave at a time.
        where = f"{processes} worker(s)" if processes else "this process"
        print(f"rollouts: {num_envs} environment(s) in {where} ready in {startup_s:.1f} s", file=sys.stderr)
        bar = tqdm(total=len(plan), desc="episodes", unit="ep", dynamic_ncols=True, smoothing=0)

    def finish(record: EpisodeRecord, recording: Recording | None) -> None:
        if recording is not None and recording.video and record.seed - seed_start < video_episodes:
            from embodied.video import write_episode_video

            name = f"{record.task}_seed{record.seed}.{'gif' if videos.gif else 'mp4'}"
            path = write_episode_video(
                Path(videos.folder) / name,
                {c: recording.video[c] for c in cameras},
                record.task,
                record.seed,
                record.steps_to_success,
                record.failure,
                fps=videos.fps,
            )
            record.video = str(path)
        if on_episode is not None:
            on_episode(record, recording)
        records.append(record)
        if bar is not None:  # the counter first: update() redraws, with this episode counted
            done = [r.success for r in records]
            bar.set_postfix(success=f"{sum(done)}/{len(done)}", refresh=False)
            bar.update(1)

    def results(wall_s: float, interrupted: bool = False) -> EvalResults:
        """The episodes recorded so far, in plan order."""
        return build_results(
            sorted(records, key=lambda r: plan_index[(r.task, r.seed)]),
            suite=suite,
            tasks=tasks,
            episodes=episodes,
            seed_start=seed_start,
            workers=max(processes, 1),
            protocol=fixed.info,
            envs_per_worker=envs_per_worker,
            wall_s=wall_s,
            startup_s=startup_s,
            interrupted=interrupted,
            policy_in_workers=policy_in_workers,
        )

    closed = False
    try:
        if policy_in_workers:
            # Each worker runs its share of every wave with its own copy of the policy, at its
            # own pace; the episodes come back as they end.
            busy = []
            for w in range(processes):
                share = envs.share(w)
                position = {i: j for j, i in enumerate(share)}
                jobs = []
                for plans, in_run_order in waves:
                    mine = [plans[i] for i in share]
                    if any(p is not None for p in mine):
                        order = [position[i] for i in in_run_order if i in position]
                        jobs.append((mine, order, ids(mine)))
                if jobs:
                    envs.send(w, "run", jobs)
                    busy.append(w)
            while busy:
                for w in envs.wait(busy):
                    status, data = envs.receive(w)
                    if status == "episode":
                        finish(*data)
                    else:  # "ok": that worker has run all its episodes
                        busy.remove(w)
        else:
            for plans, in_run_order in waves:
                instruction = torch.tensor(ids(plans), dtype=torch.long, device=device)  # (N,)
                for record, recording in run_wave(policy, envs, plans, in_run_order, instruction, device):
                    finish(record, recording)
        # Stop the clock before closing: waiting for the workers to exit is not evaluation.
        wall_s = time.perf_counter() - started
    except KeyboardInterrupt:
        # Every episode that had ended was reported as it ended: keep those.
        envs.close(terminate=True)  # a worker may be mid-step: do not wait for it
        closed = True
        raise EvaluationInterrupted(results(time.perf_counter() - started, interrupted=True)) from None
    except UserError as err:  # a video could not be written: stop, keep the finished episodes
        envs.close(terminate=True)
        closed = True
        raise EvaluationFailed(str(err), results(time.perf_counter() - started, interrupted=True)) from None
    finally:
        if bar is not None:
            bar.close()
        if not closed:
            envs.close()
        if hasattr(policy, "train"):
            policy.train(was_training)
        torch.set_num_threads(threads)
    return results(wall_s)
