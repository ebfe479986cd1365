"""Which episodes an evaluation runs: embodied's protocol, or a suite's own.

- ``embodied`` (the default): episode i of each task resets with seed ``seed_start + i``, a
  fresh variant (object and goal positions) for every episode, drawn from seeds that no
  demonstration used, and each task's default horizon (or the one given). Any number of
  episodes; the same seeds for every method make results paired.
- A suite's own protocol (the registry's ``protocols``), e.g. ``metaworld``: the suite fixes
  each episode's variant and the step limit as its published numbers were measured, so a
  result can be set beside them. Meta-World's: per task the 50 goals its benchmark draws for a
  seed, one episode per goal, 500 steps, success at any step
  (:func:`embodied.sim.metaworld.protocol_episodes`). ``episodes`` takes the first of them
  (LeRobot's convention, 10 per task, is ``episodes=10``).

Success is counted alike under both: an episode succeeds if the task's success signal is seen
at any step (the episode ends there).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from embodied.errors import UserError

if TYPE_CHECKING:
    from embodied.sim.base import FixedEpisodes

# embodied.sim (gymnasium, mujoco) is imported where a suite's protocol is drawn: the settings
# (embodied-eval --help) read EMBODIED from here.

EMBODIED = "embodied"
"""The default protocol's name."""


@dataclass(frozen=True)
class EpisodeSchedule:
    """What a protocol fixes for one evaluation."""

    horizon: int | None
    """Step limit of every episode; None: each task's default."""
    variants: dict[str, list[tuple[float, ...]]] | None
    """task -> the variant of each episode (``reset(options={"variant": v})``); None: the seeds draw them."""
    info: dict
    """The protocol as ``results.json`` records it: name, seed(s), horizon and where goals come from."""


def schedule(
    name: str,
    *,
    suite: str,
    tasks: Sequence[str],
    episodes: int,
    seed_start: int,
    horizon: int | None,
    seed: int | None = None,
) -> EpisodeSchedule:
    """The episodes of protocol ``name`` (module doc); ``seed``: the suite protocol's seed
    (None: its default). A ``horizon`` other than the one a suite's protocol fixes is refused."""
    if name == EMBODIED:
        if seed is not None:
            raise UserError(
                "a protocol seed only applies to a suite's own protocol; embodied's uses seed_start"
            )
        info = {"name": EMBODIED, "seed_start": seed_start, "horizon": horizon}
        return EpisodeSchedule(horizon=horizon, variants=None, info=info)
    fixed = _fixed_episodes(name, suite, tuple(tasks), episodes, seed)
    if horizon is not None and horizon != fixed.horizon:
        raise UserError(
            f"protocol {name} runs {fixed.horizon} steps per episode; horizon {horizon} contradicts it"
        )
    info = {"name": fixed.name, "seed": fixed.seed, "horizon": fixed.horizon, "goals": fixed.source}
    return EpisodeSchedule(horizon=fixed.horizon, variants=fixed.variants, info=info)


@functools.lru_cache(maxsize=4)
def _fixed_episodes(
    name: str, suite: str, tasks: tuple[str, ...], episodes: int, seed: int | None
) -> FixedEpisodes:
    # Drawing Meta-World's goals builds its environments (~17 s for MT10): once per process, so
    # that a caller can check the protocol before its long work and evaluate_policy reuse it.
    from embodied.sim import get_suite

    make = get_suite(suite).protocol(name)
    return make(list(tasks), episodes) if seed is None else make(list(tasks), episodes, seed)


def describe(info: dict, episodes: int | None = None) -> str:
    """One line for a report: which protocol ran, with its seeds and horizon (``episodes``:
    per task, for the range of embodied's seeds)."""
    if info.get("name", EMBODIED) == EMBODIED:
        first = info["seed_start"]
        seeds = f"seeds {first}..{first + episodes - 1}" if episodes else f"seeds from {first}"
        return f"protocol embodied (held-out {seeds}, horizon {info['horizon'] or 'task default'})"
    return f"protocol {info['name']} ({info['goals']}, one episode per goal, horizon {info['horizon']})"


__all__ = ["EMBODIED", "EpisodeSchedule", "describe", "schedule"]
