"""Suite specs: the declarative description of a suite's tasks, kept as YAML under ``envs/``.

A spec gives every task a class (the object or scene family it works on, ``drawer``), a
natural-language instruction (``open the drawer``) and a default horizon, and names task sets
(``mt10``, ``quick``, ``lookalike``, ...). Ids, as demonstration files store them: a task's
``instruction_id`` is its position in the file; its class id (the files' ``label``) is the
position of its class in the order the classes first appear in the file.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from embodied.errors import UserError, did_you_mean
from embodied.paths import resource_dir
from embodied.sim.registry import get_suite


@dataclass(frozen=True)
class TaskSpec:
    name: str
    """Task id inside its suite, e.g. ``drawer-open-v3``."""
    class_name: str
    """The object or scene family the task works on, e.g. ``drawer``."""
    class_id: int
    """Position of the class in the order classes first appear in the spec (stable)."""
    instruction_id: int
    """The task's position in the suite spec (stable, never reordered; format_version 1's label)."""
    instruction: str
    """What the robot does, in words: ``open the drawer``."""
    horizon: int
    """Default episode length for rollouts, in environment steps."""

    @property
    def label(self) -> int:
        """The class label demonstration files store (``label``): the class id."""
        return self.class_id


@dataclass(frozen=True)
class SuiteSpec:
    suite: str
    version: int
    cameras: tuple[str, ...]
    observer_camera: str
    tasks: dict[str, TaskSpec]
    task_sets: dict[str, tuple[str, ...]]
    classes: tuple[str, ...] = ()
    """Class names in class-id order."""

    def class_tasks(self, name: str) -> list[str]:
        """The tasks of class ``name``, in spec order."""
        return [t.name for t in self.tasks.values() if t.class_name == name]

    def task(self, name: str) -> TaskSpec:
        try:
            return self.tasks[name]
        except KeyError:
            listing = f"known tasks: {', '.join(self.tasks)}; task sets: {', '.join(self.task_sets)}"
            hint = did_you_mean(name, [*self.tasks, *self.task_sets], otherwise=listing)
            raise UserError(f"unknown {self.suite} task {name!r}; {hint}") from None

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
                raise UserError(
                    f"unknown {self.suite} camera {cam!r}; {did_you_mean(cam, self.cameras, 'cameras')}"
                )
        return cameras


@functools.cache
def load_suite(suite: str) -> SuiteSpec:
    """The spec of the registered suite ``suite`` (:mod:`embodied.sim.registry`)."""
    path = resource_dir("envs") / f"{get_suite(suite).spec}.yaml"
    raw = yaml.safe_load(path.read_text())
    classes: list[str] = []
    tasks = {}
    for i, (name, t) in enumerate(raw["tasks"].items()):
        cls = str(t.get("class", name))  # a spec without classes: every task its own class
        if cls not in classes:
            classes.append(cls)
        tasks[name] = TaskSpec(
            name=name,
            class_name=cls,
            class_id=classes.index(cls),
            instruction_id=i,
            instruction=str(t["instruction"]),
            horizon=int(t["horizon"]),
        )
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
        classes=tuple(classes),
    )
