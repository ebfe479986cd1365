"""Simulation: every suite behind one factory, :func:`make_env`.

    env = make_env("metaworld", "drawer-open-v3", cameras=("corner",), image_size=84)
    obs, info = env.reset(seed=0)

A suite is one entry of the registry (:mod:`embodied.sim.registry`): its adapter (a
:class:`SuiteEnv`, whose contract :mod:`embodied.sim.base` states), its spec under ``envs/``,
whether it has a scripted expert and what the evaluation workers preload. Adding one is its
adapter module, its spec and one ``register_suite`` call; callers do not change.

Importing this package also registers every task as a gymnasium id, ``embodied/<suite>-<task>``
(:mod:`.gym_ids`), here rather than in ``embodied`` itself, which imports nothing heavy.
"""

from __future__ import annotations

from embodied.keys import IMAGE_SIZE
from embodied.sim.base import SuiteEnv, image_key
from embodied.sim.gym_ids import register_gym_ids
from embodied.sim.registry import SUITES, Suite, get_suite, known_suites, register_suite
from embodied.sim.render import RenderOptions
from embodied.sim.spec import SuiteSpec, TaskSpec, load_suite


def make_env(
    suite: str,
    task: str,
    seed: int | None = None,
    cameras: tuple[str, ...] | list[str] = (),
    image_size: int = IMAGE_SIZE,
    horizon: int | None = None,
    render: RenderOptions = RenderOptions(),
    terminate_on_success: bool = True,
    mesh_detail: str = "full",
) -> SuiteEnv:
    """Build one environment of ``suite``; with ``seed`` it is reset once to that seed.
    ``mesh_detail="low"`` draws large meshes simplified: cheaper small frames that differ a
    little from the suite's own look (:mod:`embodied.sim.meshes`)."""
    env = get_suite(suite).env_class()(
        task=task,
        cameras=tuple(cameras),
        image_size=image_size,
        horizon=horizon,
        render=render,
        terminate_on_success=terminate_on_success,
        mesh_detail=mesh_detail,
    )
    if seed is not None:
        env.reset(seed=seed)
    return env


register_gym_ids()  # gymnasium.make("embodied/<suite>-<task>") after `import embodied.sim`

__all__ = [
    "SUITES",
    "RenderOptions",
    "Suite",
    "SuiteEnv",
    "SuiteSpec",
    "TaskSpec",
    "get_suite",
    "image_key",
    "known_suites",
    "load_suite",
    "make_env",
    "register_suite",
]
