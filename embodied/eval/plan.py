"""The plan of an evaluation: what is rolled out (:class:`Target`, resolved once from the
settings) and which episode runs in which environment, wave after wave (:class:`RolloutPlan`).

Resolving the target (the suite, the tasks, the observer camera, the protocol's episodes) reads
suite specs and, for a suite's own protocol, builds environments to draw its goals: it happens
once per evaluation, before the long work, and the result is passed on
(``embodied-eval`` -> :func:`~embodied.eval.checkpoint.evaluate_checkpoint` ->
:func:`~embodied.eval.rollout.evaluate_policy`). The rest of the plan depends only on the target,
the settings and the policy's cameras: the episodes, their order and every wave's placement
are decided up front (the rollout module's doc says why waves, and why this order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.eval.envs import EpisodePlan
from embodied.eval.protocol import EpisodeSchedule, schedule
from embodied.eval.settings import DEFAULT_ENVS_PER_WORKER, NO_VIDEOS, EvalSettings, Videos
from embodied.eval.waves import env_key, place
from embodied.keys import IMAGE_SIZE
from embodied.sim import get_suite, image_key, known_suites, load_suite


# --------------------------------------------------------------------------- the target
@dataclass(frozen=True)
class Target:
    """What an evaluation rolls out, resolved once (module doc)."""

    suite: str
    """The suite of the tasks."""
    tasks: list[str]
    """The tasks, in evaluation order."""
    observer: str
    """The camera the recognizer reads: a run's own (``data.camera``), else the suite's observer
    camera; recorded for the judge, and the videos' camera unless they name others."""
    schedule: EpisodeSchedule | None
    """What the protocol fixes (step limit, each episode's variant); None: nothing is rolled out."""


def suite_of(tasks: Sequence[str]) -> str:
    """The one known suite whose spec holds every task of ``tasks``."""
    matches = [s for s in known_suites() if all(t in load_suite(s).tasks for t in tasks)]
    if len(matches) != 1:
        found = "no suite" if not matches else f"several suites ({', '.join(matches)})"
        raise UserError(f"tasks {', '.join(tasks)}: {found} holds them all; name the suite")
    return matches[0]


def select_tasks(
    requested: Sequence[str] | None, suite: str, spec: DataSpec, asked_suite: str | None
) -> list[str]:
    """The tasks to evaluate: those requested (names or sets of ``suite``), all of them trained
    on; None: every task trained on. ``asked_suite``: the suite the caller expects (None: any)."""
    if asked_suite is not None and asked_suite != suite:
        raise UserError(f"the policy was trained on {suite} tasks, not {asked_suite}")
    trained = spec.task_names
    if not requested:
        if not trained:
            raise UserError("no task to evaluate: name the tasks (the policy's data lists none)")
        return trained
    tasks = load_suite(suite).resolve_tasks(requested)
    missing = [t for t in tasks if trained and t not in trained]
    if missing:
        raise UserError(f"the policy was trained on {', '.join(trained)}; not on {', '.join(missing)}")
    return tasks


def resolve_target(
    settings: EvalSettings,
    spec: DataSpec,
    suite: str | None = None,
    camera: str | None = None,
    rollouts: bool = True,
) -> Target:
    """The target of ``settings`` for a policy trained on ``spec``. ``suite``: the suite of the
    policy's data when known (a checkpoint's; ``settings.suite`` must then agree), else
    ``settings.suite``, else the one suite holding the tasks; ``camera``: the camera the
    recognizer reads (a run's ``data.camera``; None: the suite's observer); ``rollouts``: False
    leaves the protocol's episodes undrawn (nothing will be rolled out)."""
    if suite is None:
        suite = settings.suite or suite_of(settings.tasks or spec.task_names)
    tasks = select_tasks(settings.tasks, suite, spec, settings.suite)
    suite_spec = load_suite(suite)
    observer = camera or suite_spec.observer_camera
    suite_spec.check_cameras([observer])
    fixed = None
    if rollouts:  # a suite's protocol builds environments to draw its goals: here, before the long work
        check_observations(spec, suite)
        fixed = schedule(
            settings.protocol,
            suite=suite,
            tasks=tasks,
            episodes=settings.episodes,
            seed_start=settings.seed_start,
            horizon=settings.horizon,
            seed=settings.protocol_seed,
        )
    return Target(suite=suite, tasks=tasks, observer=observer, schedule=fixed)


# --------------------------------------------------------------------------- the policy's side
def check_observations(spec: DataSpec, suite: str) -> None:
    """Refuse, before any environment is built, a policy that reads low-dim observation keys the
    suite's environments do not give (a policy trained on a robomimic file with every key of the
    file, of which robosuite's environments give four); every one of them named."""
    given = get_suite(suite).env_class().low_dim_keys
    missing = [k for k in spec.low_dim_keys if k not in given]
    if missing:
        raise UserError(
            f"the policy reads observation keys that {suite}'s environments do not give: "
            f"{', '.join(missing)} (they give {', '.join(given)}); to roll a policy out there, train it "
            f"on keys they give: policy.obs_keys=[{','.join(k for k in spec.obs_shapes if k not in missing)}]"
        )


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


