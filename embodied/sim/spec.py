"""Suite specs: the declarative description of a suite's tasks, kept as YAML under ``envs/``.

A spec gives every task a class label (its position in the file), a natural-language
instruction and a default horizon, and names task sets (``mt10``, ``quick``, ...).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from embodied.errors import UserError
from embodied.paths import resource_dir


@dataclass(frozen=True)
class TaskSpec:
    name: str
    """Task id inside its suite, e.g. ``drawer-open-v3``."""
    label: int
    """Class label: the task's position in the suite spec (stable, never reordered)."""
    instruction: str
    """What the robot does, in words: ``open the drawer``."""
    horizon: int
    """Default episode length for rollouts, in environment steps."""


@dataclass(frozen=True)
class SuiteSpec:
    suite: str
    version: int
    cameras: tuple[str, ...]
    observer_camera: str
    tasks: dict[str, TaskSpec]
    task_sets: dict[str, tuple[str, ...]]

    def task(self, name: str) -> TaskSpec:
        try:
            return self.tasks[name]
        except KeyError:
            raise UserError(
                f"unknown {self.suite} task {name!r}; known tasks: {', '.join(self.tasks)}"
                f"; task sets: {', '.join(self.task_sets)}"
            ) from None

    def resolve_tasks(self, names: str | Iterable[str]) -> list[str]:
        """Expand task names and set names (``mt10``) into an ordered list without repeats."""
        if isinstance(names, str):
            names = [n for n in names.replace(",", " ").split() if n]
        out: list[str] = []
        for name in names:
            expanded = self.task_sets.get(name, (name,))
            for task in expanded:
                self.task(task)  # raises on an unknown name
                if task not in out:
                    out.append(task)
        if not out:
            raise UserError(f"no {self.suite} task given")
        return out

    def check_cameras(self, cameras: Iterable[str]) -> tuple[str, ...]:
        cameras = tuple(cameras)
        for cam in cameras:
            if cam not in self.cameras:
                raise UserError(f"unknown {self.suite} camera {cam!r}; cameras: {', '.join(self.cameras)}")
        return cameras


def known_suites() -> list[str]:
    return sorted(p.stem for p in resource_dir("envs").glob("*.yaml"))


@functools.cache
def load_suite(suite: str) -> SuiteSpec:
    path = resource_dir("envs") / f"{suite}.yaml"
    if not path.is_file():
        raise UserError(f"unknown suite {suite!r}; suites: {', '.join(known_suites())}")
    raw = yaml.safe_load(path.read_text())
    tasks = {
        name: TaskSpec(name=name, label=i, instruction=str(t["instruction"]), horizon=int(t["horizon"]))
        for i, (name, t) in enumerate(raw["tasks"].items())
    }
    sets = {}
    for name, members in raw.get("task_sets", {}).items():
        sets[name] = tuple(tasks) if members == "all" else tuple(members)
    return SuiteSpec(
        suite=raw["suite"],
        version=int(raw["version"]),
        cameras=tuple(raw["cameras"]),
        observer_camera=raw["observer_camera"],
        tasks=tasks,
        task_sets=sets,
    )
