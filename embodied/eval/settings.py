"""The evaluation settings: one typed object for ``embodied-eval``, the benchmark and training's rollouts.

    settings = EvalSettings(episodes=20, workers=4)                  # every trained task, held-out seeds
    results = evaluate_policy(policy, spec, settings=settings)
    ev = evaluate_checkpoint(load_model(run), settings)

Default convention: a field that may be None means by None "what the evaluated policy, its
suite or its protocol says": every task the policy was trained on, the suite of its data, each
task's own step limit (or the one the protocol fixes), the protocol's own seed, as many
environments per worker as suit the workers, the policy in the workers where it can run there.
A number is never a stand-in for a default (no ``0: the default``); files written before this
convention (a benchmark's ``eval:`` section or finished-run marker with ``horizon: 0`` or
``envs_per_worker: 0``) are read as None (:meth:`EvalSettings.upgrade_raw`).

:class:`Videos` (which episodes are written as videos, where) is the evaluation's output, kept
apart: where a file goes does not change a number.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embodied.errors import UserError
from embodied.eval.protocol import EMBODIED
from embodied.limits import (
    MAX_ENVS_PER_WORKER,
    MAX_EPISODE_STEPS,
    MAX_EPISODES,
    MAX_FPS,
    MAX_SEED,
    MAX_WORKERS,
    check_image_side,
    check_range,
)
from embodied.seeds import EVAL_SEED_START

DEFAULT_ENVS_PER_WORKER = 16
"""Environments per worker process when not given (in process: 1): enough to amortise the
fixed part of a policy call over 16 environment steps; more would lengthen start-up (an
environment is built for each) and leave more slots idle at the end of a wave for little gain.
Never more than the episodes need. README's speed section has the measurements."""


@dataclass
class EvalSettings:
    """What a policy's evaluation rolls out, and how (module doc: what None means)."""

    tasks: list[str] | None = None
    """Tasks or task sets (``mt10``) of the suite to roll out; None: every task the policy was trained on."""
    suite: str | None = None
    """The suite of the tasks; None: the suite of the policy's data (the one holding every task). A
    checkpoint's suite is that of its data: naming another is an error."""
    episodes: int = 10
    """Rollout episodes per task (1 to 100000)."""
    seed_start: int = EVAL_SEED_START
    """Seed of each task's first episode (episode i: seed_start + i); the default is above every
    demonstration seed."""
    horizon: int | None = None
    """Episode step limit (1 to 10000); None: each task's default (or the protocol's)."""
    protocol: str = EMBODIED
    """Which episodes run (:mod:`embodied.eval.protocol`): ``embodied`` (seeds from
    ``seed_start``) or a suite's own, e.g. ``metaworld`` (Meta-World's goals, 500 steps)."""
    protocol_seed: int | None = None
    """The seed a suite's own protocol draws its goals from; None: its default."""
    workers: int = 2
    """Worker processes stepping the environments (0 to 256); 0 or 1: none, all in this process."""
    envs_per_worker: int | None = None
    """Environments each worker steps (1 to 256); None: DEFAULT_ENVS_PER_WORKER with workers, 1 in process.
    The results depend on neither this nor ``workers``: every episode is fixed by its seed."""
    policy_in_workers: bool | None = None
    """Run a copy of the policy in each worker (the rollout module's doc); False: in this process for
    every environment, in lock-step; None: in the workers when there are some, the policy is on the CPU
    and it can be pickled."""
    clips_per_video: int = 5
    """Clips averaged into the recognizer's verdict on a video (its validation report, the
    early-recognition curve and the judge of the rollouts)."""

    @staticmethod
    def upgrade_raw(raw: dict, where: str) -> dict:
        """Settings written when 0 stood for "the default" (a benchmark marker or preset
        before this object): ``horizon: 0`` and ``envs_per_worker: 0`` are read as None."""
        old = {k: None for k in ("horizon", "envs_per_worker") if raw.get(k) == 0}
        return {**raw, **old} if old else raw

    def __post_init__(self) -> None:
        if self.tasks is not None and not self.tasks:
            raise ValueError("tasks must name at least one task (None: every task trained on)")
        if self.episodes < 1:
            raise ValueError(f"episodes must be at least 1, got {self.episodes}")
        if self.episodes > MAX_EPISODES:
            raise ValueError(f"episodes must be at most {MAX_EPISODES}, got {self.episodes}")
        if self.seed_start < 0:
            raise ValueError(f"seed_start must be at least 0, got {self.seed_start}")
        if self.seed_start + self.episodes - 1 > MAX_SEED:  # episode i's seed is seed_start + i
            raise ValueError(
                f"seed_start must be at most {MAX_SEED + 1 - self.episodes} for {self.episodes} episodes "
                f"(the last episode's seed at most {MAX_SEED}), got {self.seed_start}"
            )
        check_range("workers", self.workers, 0, MAX_WORKERS)
        for key, most in (("horizon", MAX_EPISODE_STEPS), ("envs_per_worker", MAX_ENVS_PER_WORKER)):
            value = getattr(self, key)
            if value is not None:
                check_range(f"{key} (None: the default)", value, 1, most)
        if self.protocol_seed is not None and self.protocol_seed < 0:
            raise ValueError(f"protocol_seed must be at least 0, got {self.protocol_seed}")
        if self.protocol_seed is not None and self.protocol_seed > MAX_SEED:
            raise ValueError(f"protocol_seed must be at most {MAX_SEED}, got {self.protocol_seed}")
        if not self.protocol:
            raise ValueError("protocol must name a protocol (embodied: the default)")
        if self.clips_per_video < 1:
            raise ValueError(f"clips_per_video must be at least 1, got {self.clips_per_video}")


def make_settings(**fields) -> EvalSettings:
    """``EvalSettings(**fields)`` for settings a user gave: a value it refuses is a :class:`UserError`."""
    try:
        return EvalSettings(**fields)
    except ValueError as err:
        raise UserError(f"evaluation settings: {err}") from None


@dataclass(frozen=True)
class Videos:
    """Rollout videos: the first ``episodes`` episodes of each task, ``cameras`` side by side, into
    ``folder`` (mp4, or GIF with ``gif``)."""

    episodes: int = 0
    """Episodes per task written as videos (the first ones); 0: none."""
    folder: str | Path | None = None
    """Where the videos go; needed when ``episodes`` > 0."""
    cameras: tuple[str, ...] = ()
    """Cameras side by side; empty: the evaluation's observer camera (the recognizer's)."""
    gif: bool = False
    """GIF instead of MP4."""
    fps: int = 20
    """Frames per second (1 to 1000)."""
    size: int = 256
    """Side of each camera's frames in pixels (8 to 1024), rendered for watching apart from the
    policy's observations (which keep their size); 0: the observations' size, scaled up by whole
    factors."""

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ValueError(f"videos must be at least 0, got {self.episodes}")
        check_range("video fps", self.fps, 1, MAX_FPS)
        check_image_side("video size (0: the observations' size)", self.size, zero_ok=True)


NO_VIDEOS = Videos()
"""No video (the default of the functions that take :class:`Videos`)."""


__all__ = ["DEFAULT_ENVS_PER_WORKER", "NO_VIDEOS", "EvalSettings", "Videos", "make_settings"]