# --------------------------------------------------------------------------- episodes and waves
Wave = tuple[list[EpisodePlan | None], list[int]]
"""One wave: the episode of each environment (None: it sits the wave out), and the environments
in the order their episodes run (:func:`~embodied.eval.waves.place`)."""


@dataclass
class RolloutPlan:
    """Every episode of an evaluation, where and when it runs."""

    episodes: list[EpisodePlan]
    """In plan order: task after task, seed after seed (the order of the results)."""
    run_order: list[EpisodePlan]
    """The order they are taken in, ``num_envs`` at a time (the rollout module's doc)."""
    waves: list[Wave]
    """Every wave's placement."""
    built: list[EpisodePlan]
    """The episode each environment is first built for."""
    processes: int
    """Worker processes (0: the environments step in this process)."""
    envs_per_worker: int
    """Environments per worker; ``max(processes, 1) x envs_per_worker`` >= ``num_envs``."""
    num_envs: int
    """Environments in all."""
    cameras: tuple[str, ...]
    """The cameras the policy reads (in every observation)."""
    image_size: int
    """Side of every rendered observation image."""
    horizon: int | None
    """Step limit of every episode (None: each task's default)."""
    video_episodes: int
    """Episodes per task written as videos."""
    video_cameras: tuple[str, ...]
    """Their cameras (the target's observer unless the videos name others)."""
    mesh_detail: str = "full"
    """How the cameras draw meshes: as the policy's training data drew its frames."""
    position: dict[tuple[str, int], int] = field(init=False)
    """(task, seed) -> the episode's place in plan order (results are sorted by it)."""

    def __post_init__(self) -> None:
        self.position = {(p.task, p.seed): k for k, p in enumerate(self.episodes)}


def plan_rollouts(
    target: Target,
    settings: EvalSettings,
    cameras: tuple[str, ...],
    policy_size: int | None,
    spec: DataSpec,
    videos: Videos = NO_VIDEOS,
    observer_episodes: int = 0,
) -> RolloutPlan:
    """The plan of rolling out ``target`` with ``settings``. ``cameras``, ``policy_size``: what
    :func:`policy_cameras` says of the policy (its images' size, else the data's, else
    :data:`embodied.keys.IMAGE_SIZE`, is every observation image's). The first ``videos.episodes``
    episodes of each task render ``videos.cameras`` (default: the target's observer); the first
    ``observer_episodes`` record the observer camera and the observations (the judge's)."""
    if target.schedule is None:
        raise ValueError("the target was resolved without its episodes (rollouts=False)")
    video_cameras = tuple(videos.cameras or (target.observer,))
    video_episodes = min(videos.episodes, settings.episodes)
    if video_episodes > 0 and videos.folder is None:
        raise ValueError("videos.episodes > 0 needs a videos.folder")
    if videos.cameras:  # the observer was checked with the target
        load_suite(target.suite).check_cameras(video_cameras)
    image_size = int(policy_size or spec.image_size or IMAGE_SIZE)
    fixed = target.schedule
    tasks, per_task, seed_start = target.tasks, settings.episodes, settings.seed_start

    episodes = [  # task after task, seed after seed
        EpisodePlan(
            task,
            seed_start + i,
            (target.observer,) if i < observer_episodes else (),
            keep_obs=i < observer_episodes,
            video=video_cameras if i < video_episodes else (),
            video_size=videos.size or image_size,
            variant=fixed.variants[task][i] if fixed.variants else None,
        )
        for task in tasks
        for i in range(per_task)
    ]
    processes = 0 if settings.workers <= 1 else settings.workers
    per_worker = settings.envs_per_worker or (DEFAULT_ENVS_PER_WORKER if processes else 1)
    num_envs = max(1, min(max(processes, 1) * per_worker, len(episodes)))
    processes = min(processes, num_envs)
    per_worker = math.ceil(num_envs / max(processes, 1))
    run_order = episodes
    if len(tasks) > 1 and num_envs >= len(tasks):
        # Seed after seed, task after task: every wave holds every task, so each environment can
        # keep its task from wave to wave (see place) instead of being rebuilt at task boundaries.
        run_order = [episodes[t * per_task + i] for i in range(per_task) for t in range(len(tasks))]

    # Environment i is built for the i-th episode run (the pool builds it so); each wave's
    # episodes go to environments already built for their task where there are some.
    built = [run_order[min(i, len(run_order) - 1)] for i in range(num_envs)]
    keys = [env_key(p) for p in built]
    waves: list[Wave] = []
    for first in range(0, len(run_order), num_envs):
        plans, in_run_order = place(run_order[first : first + num_envs], keys)
        keys = [env_key(p) if p is not None else k for p, k in zip(plans, keys, strict=True)]
        waves.append((plans, in_run_order))
    return RolloutPlan(
        episodes=episodes,
        run_order=run_order,
        waves=waves,
        built=built,
        processes=processes,
        envs_per_worker=per_worker,
        num_envs=num_envs,
        cameras=cameras,
        image_size=image_size,
        horizon=fixed.horizon,
        video_episodes=video_episodes,
        video_cameras=video_cameras,
        mesh_detail=spec.mesh_detail,
    )


__all__ = [
    "RolloutPlan",
    "Target",
    "Wave",
    "instruction_ids",
    "plan_rollouts",
    "policy_cameras",
    "resolve_target",
    "select_tasks",
    "suite_of",
]
