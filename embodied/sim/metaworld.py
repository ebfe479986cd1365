"""Meta-World v3 behind the :class:`SuiteEnv` contract.

Meta-World's own ``gym.make('Meta-World/MT1', ...)`` draws task variants from a fixed list of
50 and ignores ``reset(seed=)``. Here the environment class is built directly and every
variant is drawn from the env's own generator, seeded on ``reset(seed=)``, so a seed names a
variant (object and goal positions) reproducibly, for any seed. The goal is observable, as in
the MT benchmarks, because the scripted experts and a policy need it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from embodied.errors import UserError
from embodied.keys import IMAGE_SIZE
from embodied.sim.base import FixedEpisodes, image_key
from embodied.sim.mujoco_env import MujocoSuiteEnv
from embodied.sim.render import RenderOptions, upright_cameras

# Meta-World's flat 39-d observation: [hand xyz, gripper opening, 14 object dims] for the
# current and the previous frame, then the goal xyz. The previous frame is left out: it is
# what an observation history gives, and the experts act on the current frame only.
LOW_DIM_SLICES = {
    "robot_state": slice(0, 4),  # end-effector position (3) and gripper opening (1)
    "object_state": slice(4, 18),  # up to two objects: position (3) and quaternion (4) each
    "goal": slice(36, 39),  # goal position
}
# The scripted experts warn on every step that their gains saturate; the env clips actions anyway.
warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high", category=UserWarning)


class MetaWorldEnv(MujocoSuiteEnv):
    suite = "metaworld"
    low_dim_keys = tuple(LOW_DIM_SLICES)
    # Meta-World's own: a step is 5 physics steps of 2.5 ms
    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

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
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        self._configure(task, cameras, image_size, horizon, terminate_on_success, render_mode, mesh_detail)

        env = ALL_V3_ENVIRONMENTS[task]()
        env._partially_observable = False  # the goal is part of the observation
        env.__dict__.pop("sawyer_observation_space", None)  # it is cached per observability
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True  # variants come from env.np_random, which we seed
        env._set_task_called = True
        env.max_path_length = max(env.max_path_length, self.horizon)
        self._env = env
        self.turned_cameras = upright_cameras(env.model, env.data)
        self._init_rendering(env.model, env.data, render)
        self._raw_obs: np.ndarray | None = None
        self._t = 0
        self._expert = None

        spaces = {
            key: gym.spaces.Box(-np.inf, np.inf, (s.stop - s.start,), np.float32)
            for key, s in LOW_DIM_SLICES.items()
        }
        for cam in self.cameras:
            spaces[image_key(cam)] = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)

    # -- the gymnasium API -------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.seed(int(seed))  # Meta-World ignores reset(seed=); this seeds its variant
        variant = (options or {}).get("variant")
        if variant is None:
            raw, _ = self._env.reset()
        else:  # a fixed rand_vec (the Meta-World protocol's goals): frozen for this reset only
            self._env._last_rand_vec = np.asarray(variant, dtype=np.float64)
            self._env._freeze_rand_vec = True
            try:
                raw, _ = self._env.reset()
            finally:
                self._env._freeze_rand_vec = False
        self._t = 0
        return self._observe(raw), {"success": False}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        raw, reward, _, _, info = self._env.step(action)
        self._t += 1
        success = bool(info.get("success", 0.0))
        terminated = success and self.terminate_on_success
        truncated = self._t >= self.horizon and not terminated
        info = {"success": success, "unstable": bool(self._env._did_see_sim_exception)}
        return self._observe(raw), float(reward), terminated, truncated, info

    def close(self) -> None:
        self._close_renderers()
        self._env.close()

    # -- the SuiteEnv additions -----------------------------------------------------------
    def set_state(self, state: np.ndarray) -> dict[str, np.ndarray]:
        self._restore_state(state)
        return self._observe(self._env._get_obs())

    def task_variant(self) -> np.ndarray:
        # Meta-World places many objects and goals through the model's body poses, not the state.
        model = self._env.model
        return np.concatenate([model.body_pos.ravel(), model.body_quat.ravel()])

    def expert(self) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
        from metaworld.policies import ENV_POLICY_MAP

        policy = ENV_POLICY_MAP[self.task.name]()
        # The experts read Meta-World's flat observation, which this adapter keeps.
        return lambda obs: np.clip(policy.get_action(self._raw_obs), -1.0, 1.0).astype(np.float32)

    # -- helpers ------------------------------------------------------------------------
    def _observe(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        self._raw_obs = raw
        obs = {key: raw[s].astype(np.float32) for key, s in LOW_DIM_SLICES.items()}
        for cam, img in self._camera_images().items():
            obs[image_key(cam)] = img
        return obs


# -- Meta-World's own evaluation protocol --------------------------------------------------
PROTOCOL_SEED = 42
"""The default benchmark seed of ``--protocol metaworld``: the one Meta-World's documentation
uses in its examples (its own default, None, draws different goals every run)."""
PROTOCOL_HORIZON = 500
"""Meta-World's step limit (``max_path_length``)."""
GOALS_PER_TASK = 50
"""Goals per task in Meta-World's benchmarks (``metaworld._N_GOALS``)."""


