"""The suite registry: one entry per simulation suite, the only list of suites there is.

An entry says everything the rest of the framework needs to know about a suite:

- ``env``: where its :class:`~embodied.sim.base.SuiteEnv` adapter lives (``module:Class``),
  imported only when an environment is built, so that listing suites stays cheap;
- ``spec``: the name of its declarative spec under ``envs/`` (tasks, classes, instructions,
  horizons, cameras, task sets);
- ``has_expert``: whether its adapters' ``expert()`` returns a scripted expert (collection needs
  one);
- ``preload``: the modules that evaluation's forkserver imports once for every worker, so
  that a worker forked from it starts without importing the simulator again;
- ``protocols``: the suite's own evaluation protocols beside embodied's default, each a
  function ``(tasks, episodes, seed) -> FixedEpisodes`` (``module:function``), e.g. Meta-World's
  (``embodied-eval --protocol metaworld``);
- ``robomimic_type``: robomimic's ``EnvType`` number for the suite's files (robosuite: 1), so
  that a robomimic file, whose ``env_args.type`` is that number, finds its suite.

Adding a suite: write ``embodied/sim/<suite>.py`` (the adapter) and ``envs/<suite>.yaml`` (the
spec), then one :func:`register_suite` call at the end of this module. Nothing else names a
suite.

Every task of every registered suite is also a gymnasium environment, ``embodied/<suite>-<task>``,
registered when :mod:`embodied.sim` is imported (:mod:`embodied.sim.gym_ids`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embodied.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from embodied.sim.base import FixedEpisodes


@dataclass(frozen=True)
class Suite:
    name: str
    """The suite's name, as demonstration files (``env_args``) and configs name it."""
    env: str
    """The adapter class, ``module:Class``."""
    spec: str
    """The spec's name under ``envs/`` (without ``.yaml``)."""
    has_expert: bool = False
    """Whether the adapter's ``expert()`` gives a scripted expert for every task."""
    preload: tuple[str, ...] = ()
    """Modules the evaluation workers' forkserver imports once (the adapter's module is always
    among them)."""
    protocols: tuple[tuple[str, str], ...] = ()
    """(name, ``module:function``) of each evaluation protocol of the suite's own; the function
    takes (tasks, episodes, seed) and returns a :class:`~embodied.sim.base.FixedEpisodes`."""
    robomimic_type: int | None = None
    """robomimic's ``EnvType`` number for this suite (1 robosuite, 2 gym, 3 iGibson), where it has
    one: its files' ``env_args.type``."""
    action_size: int | None = None
    """The width of the actions its robot takes (the adapter's ``action_space``), which
    demonstration files of the suite must have; None where it depends on the task."""

    def env_class(self) -> type:
        module, _, attr = self.env.partition(":")
        return getattr(importlib.import_module(module), attr)

    def protocol(self, name: str) -> Callable[..., FixedEpisodes]:
        """The function of protocol ``name``, or one line naming the suite's protocols."""
        found = dict(self.protocols).get(name)
        if found is None:
            known = ", ".join(["embodied", *(n for n, _ in self.protocols)])
            raise UserError(
                f"suite {self.name!r} has no evaluation protocol {name!r}; its protocols: {known}"
            )
        module, _, attr = found.partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def worker_preload(self) -> tuple[str, ...]:
        return (self.env.partition(":")[0], *self.preload)


SUITES: dict[str, Suite] = {}
"""Registered suites by name, in registration order."""


def register_suite(suite: Suite) -> Suite:
    """Add a suite to the registry (its tasks' gymnasium ids: :func:`embodied.sim.gym_ids.register_gym_ids`);
    a name registered twice is a programming error."""
    if suite.name in SUITES:
        raise ValueError(f"suite {suite.name!r} is registered twice")
    SUITES[suite.name] = suite
    return suite


def get_suite(name: str) -> Suite:
    """The registered suite ``name``, or one line naming the suites there are."""
    try:
        return SUITES[name]
    except KeyError:
        raise UserError(f"unknown suite {name!r}; {did_you_mean(name, SUITES, 'suites')}") from None


def suite_of_env_type(env_type) -> str | None:
    """The suite a file's ``env_args.type`` names: embodied's files give the suite's name,
    robomimic's files its ``EnvType`` number; None for a number no suite here has, or a value
    that is neither (a bool, a list, none)."""
    if isinstance(env_type, str):
        return env_type
    if not isinstance(env_type, int) or isinstance(env_type, bool):
        return None
    return next((s.name for s in SUITES.values() if s.robomimic_type == env_type), None)


def action_size_of(suite: str | None) -> int | None:
    """The action width suite ``suite`` takes; None for a suite that is not registered or does
    not fix one."""
    found = SUITES.get(suite) if suite is not None else None
    return found.action_size if found is not None else None


def known_suites() -> list[str]:
    """Names of the registered suites."""
    return list(SUITES)


register_suite(
    Suite(
        name="metaworld",
        env="embodied.sim.metaworld:MetaWorldEnv",
        spec="metaworld",
        has_expert=True,
        protocols=(("metaworld", "embodied.sim.metaworld:protocol_episodes"),),
        action_size=4,  # end-effector xyz and gripper
    )
)
register_suite(
    Suite(
        name="robosuite",
        env="embodied.sim.robosuite:RobosuiteEnv",
        spec="robosuite",
        has_expert=True,
        robomimic_type=1,
        action_size=7,  # the Panda's OSC_POSE: end-effector xyz, axis-angle rotation, gripper
    )
)
