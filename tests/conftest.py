"""Shared fixtures: one tiny, real demonstration dataset collected once per test session.

Two short Meta-World tasks, two scripted demos each, the observer camera at 32 px, collected
in this process with :func:`embodied.data.collect.collect_task` (the same function the
``collect`` workers run), so the whole session pays for it once: a few seconds.
Tests must not change these files; copy one first (``demo_copy``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DEMO_TASKS = ("reach-v3", "drawer-close-v3")  # two of the shortest expert episodes (about 50-80 steps)
DEMO_SETTINGS = {"episodes": 2, "cameras": ["corner"], "image_size": 32, "seed": 0, "workers": 1}


@pytest.fixture(scope="session")
def demo_tasks() -> tuple[str, ...]:
    """The tasks of the shared dataset, one file each."""
    return DEMO_TASKS


@pytest.fixture(scope="session")
def collect_config():
    """A function ``out -> CollectConfig`` with the settings the shared dataset was made with."""
    from embodied.data.collect import CollectConfig

    return lambda out: CollectConfig(tasks=list(DEMO_TASKS), out=str(out), **DEMO_SETTINGS)


@pytest.fixture(scope="session")
def collect_argv():
    """A function ``(out, tasks) -> argv`` for ``embodied-data`` with the shared dataset's settings."""

    def argv(out, tasks=DEMO_TASKS) -> list[str]:
        s = DEMO_SETTINGS
        return [
            "collect",
            "--tasks",
            *tasks,
            "--episodes",
            str(s["episodes"]),
            "--cameras",
            *s["cameras"],
            "--image-size",
            str(s["image_size"]),
            "--seed",
            str(s["seed"]),
            "--workers",
            str(s["workers"]),
            "--out",
            str(out),
        ]

    return argv


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory, collect_config) -> Path:
    """A folder with ``<task>.hdf5`` for each of :data:`DEMO_TASKS` (read only)."""
    from embodied.data.collect import collect_task

    out = tmp_path_factory.mktemp("demos")
    cfg = collect_config(out)
    for task in DEMO_TASKS:
        collect_task(cfg, task, out / f"{task}.hdf5")
    return out


@pytest.fixture(scope="session")
def demo_file(demo_dir) -> Path:
    """One collected file (``reach-v3.hdf5``, demos demo_0 and demo_1; read only)."""
    return demo_dir / f"{DEMO_TASKS[0]}.hdf5"


@pytest.fixture(scope="session")
def lerobot_export(demo_dir, tmp_path_factory) -> Path:
    """The shared dataset exported as a LeRobotDataset v3.0 (``embodied-data export --format
    lerobot``; read only: copy it before changing it). Skips where pyarrow is missing."""
    pytest.importorskip("pyarrow")
    from embodied.cli.data import main

    out = tmp_path_factory.mktemp("export") / "lerobot"
    assert main(["export", str(demo_dir), "--format", "lerobot", "--out", str(out)]) == 0
    return out


@pytest.fixture
def demo_copy(demo_file, tmp_path) -> Path:
    """A private copy of :func:`demo_file` that a test may edit."""
    dst = tmp_path / "copy.hdf5"
    shutil.copyfile(demo_file, dst)
    return dst


@pytest.fixture
def one_thread():
    """The machine is shared: one intra-op thread is faster than two fighting over busy cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_run(demo_dir, tmp_path_factory):
    """A function ``(config, *overrides) -> run folder``: ``embodied-train CONFIG`` for 2 steps
    of tiny models on the shared dataset (one checkpoint, one validation)."""
    from embodied.cli.train import main as train_main

    def run(config: str, *overrides: str) -> Path:
        out = tmp_path_factory.mktemp(config)
        common = [
            f"data.paths=[{demo_dir}]",
            "steps=2",
            "val_every=2",
            "ckpt_every=2",
            "log_every=1",
            "data.batch_size=4",
            "optim.warmup_steps=0",
        ]
        assert train_main([config, "--out", str(out), "--overwrite", *common, *overrides]) == 0
        return out

    return run
