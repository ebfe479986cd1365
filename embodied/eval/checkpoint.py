"""Evaluating a trained checkpoint: the one path from a run to its numbers.

``embodied-eval`` and ``embodied-bench`` both call :func:`evaluate_checkpoint`: the policy's
rollouts (success per task with Wilson intervals), the recognizer's report on the validation
split of the demonstrations, and, on request, the recognizer's verdict on the rollouts (the
judge) and rollout videos. What each caller does with the numbers (the CLI's tables and files,
the bench's aggregate) stays with it.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from embodied.data.collect import EVAL_SEED_START
from embodied.errors import UserError
from embodied.eval.judge import RolloutJudge, judge_summary, per_task_agreement
from embodied.eval.protocol import EMBODIED, schedule
from embodied.eval.recognition import RecognizerReport, evaluate_recognizer, open_clips, write_report
from embodied.eval.results import EvalResults, EvaluationFailed, EvaluationInterrupted
from embodied.eval.rollout import Videos, evaluate_policy, instruction_ids, suite_of
from embodied.models.common import DataSpec
from embodied.sim import load_suite


@dataclass
class CheckpointEvaluation:
    kind: str
    """The run's mode: policy, recognizer, joint or probe."""
    spec: DataSpec
    config: object
    """The run's TrainConfig."""
    tasks: list[str] = field(default_factory=list)
    """The tasks rolled out (empty without rollouts)."""
    suite: str | None = None
    observer: str | None = None
    """The camera the recognizer reads (the run's, else the suite's observer)."""
    results: EvalResults | None = None
    """The rollouts; with ``interrupted`` or ``failure``, those finished before it stopped."""
    recognition: RecognizerReport | None = None
    recognition_error: str | None = None
    """Why the recognizer's report is missing when the caller asked to go on without it."""
    judge: dict | None = None
    """The recognizer's verdict on the rollouts: agreement overall and per task."""
    interrupted: bool = False
    failure: EvaluationFailed | None = None


def checkpoint_suite(config, spec: DataSpec) -> str:
    """The suite of a run's training data: the demonstration files' own record, else the one
    suite holding every trained task (the files may have moved since training)."""
    from embodied.data.files import file_suite
    from embodied.data.schema import expand_paths

    try:
        files = expand_paths(config.data.paths)
    except UserError:
        files = []
    for path in files:
        suite = file_suite(path)
        if suite:
            return suite
    return suite_of(spec.task_names)


def select_tasks(
    requested: Sequence[str] | None, suite: str, spec: DataSpec, asked_suite: str | None
) -> list[str]:
    """The tasks to evaluate: those requested (names or sets of the suite), all of them trained on."""
    if asked_suite is not None and asked_suite != suite:
        raise UserError(f"the checkpoint's policy was trained on {suite} tasks, not {asked_suite}")
    trained = spec.task_names
    if not requested:
        return trained
    tasks = load_suite(suite).resolve_tasks(requested)
    missing = [t for t in tasks if t not in trained]
    if missing:
        raise UserError(f"the checkpoint was trained on {', '.join(trained)}; not on {', '.join(missing)}")
    return tasks


