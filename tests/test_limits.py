"""Checks against the simulator and the machine, before any work: actions as wide as the
suite's robot takes; every size a user can set within its documented range; a run that the
machine's memory cannot hold refused in one line."""

from __future__ import annotations

from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from embodied.cli.data import main as data_main
from embodied.data import inspect
from embodied.data.reader import DemoDataset
from embodied.data.spec import DataSpec
from embodied.errors import UserError


def widen_actions(path, width: int = 7) -> None:
    """Every demo's actions as ``width`` columns (the first ones kept, zeros after)."""
    with h5py.File(path, "r+") as f:
        for name in f["data"]:
            g = f["data"][name]
            old = g["actions"][()]
            new = np.zeros((len(old), width), np.float32)
            new[:, : min(width, old.shape[1])] = old[:, :width]
            del g["actions"]
            g.create_dataset("actions", data=new)


# -- item 2: actions the suite's robot takes ------------------------------------------------------
def test_actions_of_another_width_are_refused_by_validate_training_and_replay(demo_copy, capsys):
    widen_actions(demo_copy)
    problems = inspect.validate([demo_copy])
    want = "demo_0/actions: width 7, but the metaworld suite's robot takes actions of width 4"
    assert any(want in p for p in problems), problems
    with pytest.raises(UserError, match=want):
        DemoDataset(demo_copy, split="all")
    assert data_main(["replay", str(demo_copy), "--demo", "demo_0"]) == 2
    err = capsys.readouterr().err.strip()
    assert want in err and "\n" not in err and "Traceback" not in err


def test_eval_refuses_a_policy_whose_actions_the_robot_cannot_take(demo_file):
    from embodied.eval.checkpoint import checkpoint_target
    from embodied.eval.settings import EvalSettings

    config = SimpleNamespace(data=SimpleNamespace(paths=[str(demo_file)], camera=None))
    spec = DataSpec(action_dim=7, tasks=["reach-v3"], classes=["reach"], instructions=["reach"])
    loaded = (None, {"policy": object()}, spec, config)
    with pytest.raises(UserError, match="gives actions of width 7, but the metaworld suite's robot takes 4"):
        checkpoint_target(loaded, EvalSettings(episodes=1))
