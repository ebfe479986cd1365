"""One environment of an evaluation, in a worker process (:class:`~embodied.eval.pool.EnvPool`).

:class:`EvalEnv` is one such environment. It is told on every ``reset`` which episode to
run, ``options["plan"]``, an :class:`EpisodePlan` (task, seed, cameras to record) or None
(sit this wave out), so one set of worker processes serves every task of an
evaluation. It

- builds the suite environment for the episode's task, and rebuilds it when the task or the
  recorded cameras change or after an error;
- turns anything going wrong into the end of the episode with a reason in
  ``info["error"]``: the environment raising, a non-finite observation or reward, a
  non-finite action from the policy; the evaluation goes on;
- idles once its episode has ended: a ``reset`` without a plan and later ``step`` calls
  return the last observation, reward 0 and ``terminated=True`` without touching the
  simulator (the lock-step waves of :mod:`embodied.eval.rollout` step only the environments
  whose episode runs, so this is a safety net);
- records the frames of extra cameras (the recognizer's observer camera) and the
  observations, and renders video cameras at the video's own size, for
  :meth:`take_recording`, only on episodes that ask for it.

No torch here: worker processes import this module and the suite, nothing else.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from embodied.errors import one_line
from embodied.sim import image_key, make_env


@dataclass(frozen=True)
class EpisodePlan:
    task: str
    """Task to run."""
    seed: int
    """Episode seed: the same seed gives the same initial state and task variant."""
    record: tuple[str, ...] = ()
    """Cameras whose frames are kept as the policy's observations have them (the recognizer's
    observer camera, at the observations' size)."""
    keep_obs: bool = False
    """Keep the episode's observations too (for the alignment of the policy's windows)."""
    video: tuple[str, ...] = ()
    """Cameras rendered for a video of the episode, at ``video_size``, apart from the observations."""
    video_size: int = 0
    """Side of the video frames in pixels."""
    variant: tuple[float, ...] | None = None
    """The task variant to start from, as a suite's own protocol fixes it
    (``reset(options={"variant": ...})``); None: the seed draws it."""


@dataclass
class Recording:
    """What a recorded episode leaves: frames and observations, initial one included (L + 1 for L steps)."""

    frames: dict[str, np.ndarray]
    """camera -> (L + 1, H, W, 3) uint8, at the observations' size (``EpisodePlan.record``)."""
    obs: dict[str, np.ndarray]
    """observation key -> (L + 1, ...) as the policy saw them (empty unless ``keep_obs``)."""
    video: dict[str, np.ndarray] = field(default_factory=dict)
    """camera -> (L + 1, S, S, 3) uint8 at the video's size (``EpisodePlan.video``)."""


def default_env_fn(suite: str, task: str, **kwargs) -> gym.Env:
    """The suite's own environment (:func:`embodied.sim.make_env`)."""
    return make_env(suite, task, **kwargs)


