"""Checks against the simulator and the machine, before any work: actions as wide as the
suite's robot takes; every size a user can set within its documented range; a run that the
machine's memory cannot hold refused in one line."""

from __future__ import annotations

import dataclasses
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


# -- item 3: every size within its range, and what the machine can hold ---------------------------
def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["collect", "--tasks", "reach-v3", "--image-size", "100000"], "image_size must be in [8, 1024]"),
        (["video", "{file}", "--demo", "demo_0", "--out", "{out}/v.mp4", "--size", "100000"], "--size"),
        (["video", "{file}", "--demo", "demo_0", "--out", "{out}/v.mp4", "--fps", "100000"], "--fps"),
    ],
    ids=["collect-image-size", "video-size", "video-fps"],
)
def test_data_sizes_past_their_range_are_one_line(argv, want, demo_file, tmp_path, capsys):
    argv = [a.format(file=demo_file, out=tmp_path) for a in argv] + ["--out", str(tmp_path / "o")] * (
        argv[0] == "collect"
    )
    assert data_main(argv) == 2
    assert want in one_line(capsys)
    assert not list(tmp_path.iterdir())  # refused before any work


@pytest.mark.parametrize("flag", [["--video-size", "100000"], ["--fps", "5000"]])
def test_eval_video_sizes_past_their_range_are_one_line(flag, tmp_path, capsys):
    from embodied.cli.eval import main as eval_main

    # refused before the checkpoint is even looked for
    assert eval_main([str(tmp_path / "no-such-run"), *flag]) == 2
    line = one_line(capsys)
    assert flag[0] in line and "must be in" in line


@pytest.mark.parametrize(
    ("override", "want"),
    [
        ("recognizer.input_size=100000", "input_size (0: the data's size) must be in [8, 1024]"),
        ("data.clip_len=100000", "clip_len must be in [1, 256]"),
        ("recognizer.depth=12", "depth must be in [1, 8]"),
        ("data.batch_size=1000000", "batch_size must be in [1, 65536]"),
    ],
)
def test_training_sizes_past_their_range_are_one_line(override, want, demo_dir, tmp_path, capsys):
    from embodied.cli.train import main as train_main

    out = tmp_path / "run"
    assert train_main(["recognizer_quick", "--out", str(out), f"data.paths=[{demo_dir}]", override]) == 2
    assert want in one_line(capsys)
    assert not out.exists()


def test_the_memory_estimate_counts_the_models_and_refuses_what_the_machine_cannot_hold(
    demo_dir, tmp_path, capsys, monkeypatch
):
    from embodied.cli.train import main as train_main
    from embodied.config import load_config
    from embodied.paths import resolve_resource
    from embodied.train import memory
    from embodied.train.config import TrainConfig
    from embodied.train.setup import build_datasets

    paths = f"data.paths=[{demo_dir}]"
    cfg = load_config(TrainConfig, resolve_resource("joint_quick", "configs"), [paths, "data.batch_size=4"])
    cfg, sources = cfg.objective.resolve(cfg)
    train_ds, valid_ds = build_datasets(cfg, None)
    spec, stats = train_ds.data_spec(), train_ds.normalization_stats()
    est = memory.estimate(cfg, spec, stats, sources, (train_ds, valid_ds))
    models, _ = cfg.objective.build_models(cfg, spec, stats, sources)
    assert est.parameters == sum(p.numel() for m in models.values() for p in m.parameters())
    assert est.activation_bytes is not None and est.activation_bytes > 0
    assert est.data_bytes == train_ds.memory_bytes() + valid_ds.memory_bytes() > 0
    twice = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, batch_size=8))
    bigger = memory.estimate(twice, spec, stats, sources, ())
    assert 1.8 < bigger.activation_bytes / est.activation_bytes < 2.2  # activations scale with the batch

    out = tmp_path / "run"
    monkeypatch.setattr(memory, "available_memory", lambda: est.model_bytes // 2)
    assert train_main(["joint_quick", "--out", str(out), paths, "data.batch_size=4", "steps=1"]) == 2
    line = one_line(capsys)
    assert (
        line.startswith("error: this run needs about") and "available here" in line and "parameters" in line
    )
    assert not (out / "checkpoints").exists()
