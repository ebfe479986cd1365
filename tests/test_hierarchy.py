"""The task hierarchy: classes and instructions in the suite spec, in the files (format_version
2), in the reader and the DataSpec; older (format_version 1) files and ``embodied-data upgrade``."""

from __future__ import annotations

import argparse
import json

import h5py
import numpy as np
import pytest
import torch

from embodied import keys as K
from embodied.cli.data import collect_config, main
from embodied.data import inspect
from embodied.data import reader as reader_mod
from embodied.data.reader import DemoDataset
from embodied.data.schema import FORMAT_VERSION, DemoFileWriter, task_attrs
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.mirror.loss import positive_mask
from embodied.sim import load_suite

LOOKALIKE_CLASSES = {
    "drawer": ["drawer-close-v3", "drawer-open-v3"],
    "faucet": ["faucet-open-v3", "faucet-close-v3"],
    "handle": ["handle-press-side-v3", "handle-press-v3", "handle-pull-side-v3", "handle-pull-v3"],
    "window": ["window-open-v3", "window-close-v3"],
}
FILES = {"drawer-open-v3": 2, "drawer-close-v3": 2, "window-open-v3": 1}  # task -> demos


def write_task(path, task: str, demos: int, version: int = FORMAT_VERSION):
    """A tiny file of ``task`` as ``collect`` writes it (``version`` 1: as it wrote it before the
    hierarchy, ``label`` the task's position and no ``class`` or ``instruction_id``)."""
    spec = load_suite("metaworld").task(task)
    if version >= 2:
        attrs = task_attrs(spec)
    else:
        attrs = {"task": task, "instruction": spec.instruction, "label": spec.instruction_id}
    env_args = {"env_name": task, "type": "metaworld", "env_kwargs": {"cameras": ["corner"]}}
    with DemoFileWriter(path, env_args, "metaworld") as w:
        for d in range(demos):
            n = 4 + d
            t = np.arange(n, dtype=np.float32)
            obs = {
                "x": t[:, None],
                "corner_image": np.full((n, 8, 8, 3), d, np.uint8),
            }
            arrays = {
                "actions": np.zeros((n, 4), np.float32),
                "rewards": np.zeros(n),
                "dones": np.zeros(n),
                "states": np.zeros((n, 3)),
            }
            w.add_demo(arrays, obs, {**attrs, "seed": d, "success": 1})
        w.finish(0.0, split_seed=0)
    if version != FORMAT_VERSION:
        with h5py.File(path, "r+") as f:
            f["data"].attrs["format_version"] = version
    return path


@pytest.fixture
def v2_dir(tmp_path):
    for task, demos in FILES.items():
        write_task(tmp_path / f"{task}.hdf5", task, demos)
    return tmp_path


@pytest.fixture
def v1_dir(tmp_path):
    for task, demos in FILES.items():
        write_task(tmp_path / f"{task}.hdf5", task, demos, version=1)
    return tmp_path


def _one_per_episode(ds: DemoDataset) -> dict:
    return ds.__getitems__(list(ds.ep_start))  # the first sample of each episode


# -- the suite spec ---------------------------------------------------------------------------------
def test_every_mt50_task_has_a_class_and_ids_follow_the_file():
    suite = load_suite("metaworld")
    tasks = suite.resolve_tasks("mt50")
    assert len(tasks) == 50 and suite.version >= 2
    seen: list[str] = []
    for i, name in enumerate(tasks):
        t = suite.task(name)
        assert t.class_name and t.instruction_id == i  # instruction id: the position (v1's label)
        if t.class_name not in seen:
            seen.append(t.class_name)
        assert t.class_id == seen.index(t.class_name) == t.label  # label: the class id
    assert list(suite.classes) == seen and len(seen) < 50
    assert suite.class_tasks("button") == [t for t in tasks if t.startswith("button-press")]
    assert suite.task("reach-v3").class_name == suite.task("reach-wall-v3").class_name


def test_lookalike_set_resolves_to_four_classes_of_two_to_four_instructions():
    suite = load_suite("metaworld")
    tasks = suite.resolve_tasks("lookalike")
    assert len(tasks) == 10
    by_class: dict[str, list[str]] = {}
    for task in tasks:
        by_class.setdefault(suite.task(task).class_name, []).append(task)
    assert {c: sorted(ts) for c, ts in by_class.items()} == {
        c: sorted(ts) for c, ts in LOOKALIKE_CLASSES.items()
    }
    for cls, members in by_class.items():
        assert suite.class_tasks(cls) == sorted(members, key=list(suite.tasks).index)  # the whole class
        assert len({suite.task(t).instruction for t in members}) == len(members)


def test_lookalike_recipe_loads():
    cfg = collect_config(argparse.Namespace(recipe="lookalike"))
    assert cfg.valid_fraction == pytest.approx(0.2) and cfg.episodes == 40
    assert cfg.out.endswith("lookalike")
    assert load_suite(cfg.suite).resolve_tasks(cfg.tasks) == load_suite("metaworld").resolve_tasks(
        "lookalike"
    )