class EvalEnv(gym.Env):
    """One worker's environment, driven episode by episode by :func:`evaluate_policy` (module doc)."""

    def __init__(
        self,
        suite: str,
        first: EpisodePlan,
        cameras: tuple[str, ...],
        image_size: int,
        horizon: int | None,
        terminate_on_success: bool,
        env_fn: Callable[..., gym.Env] = default_env_fn,
        mesh_detail: str = "full",
    ) -> None:
        self.suite = suite
        self.mesh_detail = mesh_detail  # as the policy's training data drew its frames
        self.cameras = tuple(cameras)  # those the policy reads: in every observation
        self.image_size = image_size
        self.horizon = horizon
        self.terminate_on_success = terminate_on_success
        self.env_fn = env_fn
        self._env: gym.Env | None = None
        self._built: tuple[str, tuple[str, ...]] | None = None
        env = self._env_for(first.task, first.record)  # built for the first episode it will run
        recorded_only = {image_key(c) for c in first.record if c not in self.cameras}
        self.observation_space = gym.spaces.Dict(
            {k: s for k, s in env.observation_space.spaces.items() if k not in recorded_only}
        )
        self.action_space = env.action_space
        self._blank = {k: np.zeros(s.shape, s.dtype) for k, s in self.observation_space.spaces.items()}
        self._last = self._blank
        self._done = True
        self._plan: EpisodePlan | None = None
        self._frames: dict[str, list[np.ndarray]] = {}
        self._obs: dict[str, list[np.ndarray]] = {}
        self._video: dict[str, list[np.ndarray]] = {}

    # ------------------------------------------------------------------ the environment
    def _env_for(self, task: str, record: tuple[str, ...]) -> gym.Env:
        extra = tuple(c for c in record if c not in self.cameras)
        if self._env is None or self._built != (task, extra):
            self._drop_env()
            self._env = self.env_fn(
                self.suite,
                task,
                cameras=self.cameras + extra,
                image_size=self.image_size,
                horizon=self.horizon,
                terminate_on_success=self.terminate_on_success,
                mesh_detail=self.mesh_detail,
            )
            self._built = (task, extra)
        return self._env

    def _drop_env(self) -> None:
        env, self._env, self._built = self._env, None, None
        if env is not None:
            # A broken environment may fail to close too; it is dropped anyway.
            with contextlib.suppress(Exception):
                env.close()

    # ------------------------------------------------------------------ the gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        options = options or {}
        if "plan" not in options:
            # Not told an episode (a vector env's autoreset after an episode ended): stay idle
            # until the next wave, keeping the episode's recording for take_recording.
            self._done = True
            return self._last, {}
        self._plan = options["plan"]  # this environment's episode, or None: it sits the wave out
        self._frames, self._obs, self._video = {}, {}, {}
        self._done = True
        self._last = self._blank
        if self._plan is None:
            return self._blank, {}
        try:
            env = self._env_for(self._plan.task, self._plan.record)
            variant = self._plan.variant
            obs, _ = env.reset(
                seed=self._plan.seed, options=None if variant is None else {"variant": variant}
            )
        except Exception as err:
            self._drop_env()
            return self._blank, {"error": f"reset raised {one_line(err, typed=True, limit=200)}"}
        problem = _non_finite(obs)
        if problem:
            self._drop_env()
            return self._blank, {"error": f"non-finite observation ({problem}) at reset"}
        self._done = False
        return self._observe(obs), {}

    def step(self, action):
        if self._done:
            return self._last, 0.0, True, False, {}
        action = np.asarray(action, dtype=np.float32)
        if not np.isfinite(action).all():
            return self._fail("non-finite action from the policy")
        try:
            obs, reward, terminated, truncated, info = self._env.step(action)
        except Exception as err:
            self._drop_env()  # whatever state it is in, the next episode gets a fresh one
            return self._fail(f"step raised {one_line(err, typed=True, limit=200)}")
        problem = _non_finite(obs) or ("reward" if not math.isfinite(reward) else "")
        if problem:
            self._drop_env()
            return self._fail(f"non-finite observation ({problem})")
        if info.get("unstable"):  # Meta-World saw a MuJoCo warning: the state is not to be trusted
            self._drop_env()
            return self._fail("unstable simulation")
        self._done = bool(terminated or truncated)
        return (
            self._observe(obs),
            float(reward),
            bool(terminated),
            bool(truncated),
            {"success": bool(info.get("success", False))},
        )

    def close(self) -> None:
        self._drop_env()

    # ------------------------------------------------------------------ recording
    def take_recording(self) -> Recording | None:
        """The frames (and observations) of the episode just run, if it was recorded; then forgets them."""
        if not self._frames and not self._obs and not self._video:
            return None
        rec = Recording(
            frames={cam: np.stack(f) for cam, f in self._frames.items()},
            obs={key: np.stack(o) for key, o in self._obs.items()},
            video={cam: np.stack(f) for cam, f in self._video.items()},
        )
        self._frames, self._obs, self._video = {}, {}, {}
        return rec

    def _observe(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        plan = self._plan
        for cam in plan.record:
            self._frames.setdefault(cam, []).append(obs[image_key(cam)])
        if plan.video:  # rendered for watching, at their own size: the observations stay as they are
            for cam, img in self._env.render_cameras(plan.video, size=plan.video_size).items():
                self._video.setdefault(cam, []).append(img)
        out = {key: obs[key] for key in self.observation_space.spaces}  # recorded-only images stay out
        if plan.keep_obs:
            for key, value in out.items():
                self._obs.setdefault(key, []).append(value)
        self._last = out
        return out

    def _fail(self, reason: str):
        self._done = True
        return self._last, 0.0, True, False, {"error": reason}


def _non_finite(obs: dict[str, np.ndarray]) -> str:
    """The first floating-point observation key holding NaN or infinity, or ''.

    Runs on every step: the method forms below cost half of ``np.all(np.isfinite(x))``, and
    these checks were most of what this wrapper added to a Meta-World step (docs/speed.md).
    """
    for key, value in obs.items():
        if not isinstance(value, np.ndarray):
            value = np.asarray(value)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return key
    return ""
