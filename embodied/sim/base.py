"""The contract every suite adapter keeps: a gymnasium environment with a few additions.

What callers (collection, evaluation, replay, the tests) rely on, and nothing more:

- **Construction** through :func:`embodied.sim.make_env` with the keywords ``task``,
  ``cameras``, ``image_size``, ``horizon`` (None: the task's default from the suite spec),
  ``render`` (:class:`~embodied.sim.render.RenderOptions`), ``mesh_detail`` (``full``: the
  suite's own look; ``low``: large meshes drawn simplified, cheaper small frames, see
  :mod:`embodied.sim.meshes`; recorded in :meth:`env_kwargs`), ``terminate_on_success`` and
  gymnasium's ``render_mode`` (``rgb_array`` or None); an unknown task or camera is a
  :class:`~embodied.errors.UserError` naming the known ones. Every task is also the gymnasium
  id ``embodied/<suite>-<task>``, made with the same keywords; the class's ``metadata`` gives
  ``render_fps``. Renderers are made at the first frame, so an environment built before a
  fork renders in the child (gymnasium's ``AsyncVectorEnv`` under fork), unless the parent had
  rendered before it forked: EGL does not survive fork, and the child refuses in one line
  rather than hang (:func:`~embodied.sim.render.check_not_forked_after_rendering`).
- **Observations** are dicts: low-dimensional keys (float32 vectors, the class's
  ``low_dim_keys``) plus ``<camera>_image``
  (H, W, 3) uint8 for each requested camera, upright, the same keys and layout the
  demonstration files use. ``observation_space`` is a ``Dict`` space that holds them.
- **Actions** are float32 vectors in [-1, 1] (``action_space`` is that ``Box``); values outside
  are clipped, not refused.
- **reset(seed=s)** is deterministic: the same seed gives the same initial state and task
  variant in any instance, in any process. ``info["success"]`` is ``False`` there.
  ``reset(options={"variant": v})`` starts from the variant ``v`` instead of the one the seed
  draws, where the suite has such vectors (Meta-World's ``rand_vec``: object and goal
  positions); a suite's own evaluation protocol (:class:`FixedEpisodes`) fixes its episodes so.
- **step** returns gymnasium's 5-tuple with a float reward and bool ``terminated``/``truncated``:
  ``terminated`` when the task succeeds (if ``terminate_on_success``), ``truncated`` at
  ``horizon`` steps. ``info["success"]`` (bool) is set on every step; ``info["unstable"]``
  (bool, optional, default False) says that the simulator itself reported a fault (a MuJoCo
  warning), after which evaluation counts the episode as failed rather than trusting it.
- **State**: :meth:`get_state` / :meth:`set_state` restore a state within the variant that
  ``reset(seed=)`` made; :meth:`task_variant` returns what makes up that variant outside the
  state (for the tests' determinism checks).
- **Rebuilding**: :meth:`env_kwargs` gives what ``make_env`` needs to build the environment
  again; :meth:`env_args` what a demonstration file records of it (robomimic's ``env_args``),
  and :meth:`demo_attrs` what each demo adds; adapters whose simulator cannot be pickled
  faithfully refuse pickling with a message.
- :meth:`expert` returns the suite's scripted expert when the registry entry says
  ``has_expert``; :meth:`render_cameras` renders any of the spec's cameras at any size without
  changing the observed streams; ``render()`` gives the first camera's frame (``rgb_array``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from embodied.errors import UserError
from embodied.sim.spec import TaskSpec, load_suite


def check_render_mode(mode: str | None) -> str | None:
    """gymnasium's ``render_mode``: ``rgb_array`` (the first camera's frame) or None."""
    if mode not in (None, "rgb_array"):
        raise UserError(f"render_mode {mode!r}: only 'rgb_array' (or none) renders here, headless")
    return mode


def image_key(camera: str) -> str:
    """The observation key of a camera's image stream (robomimic's naming)."""
    return f"{camera}_image"


@dataclass(frozen=True)
class FixedEpisodes:
    """The episodes a suite's own evaluation protocol fixes (the registry's ``protocols``), as
    opposed to embodied's default of one freshly seeded variant per episode."""

    name: str
    """The protocol's name (``metaworld``)."""
    seed: int
    """The seed its variants were drawn from."""
    horizon: int
    """Its step limit, the same for every task."""
    variants: dict[str, list[tuple[float, ...]]]
    """task -> the variant of each episode, in the order the protocol runs them
    (``reset(options={"variant": v})``)."""
    source: str
    """Where the variants come from, in words, for the results."""


class SuiteEnv(gym.Env):
    """Base class of suite adapters (Meta-World, robosuite)."""

    metadata = {"render_modes": ["rgb_array"]}
    suite: str
    low_dim_keys: tuple[str, ...]
    """The low-dimensional observation keys every environment of the suite gives (images come
    from its cameras): a policy that reads others cannot be rolled out in it."""
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
    def render_cameras(
        self, cameras: tuple[str, ...] | None = None, size: int | None = None
    ) -> dict[str, np.ndarray]:
        """Images of the given (default: the configured) cameras in the current state, ``size``
        pixels square (default: the observations' size), without changing the observations."""

    def _configure(
        self,
        task: str,
        cameras: tuple[str, ...],
        image_size: int,
        horizon: int | None,
        terminate_on_success: bool,
        render_mode: str | None,
        mesh_detail: str = "full",
    ) -> None:
        """The construction keywords every adapter takes, checked against the suite's spec."""
        from embodied.sim.meshes import check_mesh_detail

        self.render_mode = check_render_mode(render_mode)
        self.mesh_detail = check_mesh_detail(mesh_detail)
        spec = load_suite(self.suite)
        self.task = spec.task(task)
        self.cameras = spec.check_cameras(cameras)
        self.image_size = int(image_size)
        self.horizon = int(horizon or self.task.horizon)
        self.terminate_on_success = terminate_on_success

    def task_variant(self) -> np.ndarray:
        """What, besides :meth:`get_state`, makes up the variant ``reset(seed=)`` drew (e.g.
        object placements kept in the model); empty where the state holds all of it."""
        return np.zeros(0)

    def env_kwargs(self) -> dict:
        """What :func:`embodied.sim.make_env` needs to build this environment again."""
        return {}

    def env_args(self) -> dict:
        """The ``env_args`` a demonstration file stores (robomimic's ``env_meta``): the task,
        the suite and what rebuilds the environment. A suite robomimic knows writes them as
        robomimic does, so that robomimic's tools rebuild it from the file
        (:mod:`embodied.data.files` reads both forms)."""
        return {"env_name": self.task.name, "type": self.suite, "env_kwargs": self.env_kwargs()}

    def demo_attrs(self) -> dict:
        """Attributes each demo of this suite's files carries besides embodied's own (robosuite:
        robomimic's ``model_file``, the scene's MJCF, which robomimic's tools reset to)."""
        return {}
