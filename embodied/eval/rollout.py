"""Policy rollouts in the simulator: success with Wilson intervals, returns, lengths, episodes.

    results = evaluate_policy(policy, spec, ["drawer-open-v3"], episodes=50)
    results = evaluate_policy(policy, spec, settings=EvalSettings(episodes=50))  # every trained task
    results.success_rate, results.ci_low, results.ci_high      # overall, pooled over tasks
    results.tasks["drawer-open-v3"].success_rate                 # per task
    results.episodes[0]                                          # EpisodeRecord(task, seed, ...)

What runs is one :class:`~embodied.eval.settings.EvalSettings`; the evaluation is made of its
plan (:mod:`embodied.eval.plan`: the target resolved once, the episodes, their waves and
placement), the pool of environments and the two runners below (:mod:`embodied.eval.runners`),
and the results gathered as the episodes end (:mod:`embodied.eval.results`).

Seeds: episode i of every task runs with seed ``seed_start + i``; the default start,
:data:`~embodied.seeds.EVAL_SEED_START`, is above every demonstration seed, and the
same seeds for every method and training seed make their results paired; a suite's own
``protocol`` (``metaworld``) fixes the episodes instead (:mod:`embodied.eval.protocol`).

Where the policy runs
---------------------
N = ``workers`` x ``envs_per_worker`` environments (the settings') run in an
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

Why the policy runs in the workers on a CPU: the lock-step loses the policy's time, a call
that every step waits for, and the barrier of the slowest worker on every step; in the
workers, nothing waits. Several environments per worker pay the fixed part of a policy call
(torch's per-module dispatch) once per ``envs_per_worker`` environment steps.
``tools/bench_eval.py`` measures both against stepping the same episodes bare (figures in
docs/speed.md).

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
to environments already built for their task (:func:`~embodied.eval.waves.place`); with fewer
environments than tasks, task after task. ``on_episode`` sees each episode as it ends (the workers' episodes
interleave when the policy runs in them); :attr:`EvalResults.episodes` lists them in plan
order (task after task, seed after seed).

Robustness: an environment that raises, or returns NaN, ends its episode as a failure with
the reason in :attr:`EpisodeRecord.failure`; the evaluation goes on (the worker rebuilds its
environment). Ctrl-C raises :class:`EvaluationInterrupted`, a ``KeyboardInterrupt`` holding
the results of the episodes finished so far.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence

import gymnasium as gym
import torch

from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.eval.envs import Recording, default_env_fn
from embodied.eval.plan import (
    Target,
    instruction_ids,
    plan_rollouts,
    policy_cameras,
    resolve_target,
    suite_of,
)
from embodied.eval.results import (
    Collector,
    EpisodeRecord,
    EvalResults,
    EvaluationFailed,
    EvaluationInterrupted,
)
from embodied.eval.runners import TORCH_THREADS, make_env_pool, place_policy, run_in_workers, run_lockstep
from embodied.eval.settings import NO_VIDEOS, EvalSettings, Videos, make_settings
from embodied.eval.waves import place, policy_commands  # place: still importable from here


def evaluate_policy(
    policy,
    spec: DataSpec,
    tasks: Sequence[str] | None = None,
    episodes: int | None = None,
    *,
    settings: EvalSettings | None = None,
    target: Target | None = None,
    videos: Videos = NO_VIDEOS,
    observer_episodes: int = 0,
    on_episode: Callable[[EpisodeRecord, Recording | None], None] | None = None,
    env_fn: Callable[..., gym.Env] = default_env_fn,
    progress: bool = False,
    **fields,
) -> EvalResults:
    """Roll ``policy`` out as ``settings`` say; see the module doc.

    - ``policy``: ``predict_action(obs, instruction_id) -> (N, A)`` and ``reset()`` (the
      contract of :class:`embodied.policies.Policy`); put in eval mode for the evaluation.
    - ``spec``: the policy's :class:`DataSpec`; its tasks (:attr:`DataSpec.task_names`) must
      include every task, and give each task's instruction id.
    - ``settings``: what runs and how (:class:`~embodied.eval.settings.EvalSettings`). Or its
      fields as keywords, ``tasks`` and ``episodes`` also by position:
      ``evaluate_policy(policy, spec, ["reach-v3"], 3, horizon=20)``.
    - ``target``: the suite, tasks, observer camera and protocol's episodes already resolved from
      ``settings`` (:func:`~embodied.eval.plan.resolve_target`); None: resolved here.
    - ``videos``: which episodes are written as videos, of which cameras (default: the target's
      observer camera), where (:class:`Videos`).
    - ``observer_episodes``: the first ``observer_episodes`` episodes of each task also record
      the target's observer camera and the observations, passed to ``on_episode`` (the
      recognizer's judgement, :mod:`embodied.eval.judge`).
    - ``on_episode(record, recording)``: called in the main process for every episode as it
      ends (see the module doc), with its frames and observations when they were recorded.
    - ``env_fn(suite, task, **make_env kwargs)``: builds one environment (tests inject
      failures through it); must be picklable for worker processes.
    - ``progress``: a progress bar of the episodes on stderr.

    The results say where the policy ran (:attr:`EvalResults.policy_in_workers`). Ctrl-C raises
    :class:`EvaluationInterrupted`, a video that cannot be written :class:`EvaluationFailed`;
    both hold the episodes finished before.
    """
    if settings is None:
        if tasks is not None:
            fields["tasks"] = list(tasks)
        if episodes is not None:
            fields["episodes"] = episodes
        settings = make_settings(**fields)
    elif tasks is not None or episodes is not None or fields:
        raise TypeError("evaluate_policy takes settings or their fields as keywords, not both")
    target = target or resolve_target(settings, spec)
    # The plan: what runs where, decided up front.
    instructions = instruction_ids(spec, target.suite, target.tasks)
    cameras, policy_size = policy_cameras(policy, spec, target.suite)
    plan = plan_rollouts(target, settings, cameras, policy_size, spec, videos, observer_episodes)
    collector = Collector(plan, target, settings, videos, on_episode)

    was_training = getattr(policy, "training", False)
    threads = torch.get_num_threads()
    try:
        if hasattr(policy, "eval"):
            policy.eval()  # before pickling: the workers' copies are in eval mode too
        # The pool, with a copy of the policy in each worker or none.
        device, blob = place_policy(policy, settings.policy_in_workers, plan.processes)
        collector.policy_in_workers = blob is not None
        extension = functools.partial(policy_commands, blob, TORCH_THREADS) if blob is not None else None
        started = time.perf_counter()
        envs = make_env_pool(target.suite, plan, env_fn, extension)
    except BaseException:
        if hasattr(policy, "train"):
            policy.train(was_training)
        raise
    collector.startup_s = time.perf_counter() - started
    # Changed here and restored in the `finally` below, together with the policy's mode.
    torch.set_num_threads(TORCH_THREADS)
    started = time.perf_counter()
    closed = False
    try:
        if progress:
            collector.show_progress()
        # The runners: every episode goes to the collector as it ends.
        if blob is not None:
            run_in_workers(envs, plan, instructions, collector, collector.steps)
        else:
            run_lockstep(policy, envs, plan, instructions, device, collector, collector.steps)
        # Stop the clock before closing: waiting for the workers to exit is not evaluation.
        wall_s = time.perf_counter() - started
    except KeyboardInterrupt:
        # Every episode that had ended was reported as it ended: keep those.
        envs.close(terminate=True)  # a worker may be mid-step: do not wait for it
        closed = True
        results = collector.results(time.perf_counter() - started, interrupted=True)
        raise EvaluationInterrupted(results) from None
    except UserError as err:  # a video could not be written: stop, keep the finished episodes
        envs.close(terminate=True)
        closed = True
        results = collector.results(time.perf_counter() - started, interrupted=True)
        raise EvaluationFailed(str(err), results) from None
    finally:
        collector.close()
        if not closed:
            envs.close()
        if hasattr(policy, "train"):
            policy.train(was_training)
        torch.set_num_threads(threads)
    return collector.results(wall_s)


__all__ = [
    "EpisodeRecord",
    "EvalResults",
    "EvalSettings",
    "EvaluationFailed",
    "EvaluationInterrupted",
    "Videos",
    "evaluate_policy",
    "instruction_ids",
    "place",
    "suite_of",
]
