"""Simulation: every suite behind one factory, :func:`make_env`.

    env = make_env("metaworld", "drawer-open-v3", cameras=("corner",), image_size=84)
    obs, info = env.reset(seed=0)

A second suite (robosuite) is added by writing its adapter (a :class:`SuiteEnv`), its spec
under ``envs/`` and one line in ``SUITES``; callers do not change.
"""

from __future__ import annotations

from collections.abc import Callable

from embodied.errors import UserError
from embodied.sim.base import SuiteEnv, image_key
from embodied.sim.render import RenderOptions
from embodied.sim.spec import SuiteSpec, TaskSpec, load_suite


def _metaworld(**kwargs) -> SuiteEnv:
    from embodied.sim.metaworld import MetaWorldEnv

    return MetaWorldEnv(**kwargs)


SUITES: dict[str, Callable[..., SuiteEnv]] = {"metaworld": _metaworld}


def make_env(
    suite: str,
    task: str,
    seed: int | None = None,
    cameras: tuple[str, ...] | list[str] = (),
    image_size: int = 84,
    horizon: int | None = None,
    render: RenderOptions = RenderOptions(),
    terminate_on_success: bool = True,
) -> SuiteEnv:
    """Build one environment of ``suite``; with ``seed`` it is reset once to that seed."""
    if suite not in SUITES:
        raise UserError(f"unknown suite {suite!r}; suites: {', '.join(SUITES)}")
    env = SUITES[suite](
        task=task,
        cameras=tuple(cameras),
        image_size=image_size,
        horizon=horizon,
        render=render,
        terminate_on_success=terminate_on_success,
    )
    if seed is not None:
        env.reset(seed=seed)
    return env


__all__ = [
    "SUITES",
    "RenderOptions",
    "SuiteEnv",
    "SuiteSpec",
    "TaskSpec",
    "image_key",
    "load_suite",
    "make_env",
]
