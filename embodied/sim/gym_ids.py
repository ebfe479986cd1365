"""Every task of every registered suite as a gymnasium environment, ``embodied/<suite>-<task>``,
registered when :mod:`embodied.sim` is imported (``import embodied`` alone imports no simulator)::

    import embodied.sim, gymnasium
    env = gymnasium.make("embodied/metaworld-drawer-open-v3", cameras=("corner",), image_size=84)
    gymnasium.make("embodied.sim:embodied/metaworld-drawer-open-v3")  # in a fresh process: imports it

Apart from the registry, which the specs read (a suite's spec file is named in its entry), so that
neither imports the other.
"""

from __future__ import annotations

from embodied.sim.registry import SUITES
from embodied.sim.spec import load_suite

GYM_NAMESPACE = "embodied"
_REGISTERED: dict[str, list[str]] = {}
"""suite -> the gymnasium ids registered for its tasks."""


def gym_id(suite: str, task: str) -> str:
    """The gymnasium id of a task: ``embodied/<suite>-<task>``."""
    return f"{GYM_NAMESPACE}/{suite}-{task}"


def register_gym_ids() -> list[str]:
    """Register every task of every suite with gymnasium (each suite once, a suite registered
    since the last call too); the ids. ``gymnasium.make`` passes its keywords to the adapter
    (``cameras``, ``image_size``, ``horizon``, ``terminate_on_success``,
    ``render_mode="rgb_array"``); the adapter ends its episodes itself (``truncated`` at the
    horizon), so no TimeLimit is added."""
    import gymnasium as gym

    for suite in SUITES.values():
        if suite.name in _REGISTERED:
            continue
        ids = []
        for task in load_suite(suite.spec).tasks:
            env_id = gym_id(suite.name, task)
            if env_id not in gym.registry:
                gym.register(env_id, entry_point=suite.env, kwargs={"task": task})
            ids.append(env_id)
        _REGISTERED[suite.name] = ids
    return [env_id for ids in _REGISTERED.values() for env_id in ids]
