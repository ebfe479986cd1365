"""robosuite 1.5.1 behind the :class:`SuiteEnv` contract: robomimic's tasks and observations.

A Panda arm with the OSC_POSE controller (robosuite's BASIC composite controller: end-effector
position and orientation deltas, 0.05 m and 0.5 rad at full scale, and the gripper), 20
control steps a second, as robomimic's v1.5 datasets were recorded. Observations carry
robomimic's names: ``robot0_eef_pos`` (3), ``robot0_eef_quat`` (4), ``robot0_gripper_qpos`` (2),
``object`` (the task's object state: 10 for Lift, 14 for PickPlaceCan and NutAssemblySquare, 23
for Stack) and
``<camera>_image`` (``agentview_image``, ``robot0_eye_in_hand_image``).

Images come from embodied's own headless renderer (:class:`~embodied.sim.render.CameraRenderer`:
shadows and multisampling off, MuJoCo's upright image convention), not robosuite's
offscreen renderer, which renders slower and upside down by default. ``reset(seed=s)`` is
deterministic: robosuite sizes objects when it builds a task, and places them and perturbs the
arm's start at each reset, with NumPy's global generator, which is seeded for both and restored
after, so nothing else is disturbed.
Resets are soft (``hard_reset=False``): the model is built once, not again every episode.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import gymnasium as gym
import mujoco
import numpy as np

from embodied.keys import IMAGE_SIZE
from embodied.sim.base import image_key
from embodied.sim.mujoco_env import STATE_SPEC, MujocoSuiteEnv
from embodied.sim.registry import get_suite
from embodied.sim.render import RenderOptions

ROBOT = "Panda"
CONTROL_FREQ = 20
LOW_DIM_KEYS = {
    "robot0_eef_pos": "robot0_eef_pos",
    "robot0_eef_quat": "robot0_eef_quat",
    "robot0_gripper_qpos": "robot0_gripper_qpos",
    "object": "object-state",  # robomimic's name for robosuite's object-state
}
"""Observation key -> robosuite's own key."""
ROBOSUITE_STATE = mujoco.mjtState.mjSTATE_TIME | mujoco.mjtState.mjSTATE_QPOS | mujoco.mjtState.mjSTATE_QVEL
"""robosuite's flattened state (``sim.get_state().flatten()``, what robomimic's files store):
time, qpos, qvel, in the order MuJoCo lays them out, so the start of embodied's state."""


def robosuite_kwargs(horizon: int) -> dict:
    """What ``robosuite.make`` gets besides the task: the robot, its controller, the control
    rate, and no renderer of robosuite's own (embodied renders the cameras itself)."""
    from robosuite.controllers import load_composite_controller_config

    return {
        "robots": ROBOT,
        "controller_configs": load_composite_controller_config(controller="BASIC", robot=ROBOT),
        "has_renderer": False,
        "has_offscreen_renderer": False,
        "use_camera_obs": False,
        "use_object_obs": True,
        "control_freq": CONTROL_FREQ,
        "horizon": horizon,
        "ignore_done": True,  # the adapter ends episodes: success or its own horizon
        "reward_shaping": False,
        "hard_reset": False,
    }


BUILD_SEED = 0
"""The global generator's seed while robosuite builds a task's model."""


@contextlib.contextmanager
def _global_numpy_seed(seed: int | None):
    """robosuite draws placements and noise from NumPy's legacy global generator: seed it for
    the block (None: leave it unseeded) and restore it after, so that nothing else is disturbed."""
    state = np.random.get_state()  # noqa: NPY002  (robosuite's generator, not ours)
    try:
        if seed is not None:
            np.random.seed(int(seed) % 2**32)  # noqa: NPY002
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