# -- collected files (format_version 2) -------------------------------------------------------------
def test_collect_writes_the_hierarchy(demo_dir, demo_tasks):
    suite = load_suite("metaworld")
    for task in demo_tasks:
        spec = suite.task(task)
        with h5py.File(demo_dir / f"{task}.hdf5", "r") as f:
            assert f["data"].attrs["format_version"] == FORMAT_VERSION == 2
            for name in f["data"]:
                a = f["data"][name].attrs
                assert (a["task"], a["class"], a["instruction"]) == (task, spec.class_name, spec.instruction)
                assert (a["label"], a["instruction_id"]) == (spec.class_id, spec.instruction_id)
    assert inspect.validate([str(demo_dir)]) == []


# -- the reader and the DataSpec --------------------------------------------------------------------
def test_two_instructions_of_one_class_share_a_label_and_differ_in_instruction(v2_dir):
    ds = DemoDataset(v2_dir, split="all", obs_keys=["x"])  # files in name order: drawer-close first
    assert ds.classes == ["drawer", "window"]
    assert ds.instructions == ["close the drawer", "open the drawer", "slide the window open"]
    b = _one_per_episode(ds)
    assert b[K.LABEL].tolist() == [0, 0, 0, 0, 1]
    assert b[K.INSTRUCTION].tolist() == [0, 0, 1, 1, 2]
    spec = ds.data_spec()
    assert spec.num_classes == 2 and spec.num_instructions == 3
    assert spec.tasks == ["drawer-close-v3", "drawer-open-v3", "window-open-v3"]
    assert spec.task_labels == [0, 0, 1] and spec.task_instructions == [0, 1, 2]
    assert spec.task_names == spec.tasks and spec.task_label("drawer-open-v3") == 0
    assert DataSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


def test_positive_masks_differ_at_the_three_levels(v2_dir):
    ds = DemoDataset(v2_dir, split="all", obs_keys=["x"])
    b = _one_per_episode(ds)
    ids = (b[K.EPISODE], b[K.INSTRUCTION], b[K.LABEL])
    episode, instruction, klass = (
        positive_mask(level, *ids) for level in ("episode", "instruction", "class")
    )
    assert torch.equal(episode, torch.eye(5, dtype=torch.bool))
    assert instruction.sum() == 5 + 2 + 2 and klass.sum() == 16 + 1
    # nested and all different: episode < instruction < class
    assert (episode <= instruction).all() and (instruction <= klass).all()
    assert not torch.equal(episode, instruction) and not torch.equal(instruction, klass)


def test_a_models_vocabulary_indexes_the_data(v2_dir):
    train = DemoDataset(v2_dir, split="all", obs_keys=["x"])
    spec = train.data_spec()
    only = DemoDataset(
        v2_dir / "window-open-v3.hdf5",
        obs_keys=["x"],
        split="all",
        classes=spec.classes,
        instructions=spec.instructions,
    )
    assert only.classes == spec.classes and _one_per_episode(only)[K.LABEL].tolist() == [1]
    assert _one_per_episode(only)[K.INSTRUCTION].tolist() == [2]
    # a model trained before the hierarchy (its classes are tasks) still reads upgraded data
    old = DemoDataset(v2_dir, split="all", obs_keys=["x"], classes=spec.tasks, instructions=spec.instructions)
    assert _one_per_episode(old)[K.LABEL].tolist() == [0, 0, 1, 1, 2]
    with pytest.raises(UserError, match="class 'drawer' of the data is not among the model's"):
        DemoDataset(v2_dir, split="all", obs_keys=["x"], classes=["window"])


def test_a_spec_saved_before_the_hierarchy_loads_and_names_its_tasks():
    raw = DataSpec(classes=["reach-v3", "push-v3"], instructions=["reach", "push"]).to_json()
    for key in ("tasks", "task_labels", "task_instructions"):
        raw.pop(key)
    spec = DataSpec.from_json(raw)
    assert spec.tasks == [] and spec.task_names == ["reach-v3", "push-v3"]
    assert spec.task_label("push-v3") == 1


