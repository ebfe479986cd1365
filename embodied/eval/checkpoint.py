"""Evaluating a trained checkpoint: the one path from a run to its numbers.

``embodied-eval`` and ``embodied-bench`` both call :func:`evaluate_checkpoint`: the policy's
rollouts (success per task with Wilson intervals), the recognizer's report on the validation
split of the demonstrations, and, on request, the recognizer's verdict on the rollouts (the
judge) and rollout videos. What each caller does with the numbers (the CLI's tables and files,
the bench's aggregate) stays with it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.eval.judge import RolloutJudge, judge_summary, per_task_agreement
from embodied.eval.plan import Target, instruction_ids, resolve_target, select_tasks, suite_of
from embodied.eval.recognition import RecognizerReport, evaluate_recognizer, open_clips, write_report
from embodied.eval.results import EvalResults, EvaluationFailed, EvaluationInterrupted
from embodied.eval.rollout import evaluate_policy
from embodied.eval.settings import NO_VIDEOS, EvalSettings, Videos


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


def checkpoint_target(loaded: tuple, settings: EvalSettings) -> Target:
    """What evaluating ``loaded`` with ``settings`` rolls out, resolved once: the suite of the run's
    data, the tasks (every one trained on unless the settings name some), the recognizer's camera
    (the run's ``data.camera``, else the suite's observer), and, when the checkpoint holds a
    policy, the protocol's episodes (a suite's protocol draws its goals here, before the long
    work)."""
    from embodied.sim.registry import action_size_of

    _, models, spec, config = loaded
    suite = checkpoint_suite(config, spec)
    width = action_size_of(suite)
    if models.get("policy") is not None and width is not None and spec.action_dim != width:
        # every episode would fail on its first step
        raise UserError(
            f"the checkpoint's policy gives actions of width {spec.action_dim}, but the {suite} "
            f"suite's robot takes {width}"
        )
    return resolve_target(
        settings,
        spec,
        suite=suite,
        camera=config.data.camera,
        rollouts=models.get("policy") is not None,
    )


def evaluate_checkpoint(
    loaded: tuple,
    settings: EvalSettings,
    *,
    target: Target | None = None,
    rollouts: bool = True,
    recognize: bool = True,
    recognizer_data: list[str] | None = None,
    report_dir: str | Path | None = None,
    judge_episodes: int = 0,
    videos: Videos = NO_VIDEOS,
    progress: bool = False,
    skip_missing_data: bool = False,
    keep_partial: bool = False,
) -> CheckpointEvaluation:
    """Evaluate ``loaded`` (what :func:`~embodied.train.checkpoint.load_model` returns) as
    ``settings`` say, the rollouts of ``target`` (:func:`checkpoint_target`; None: resolved here).

    Rollouts (``rollouts`` and a policy in the checkpoint): ``settings.episodes`` per task.
    Recognition (``recognize`` and a recognizer): the report on the ``valid`` split of
    ``recognizer_data`` (default: the run's data), its files written into ``report_dir`` when
    given; with ``skip_missing_data`` data that moved is noted in ``recognition_error`` while the
    rollouts still run. The judge reads the first ``judge_episodes`` rollouts of each task with
    the recognizer (and the mirror head, when there is one); ``videos``: which rollouts are
    written as videos. Ctrl-C or a full disk during the rollouts ends them early: raised as
    :class:`EvaluationInterrupted` or :class:`EvaluationFailed`, or, with ``keep_partial``,
    returned with ``results`` holding the finished episodes and ``interrupted`` or ``failure``
    saying why.
    """
    kind, models, spec, config = loaded
    policy, recognizer, mirror = models.get("policy"), models.get("recognizer"), models.get("mirror")
    ev = CheckpointEvaluation(kind=kind, spec=spec, config=config)
    rolling = rollouts and policy is not None
    if rolling:
        target = target or checkpoint_target(loaded, settings)
        ev.suite, ev.tasks, ev.observer = target.suite, target.tasks, target.observer

    if recognize and recognizer is not None:
        try:
            dataset = open_clips(
                recognizer_data or config.data.paths, spec, config.data.camera, config.data.clip_stride
            )
            try:
                ev.recognition = evaluate_recognizer(
                    recognizer, dataset, clips_per_video=settings.clips_per_video
                )
            finally:
                dataset.close()
        except UserError as err:  # moved or missing data: the rollouts are still worth running
            if not (skip_missing_data and rolling) or recognizer_data is not None:
                raise  # data the user named must be read, never skipped
            ev.recognition_error = str(err)
            print(f"note: recognizer validation accuracy skipped: {err}", file=sys.stderr)
        if ev.recognition is not None and report_dir is not None:
            write_report(ev.recognition, report_dir)
    if not rolling:
        return ev

    judge_n = min(judge_episodes, settings.episodes) if recognizer is not None else 0
    on_episode = None
    if judge_n:
        on_episode = RolloutJudge(
            recognizer,
            spec,
            target.observer,
            config.data.clip_stride,
            num_clips=settings.clips_per_video,
            policy=policy if mirror is not None else None,
            mirror=mirror,
            instruction_ids=instruction_ids(spec, target.suite, target.tasks),
        )
    try:
        ev.results = evaluate_policy(
            policy,
            spec,
            settings=settings,
            target=target,
            videos=videos,
            observer_episodes=judge_n,
            on_episode=on_episode,
            progress=progress,
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


__all__ = [
    "CheckpointEvaluation",
    "checkpoint_suite",
    "checkpoint_target",
    "evaluate_checkpoint",
    "select_tasks",
]