class RobosuiteEnv(MujocoSuiteEnv):
    suite = "robosuite"
    low_dim_keys = tuple(LOW_DIM_KEYS)
    metadata = {"render_modes": ["rgb_array"], "render_fps": CONTROL_FREQ}

    def __init__(
        self,
        task: str,
        cameras: tuple[str, ...] = (),
        image_size: int = IMAGE_SIZE,
        horizon: int | None = None,
        render: RenderOptions = RenderOptions(),
        terminate_on_success: bool = True,
        render_mode: str | None = None,
        mesh_detail: str = "full",
    ) -> None:
        import robosuite

        # Its INFO and WARNING lines on every build (controller parts a Panda has not); set after the
        # import, which configures this logger.
        logging.getLogger("robosuite_logs").setLevel(logging.ERROR)

        self._configure(task, cameras, image_size, horizon, terminate_on_success, render_mode, mesh_detail)
        # Building draws from the same generator (Lift's cube and Stack's cubes get random sizes):
        # seeded, every process builds the same model, so that a seed's episode is the same in any
        # of them (collection workers, evaluation workers, a replay).
        with _global_numpy_seed(BUILD_SEED):
            self._env = robosuite.make(self.task.name, **robosuite_kwargs(self.horizon))
        self._init_rendering(self._env.sim.model._model, self._env.sim.data._data, render)
        self._raw: dict[str, np.ndarray] = {}
        self._t = 0
        self.episode = 0
        """Resets so far: the experts start again when it changes."""

        spaces = {}
        robosuite_spec = self._env.observation_spec()
        for key, src in LOW_DIM_KEYS.items():
            spaces[key] = gym.spaces.Box(-np.inf, np.inf, robosuite_spec[src].shape, np.float32)
        for cam in self.cameras:
            spaces[image_key(cam)] = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        low, high = self._env.action_spec
        self.action_space = gym.spaces.Box(-1.0, 1.0, low.shape, np.float32)
        assert np.allclose(low, -1.0) and np.allclose(high, 1.0)

    # -- the gymnasium API -------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        with _global_numpy_seed(seed):  # object placement and the arm's start noise
            self._env.reset()
            raw = self._observations()
        self._t = 0
        self.episode += 1
        return self._observe(raw), {"success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        _, reward, _, _ = self._env.step(action)
        # robosuite's step returns what its observables sampled at their own times (the first of
        # the step's 25 physics steps), from kinematics one physics step old. Observe the state
        # the step ends in instead, as the images do and as robomimic's dataset_states_to_obs
        # does: positions brought up to date (the next step starts with the same mj_forward,
        # so the trajectory is robosuite's own), every observable read now.
        mujoco.mj_forward(self._model, self._data)
        raw = self._observations()
        self._t += 1
        success = bool(self._env._check_success())
        terminated = success and self.terminate_on_success
        truncated = self._t >= self.horizon and not terminated
        return self._observe(raw), float(reward), terminated, truncated, {"success": success}

    def close(self) -> None:
        self._close_renderers()
        self._env.close()

    # -- the SuiteEnv additions -----------------------------------------------------------
    def set_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        """Restore embodied's state (MuJoCo's integration state) or robosuite's own flattened
        one, (time, qpos, qvel), as robomimic's files store it: the first is the second followed
        by the rest of what the next step starts from (controls, the solver's warm start, ...)."""

        def reread() -> None:  # the controllers cache the pose they last read
            for robot in self._env.robots:
                for controller in robot.composite_controller.part_controllers.values():
                    controller.update(force=True)

        short = np.size(state) == mujoco.mj_stateSize(self._model, ROBOSUITE_STATE)
        self._restore_state(state, after_forward=reread, spec=ROBOSUITE_STATE if short else STATE_SPEC)
        return self._observe(self._observations())

    def env_args(self) -> dict:
        """robomimic's ``env_meta`` for robosuite (``type`` 1, ``env_kwargs`` for
        ``robosuite.make``), with which robomimic's ``EnvRobosuite`` rebuilds this environment
        from a file: robomimic's training rollouts and its dataset tools then run on it."""
        import robosuite

        kwargs = robosuite_kwargs(self.horizon)
        if self.cameras:  # robomimic renders camera_names[0] by default: leave them out when none
            kwargs |= {
                "camera_names": list(self.cameras),
                "camera_heights": self.image_size,
                "camera_widths": self.image_size,
            }
        if self.mesh_detail != "full":  # embodied's own keyword: robomimic's tools would refuse it
            kwargs["mesh_detail"] = self.mesh_detail
        version = robosuite.__version__
        env_type = get_suite(self.suite).robomimic_type
        return {"env_name": self.task.name, "env_version": version, "type": env_type, "env_kwargs": kwargs}

    def demo_attrs(self) -> dict:
        return {"model_file": self._env.sim.model.get_xml()}

    def expert(self) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        from embodied.sim.robosuite_experts import make_expert

        return make_expert(self.task.name, self)

    # -- helpers ------------------------------------------------------------------------
    def positions(self) -> dict[str, np.ndarray]:
        """The raw robosuite observation of the current step (object poses by robosuite's
        names, ``cube_pos``, ``Can_pos``, ...): what the scripted experts read."""
        return self._raw

    def _observations(self) -> dict[str, np.ndarray]:
        """Every robosuite observable read from the current state. Its cache of values computed
        on the way (an object's position, for the relative ones) is emptied first: stale, it
        would give relative positions from the last reading, not this state's."""
        self._env._obs_cache = {}
        return self._env._get_observations(force_update=True)

    def _observe(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._raw = raw
        obs = {key: np.asarray(raw[src], dtype=np.float32) for key, src in LOW_DIM_KEYS.items()}
        for cam, img in self._camera_images().items():
            obs[image_key(cam)] = img
        return obs