def protocol_episodes(tasks: list[str], episodes: int, seed: int = PROTOCOL_SEED) -> FixedEpisodes:
    """Meta-World's multi-task protocol (its docs/evaluation/evaluation.md, what
    ``metaworld.evaluation.evaluation`` runs): for each task, the goals its benchmark draws for
    ``seed``, one episode per goal, in the order its evaluator visits them, 500 steps.

    The goals come from Meta-World's own code, not a copy of it: the environments that
    ``gymnasium.make_vec("Meta-World/MT10" | "Meta-World/MT25" | "Meta-World/MT50", seed=seed,
    task_select="pseudorandom")`` builds when ``tasks`` is exactly that benchmark's set (its goals
    depend on the whole set: one generator draws them task after task), else
    ``gymnasium.make("Meta-World/MT1", env_name=task, seed=seed, task_select="pseudorandom")``
    for each task, are reset ``episodes`` times each, as the evaluator's resets do, and the goal
    (``rand_vec``) of each reset is read off. Pseudorandom selection visits every goal once
    (Meta-World's default, random, draws with replacement); the first ``episodes`` visited are
    the first ``episodes`` of a run of Meta-World's evaluator with ``num_episodes=episodes``.

    A set that is not one of Meta-World's benchmarks (the quick tasks) has no goals of its own
    there, and Meta-World builds one two ways: MT1 per task with ``seed`` (here), or
    ``gymnasium.make_vec("Meta-World/custom-mt-envs", envs_list=tasks, seed=seed)``, which seeds
    its i-th environment with ``seed + i`` (metaworld 3.1.1: none at all for seed 0). MT1 per task
    because a task's goals then depend on the task and the seed alone, not on the tasks evaluated
    beside it or their order (``--tasks window-open-v3`` gets the goals it gets in the quick set),
    and are those of Meta-World's single-task benchmark. A ``custom-mt-envs`` result for its i-th
    task is this protocol's with seed + i: listed button-press-topdown, drawer-open, window-open
    with seed 42, its window-open-v3 ran MT1's goals for seed 44 (47/50 for a checkpoint that
    counted 39/50 on seed 42's, under either evaluator; ``tests/test_protocol.py``).
    """
    import metaworld
    from metaworld import env_dict

    if not 1 <= episodes <= GOALS_PER_TASK:
        raise UserError(
            f"the Meta-World protocol runs one episode per goal, {GOALS_PER_TASK} goals per task: "
            f"episodes must be 1..{GOALS_PER_TASK}, got {episodes}"
        )
    name_of = {cls: name for name, cls in env_dict.ALL_V3_ENVIRONMENTS.items()}
    benchmarks = {"MT10": env_dict.MT10_V3, "MT25": env_dict.MT25_V3, "MT50": env_dict.MT50_V3}
    bench = next((b for b, classes in benchmarks.items() if set(classes) == set(tasks)), None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Meta-World's gymnasium wrappers warn about their own spaces
        if bench is not None:
            vector = metaworld.make_mt_envs(bench, seed=seed, task_select="pseudorandom")
            envs = list(vector.envs)
            source = f"Meta-World {bench}(seed={seed}), pseudorandom task selection"
        else:
            envs = [metaworld.make_mt_envs(t, seed=seed, task_select="pseudorandom") for t in tasks]
            source = f"Meta-World MT1(env_name=<task>, seed={seed}) per task, pseudorandom task selection"
        variants: dict[str, list[tuple[float, ...]]] = {}
        for env in envs:
            env.get_wrapper_attr("toggle_sample_tasks_on_reset")(True)
            goals = []
            for _ in range(episodes):
                env.reset()  # as the evaluator's reset and its vector env's autoresets: the next goal
                goals.append(tuple(float(v) for v in env.unwrapped._last_rand_vec))
            variants[name_of[type(env.unwrapped)]] = goals
            env.close()
    return FixedEpisodes(
        name="metaworld",
        seed=seed,
        horizon=PROTOCOL_HORIZON,
        variants={t: variants[t] for t in tasks},
        source=source,
    )
