"""The contract every suite adapter keeps: a gymnasium environment with a few additions.

Observations are dicts: low-dimensional keys (float32 vectors) plus ``<camera>_image``
(H, W, 3) uint8 for each requested camera, the same keys the demonstration files use.
``reset(seed=s)`` is deterministic: the same seed gives the same initial state and task
variant. ``info["success"]`` is set on every step.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from embodied.sim.spec import TaskSpec


def image_key(camera: str) -> str:
    """The observation key of a camera's image stream (robomimic's naming)."""
    return f"{camera}_image"


class SuiteEnv(gym.Env):
    """Base class of suite adapters (Meta-World now, robosuite next)."""

    metadata = {"render_modes": ["rgb_array"]}
    suite: str
    task: TaskSpec
    cameras: tuple[str, ...]
    horizon: int

    @abstractmethod
    def get_state(self) -> np.ndarray:
        """The flattened simulator state (float64), enough to replay from after ``reset(seed=)``
        to the episode's seed: the task variant may live in the model, not in this state
        (Meta-World places many objects through ``model.body_pos``)."""

    @abstractmethod
    def set_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Restore a state from :meth:`get_state` and return the observation there."""

    @abstractmethod
    def expert(self) -> Callable[[dict[str, np.ndarray]], np.ndarray] | None:
        """The suite's scripted expert for this task (observation -> action), if it has one."""

    @abstractmethod
    def render_cameras(self, cameras: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        """Images of the given (default: the configured) cameras in the current state."""

    def env_kwargs(self) -> dict:
        """What :func:`embodied.sim.make_env` needs to build this environment again."""
        return {}