def test_rollouts_and_eval_take_tasks_from_the_task_list(v2_dir):
    from embodied.eval.checkpoint import checkpoint_suite, select_tasks
    from embodied.eval.rollout import instruction_ids

    spec = DemoDataset(v2_dir, split="all", obs_keys=["x"]).data_spec()
    assert instruction_ids(spec, "metaworld", ["window-open-v3", "drawer-open-v3"]) == {
        "window-open-v3": 2,
        "drawer-open-v3": 1,
    }
    with pytest.raises(UserError, match="door-open-v3 is not among them"):
        instruction_ids(spec, "metaworld", ["door-open-v3"])
    assert select_tasks(None, "metaworld", spec, None) == spec.tasks
    assert select_tasks(["drawer-open-v3"], "metaworld", spec, None) == ["drawer-open-v3"]
    with pytest.raises(UserError, match="not on door-open-v3, window-close-v3"):
        select_tasks(["door-open-v3", "window-close-v3"], "metaworld", spec, None)
    config = argparse.Namespace(data=argparse.Namespace(paths=[str(v2_dir / "nope")]))
    assert checkpoint_suite(config, spec) == "metaworld"  # from the task names, not the classes
    # an old spec (classes were tasks): the old rules
    old = DataSpec(classes=spec.tasks, instructions=spec.instructions)
    assert instruction_ids(old, "metaworld", ["drawer-open-v3"]) == {"drawer-open-v3": 1}
    assert select_tasks(None, "metaworld", old, None) == spec.tasks


# -- format_version 1 and upgrade -------------------------------------------------------------------
def test_v1_files_read_with_class_equal_to_task_and_a_note(v1_dir, monkeypatch, capsys):
    monkeypatch.setattr(reader_mod, "_NOTED_V1", False)
    ds = DemoDataset(v1_dir, split="all", obs_keys=["x"])
    assert ds.classes == ds.tasks == ["drawer-close-v3", "drawer-open-v3", "window-open-v3"]
    b = _one_per_episode(ds)
    assert b[K.LABEL].tolist() == b[K.INSTRUCTION].tolist() == [0, 0, 1, 1, 2]
    err = capsys.readouterr().err
    assert err.count("format_version 1") == 1 and "embodied-data upgrade" in err
    DemoDataset(v1_dir, split="all", obs_keys=["x"])
    assert "format_version 1" not in capsys.readouterr().err  # once
    assert inspect.validate([str(v1_dir)]) == []  # v1 needs no class or instruction_id
    text = inspect.info([str(v1_dir)])
    assert "format_version 1" in text and "no class attribute" in text and "3 class(es)" in text


def test_upgrade_turns_v1_into_v2_and_the_reader_gives_the_hierarchy(v1_dir, capsys):
    before = DemoDataset(v1_dir, split="all", obs_keys=["x", "corner_image"])
    batch_before = _one_per_episode(before)
    before.close()
    assert main(["upgrade", str(v1_dir)]) == 0
    out = capsys.readouterr().out
    assert out.count("upgraded to format_version 2") == 3 and "class drawer" in out
    assert sorted(p.name for p in v1_dir.iterdir()) == sorted(f"{t}.hdf5" for t in FILES)  # no leftovers
    suite = load_suite("metaworld")
    with h5py.File(v1_dir / "drawer-open-v3.hdf5", "r") as f:
        assert f["data"].attrs["format_version"] == 2
        a = f["data/demo_1"].attrs
        assert (a["class"], a["label"], a["instruction_id"]) == (
            "drawer",
            suite.task("drawer-open-v3").class_id,
            19,
        )
    assert inspect.validate([str(v1_dir)]) == []
    after = DemoDataset(v1_dir, split="all", obs_keys=["x", "corner_image"])
    assert after.classes == ["drawer", "window"]
    b = _one_per_episode(after)
    assert b[K.LABEL].tolist() == [0, 0, 0, 0, 1] and b[K.INSTRUCTION].tolist() == [0, 0, 1, 1, 2]
    for key in (K.ACTIONS, K.EPISODE):
        assert torch.equal(b[key], batch_before[key])  # the data itself is untouched
    assert torch.equal(b[K.OBS]["corner_image"], batch_before[K.OBS]["corner_image"])
    # a second upgrade changes nothing
    assert main(["upgrade", str(v1_dir / "window-open-v3.hdf5")]) == 0
    assert "already format_version 2, unchanged" in capsys.readouterr().out


def test_upgrade_refuses_tasks_the_suite_does_not_know(v1_dir, capsys):
    with h5py.File(v1_dir / "window-open-v3.hdf5", "r+") as f:
        f["data/demo_0"].attrs["task"] = "juggle-v3"
    stamps = {p.name: p.stat().st_mtime_ns for p in v1_dir.iterdir()}
    assert main(["upgrade", str(v1_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "juggle-v3" in err and "window-open-v3.hdf5: demo_0" in err
    assert "Traceback" not in err
    assert {p.name: p.stat().st_mtime_ns for p in v1_dir.iterdir()} == stamps  # no file changed


def test_collect_refuses_to_skip_a_v1_file(demo_dir, demo_tasks, collect_config, tmp_path):
    import shutil

    from embodied.data.collect import collect

    for task in demo_tasks:
        shutil.copyfile(demo_dir / f"{task}.hdf5", tmp_path / f"{task}.hdf5")
    with h5py.File(tmp_path / f"{demo_tasks[0]}.hdf5", "r+") as f:
        f["data"].attrs["format_version"] = 1
    with pytest.raises(UserError, match="format_version 1.*embodied-data upgrade"):
        collect(collect_config(tmp_path))
