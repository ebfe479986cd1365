"""The results of a policy evaluation: each episode (:class:`EpisodeRecord`), each task's
success with its Wilson interval (:class:`TaskSummary`), the whole (:class:`EvalResults`), and
the two ways an evaluation ends early with the episodes it finished (:class:`EvaluationInterrupted`,
:class:`EvaluationFailed`), and what gathers the episodes as they end (:class:`Collector`). Made by
:func:`embodied.eval.rollout.evaluate_policy`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from embodied.errors import UserError
from embodied.stats import wilson_interval

if TYPE_CHECKING:  # for annotations only: the plan imports the waves, which import this module
    from embodied.eval.envs import Recording
    from embodied.eval.plan import RolloutPlan, Target
    from embodied.eval.settings import EvalSettings, Videos

HORIZON = "horizon"
"""Failure reason of an episode that ran to its step limit without success."""


@dataclass
class EpisodeRecord:
    task: str
    """Task of the episode."""
    seed: int
    """Its seed (``seed_start + i`` for the i-th episode of the task)."""
    success: bool
    """The task's success signal was seen at some step."""
    episode_return: float
    """Sum of the rewards."""
    length: int
    """Environment steps taken."""
    steps_to_success: int | None
    """Steps until the first success (None when never)."""
    failure: str | None
    """Why it failed: ``horizon`` (ran out of steps), or an error (the environment raised,
    non-finite observation or action, unstable simulation); None on success."""
    video: str | None = None
    """Path of the episode's video, if one was written."""
    variant: list[float] | None = None
    """The task variant it started from when the protocol fixed one (Meta-World's: the goal's
    ``rand_vec``); None when the seed drew it."""
    extra: dict = field(default_factory=dict)
    """Further per-episode results, e.g. the recognizer's verdict (:mod:`embodied.eval.judge`)."""


@dataclass
class TaskSummary:
    episodes: int
    """Episodes run."""
    successes: int
    """Successful episodes."""
    success_rate: float | None
    """successes / episodes (None without episodes)."""
    ci_low: float
    """Lower end of the 95 % Wilson interval of the success rate."""
    ci_high: float
    """Upper end of the 95 % Wilson interval of the success rate."""
    mean_return: float | None
    """Mean episode return."""
    mean_length: float | None
    """Mean episode length, in steps."""
    mean_steps_to_success: float | None
    """Mean steps to the first success, over successful episodes (None without any)."""
    errors: int
    """Episodes ended by an error (counted as failures)."""


def summarize(records: Sequence[EpisodeRecord]) -> TaskSummary:
    """Success rate with its Wilson interval, and means, over ``records``."""
    n = len(records)
    k = sum(r.success for r in records)
    low, high = wilson_interval(k, n)
    to_success = [r.steps_to_success for r in records if r.success and r.steps_to_success is not None]
    return TaskSummary(
        episodes=n,
        successes=k,
        success_rate=k / n if n else None,
        ci_low=low,
        ci_high=high,
        mean_return=float(np.mean([r.episode_return for r in records])) if n else None,
        mean_length=float(np.mean([r.length for r in records])) if n else None,
        mean_steps_to_success=float(np.mean(to_success)) if to_success else None,
        errors=sum(r.failure not in (None, HORIZON) for r in records),
    )