def evaluate_checkpoint(
    loaded: tuple,
    *,
    episodes: int,
    rollouts: bool = True,
    tasks: Sequence[str] | None = None,
    suite: str | None = None,
    seed_start: int = EVAL_SEED_START,
    workers: int = 2,
    envs_per_worker: int | None = None,
    policy_in_workers: bool | None = None,
    horizon: int | None = None,
    protocol: str = EMBODIED,
    protocol_seed: int | None = None,
    recognize: bool = True,
    recognizer_data: Sequence[str] | None = None,
    clips_per_video: int = 5,
    report_dir: str | Path | None = None,
    judge_episodes: int = 0,
    videos: Videos | None = None,
    progress: bool = False,
    skip_missing_data: bool = False,
    keep_partial: bool = False,
) -> CheckpointEvaluation:
    """Evaluate ``loaded`` (what :func:`~embodied.train.checkpoint.load_model` returns).

    Rollouts (``rollouts`` and a policy in the checkpoint): ``episodes`` per task of ``tasks``
    (default: every task trained on) from ``seed_start``, or as a suite's own ``protocol``
    fixes them (:mod:`embodied.eval.protocol`). Recognition (``recognize`` and a
    recognizer): the report on the ``valid`` split of ``recognizer_data`` (default: the run's
    data), its files written into ``report_dir`` when given; with ``skip_missing_data`` data
    that moved is noted in ``recognition_error`` while the rollouts still run. The judge reads
    the first ``judge_episodes`` rollouts of each task with the recognizer (and the mirror head,
    when there is one). Ctrl-C or a full disk during the rollouts ends them early: raised as
    :class:`EvaluationInterrupted` or :class:`EvaluationFailed`, or, with ``keep_partial``,
    returned with ``results`` holding the finished episodes and ``interrupted`` or ``failure``
    saying why.
    """
    kind, models, spec, config = loaded
    policy, recognizer, mirror = models.get("policy"), models.get("recognizer"), models.get("mirror")
    ev = CheckpointEvaluation(kind=kind, spec=spec, config=config)
    rolling = rollouts and policy is not None
    if rolling:
        ev.suite = suite_of(spec.task_names) if suite is None else suite
        ev.tasks = select_tasks(tasks, ev.suite, spec, None)
        ev.observer = config.data.camera or load_suite(ev.suite).observer_camera
        # The protocol is checked (its goals drawn, kept for evaluate_policy) before the long work.
        schedule(
            protocol,
            suite=ev.suite,
            tasks=ev.tasks,
            episodes=episodes,
            seed_start=seed_start,
            horizon=horizon,
            seed=protocol_seed,
        )

    if recognize and recognizer is not None:
        try:
            dataset = open_clips(
                recognizer_data or config.data.paths, spec, config.data.camera, config.data.clip_stride
            )
            try:
                ev.recognition = evaluate_recognizer(recognizer, dataset, clips_per_video=clips_per_video)
            finally:
                dataset.close()
        except UserError as err:  # moved or missing data: the rollouts are still worth running
            if not (skip_missing_data and rolling):
                raise
            ev.recognition_error = str(err)
            print(f"note: recognizer validation accuracy skipped: {err}", file=sys.stderr)
        if ev.recognition is not None and report_dir is not None:
            write_report(ev.recognition, report_dir)
    if not rolling:
        return ev

    videos = videos or Videos()
    judge_n = min(judge_episodes, episodes) if recognizer is not None else 0
    on_episode = None
    if judge_n:
        on_episode = RolloutJudge(
            recognizer,
            spec,
            ev.observer,
            config.data.clip_stride,
            num_clips=clips_per_video,
            policy=policy if mirror is not None else None,
            mirror=mirror,
            instruction_ids=instruction_ids(spec, ev.suite, ev.tasks),
        )
    if videos.episodes:  # the observer camera unless the caller named others
        cameras = tuple(videos.cameras or (ev.observer,))
        videos = dataclasses.replace(videos, episodes=min(videos.episodes, episodes), cameras=cameras)
    judging = {}
    if judge_n:
        judging = dict(observer=ev.observer, observer_episodes=judge_n, on_episode=on_episode)
    try:
        ev.results = evaluate_policy(
            policy,
            spec,
            ev.tasks,
            episodes,
            seed_start=seed_start,
            workers=workers,
            envs_per_worker=envs_per_worker,
            policy_in_workers=policy_in_workers,
            horizon=horizon,
            protocol=protocol,
            protocol_seed=protocol_seed,
            suite=ev.suite,
            progress=progress,
            videos=videos,
            **judging,
        )
    except EvaluationInterrupted as stop:
        if not keep_partial:
            raise
        ev.results, ev.interrupted = stop.results, True
    except EvaluationFailed as fail:  # a full disk: keep what was finished, the caller says why it stopped
        if not keep_partial:
            raise
        ev.results, ev.failure = fail.results, fail
    if judge_n:
        ev.judge = {**judge_summary(ev.results.episodes), "per_task": per_task_agreement(ev.results.episodes)}
    return ev


__all__ = ["CheckpointEvaluation", "Videos", "checkpoint_suite", "evaluate_checkpoint", "select_tasks"]