@dataclass
class EvalResults:
    """The outcome of :func:`evaluate_policy`. The overall numbers are also at the top level
    (``success_rate``, ``ci_low``, ...), so a training log can take the plain numbers."""

    suite: str
    """Suite the tasks belong to."""
    task_names: list[str]
    """Tasks evaluated, in order."""
    episodes_per_task: int
    """Episodes planned per task."""
    seed_start: int
    """Seed of each task's first episode."""
    protocol: dict
    """Which episodes ran (:mod:`embodied.eval.protocol`): ``name`` (``embodied``, or a suite's
    own such as ``metaworld``), its seed(s), ``horizon`` (None: each task's default) and, for a
    suite's protocol, where its goals come from (``goals``)."""
    success_rate: float | None
    """Overall success rate, pooled over every episode."""
    ci_low: float
    """Lower end of the overall 95 % Wilson interval."""
    ci_high: float
    """Upper end of the overall 95 % Wilson interval."""
    mean_return: float | None
    """Overall mean return."""
    mean_length: float | None
    """Overall mean episode length."""
    env_steps: int
    """Environment steps taken (idle slots not counted)."""
    wall_s: float
    """Seconds from the first reset to the end (worker start-up not included)."""
    startup_s: float
    """Seconds to start the workers and build their environments."""
    steps_per_s: float
    """env_steps / wall_s."""
    workers: int
    """Worker processes that stepped the environments (1: in this process)."""
    envs_per_worker: int
    """Environments each worker stepped; ``workers x envs_per_worker`` ran together."""
    policy_in_workers: bool
    """True when each worker ran a copy of the policy, False when this process ran it for all."""
    interrupted: bool
    """True when Ctrl-C stopped the evaluation: only the finished episodes are counted."""
    tasks: dict[str, TaskSummary]
    """Per-task summaries, in task order."""
    overall: TaskSummary
    """Summary over every episode."""
    episodes: list[EpisodeRecord]
    """Every finished episode, in plan order (task after task, seed after seed)."""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def build_results(
    records: list[EpisodeRecord],
    *,
    suite: str,
    tasks: list[str],
    episodes: int,
    seed_start: int,
    workers: int,
    protocol: dict,
    envs_per_worker: int = 1,
    wall_s: float = 0.0,
    startup_s: float = 0.0,
    interrupted: bool = False,
    policy_in_workers: bool = False,
) -> EvalResults:
    """Summarise episode records into :class:`EvalResults` (per task and overall)."""
    overall = summarize(records)
    steps = sum(r.length for r in records)
    return EvalResults(
        suite=suite,
        task_names=list(tasks),
        episodes_per_task=episodes,
        seed_start=seed_start,
        protocol=protocol,
        success_rate=overall.success_rate,
        ci_low=overall.ci_low,
        ci_high=overall.ci_high,
        mean_return=overall.mean_return,
        mean_length=overall.mean_length,
        env_steps=steps,
        wall_s=wall_s,
        startup_s=startup_s,
        steps_per_s=steps / wall_s if wall_s > 0 else 0.0,
        workers=workers,
        envs_per_worker=envs_per_worker,
        interrupted=interrupted,
        policy_in_workers=policy_in_workers,
        tasks={t: summarize([r for r in records if r.task == t]) for t in tasks},
        overall=overall,
        episodes=list(records),
    )


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`evaluate_policy`; ``results`` holds the episodes finished so far."""

    def __init__(self, results: EvalResults) -> None:
        super().__init__("evaluation interrupted")
        self.results = results


class EvaluationFailed(UserError):
    """An output of :func:`evaluate_policy` (a video) could not be written (a full disk); the
    evaluation stopped at once and ``results`` holds the episodes finished before."""

    def __init__(self, message: str, results: EvalResults) -> None:
        super().__init__(message)
        self.results = results


class Collector:
    """The episodes of an evaluation as they end (``collector(record, recording)``): each planned
    video written, the episode passed to ``on_episode``, counted on the progress bar; then the
    results of those finished, in plan order (:meth:`results`)."""

    def __init__(
        self, plan: RolloutPlan, target: Target, settings: EvalSettings, videos: Videos, on_episode=None
    ) -> None:
        self.plan, self.target, self.settings, self.videos = plan, target, settings, videos
        self.on_episode = on_episode
        self.records: list[EpisodeRecord] = []
        self.startup_s = 0.0
        self.policy_in_workers = False
        self.bar = None

    def budget(self, task: str) -> int:
        """The most steps an episode of ``task`` can take: the protocol's limit or the task's horizon."""
        from embodied.sim.spec import load_suite

        return self.plan.horizon or load_suite(self.target.suite).tasks[task].horizon

    def show_progress(self) -> None:
        """A progress bar on stderr, after a line on the start-up. It counts environment steps
        against every episode's step limit (an episode that ends early counts its unused steps
        as done), since the episodes of a wave run side by side and end together, tens of seconds
        after they start: counted in episodes, the bar sat at 0 % and then took its ETA from the
        first one (25 minutes for a job that ended at 71 s)."""
        import sys

        from tqdm import tqdm

        plan = self.plan
        # Start-up is its own phase, so the rate and ETA count rollouts only; smoothing 0: the
        # average since the start, as steps come in bursts a second apart.
        where = f"{plan.processes} worker(s)" if plan.processes else "this process"
        ready = f"rollouts: {plan.num_envs} environment(s) in {where} ready in {self.startup_s:.1f} s"
        print(ready, file=sys.stderr)
        total = sum(self.budget(p.task) for p in plan.episodes)
        self.bar = tqdm(total=total, desc="rollouts", unit="step", dynamic_ncols=True, smoothing=0)
        self.bar.set_postfix(episodes=f"0/{len(plan.episodes)}", refresh=False)

    def steps(self, n: int) -> None:
        """``n`` more environment steps were taken (:func:`~embodied.eval.waves.run_wave`)."""
        if self.bar is not None:
            self.bar.update(n)

    def __call__(self, record: EpisodeRecord, recording: Recording | None) -> None:
        offset = record.seed - self.settings.seed_start
        if recording is not None and recording.video and offset < self.plan.video_episodes:
            from embodied.video import write_episode_video

            name = f"{record.task}_seed{record.seed}.{'gif' if self.videos.gif else 'mp4'}"
            path = write_episode_video(
                Path(self.videos.folder) / name,
                {c: recording.video[c] for c in self.plan.video_cameras},
                record.task,
                record.seed,
                record.steps_to_success,
                record.failure,
                fps=self.videos.fps,
            )
            record.video = str(path)
        if self.on_episode is not None:
            self.on_episode(record, recording)
        self.records.append(record)
        if self.bar is not None:  # the counters first: update() redraws, with this episode counted
            done = [r.success for r in self.records]
            episodes = f"{len(done)}/{len(self.plan.episodes)}"
            self.bar.set_postfix(episodes=episodes, success=f"{sum(done)}/{len(done)}", refresh=False)
            self.bar.update(max(self.budget(record.task) - record.length, 0))  # its steps not taken

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def results(self, wall_s: float, interrupted: bool = False) -> EvalResults:
        """The episodes recorded so far, in plan order."""
        plan = self.plan
        return build_results(
            sorted(self.records, key=lambda r: plan.position[(r.task, r.seed)]),
            suite=self.target.suite,
            tasks=self.target.tasks,
            episodes=self.settings.episodes,
            seed_start=self.settings.seed_start,
            workers=max(plan.processes, 1),
            protocol=self.target.schedule.info,
            envs_per_worker=plan.envs_per_worker,
            wall_s=wall_s,
            startup_s=self.startup_s,
            interrupted=interrupted,
            policy_in_workers=self.policy_in_workers,
        )
