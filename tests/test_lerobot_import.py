"""embodied-data import --format lerobot: a LeRobotDataset v3.0 back into demonstration files. The
export of the shared dataset imported again gives its arrays (frames within the codec's error),
tasks, split and rate; a dataset of another's making (its own task texts, unnamed state
dimensions, actions outside [-1, 1], no valid split) imports and trains the mirror method."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def in_export_order(folder) -> list[tuple[str, h5py.Group]]:
    """(file stem, demo) in the order an export writes them: each file's train demos, then each
    file's valid demos (the names compared as numbers)."""
    order = lambda name: int(name.split("_")[1])  # noqa: E731
    train, valid = [], []
    for path in sorted(folder.glob("*.hdf5")):
        f = h5py.File(path, "r")
        masks = {s: sorted((v.decode() for v in f[f"mask/{s}"][()]), key=order) for s in ("train", "valid")}
        train += [(path.stem, f["data"][n]) for n in masks["train"]]
        valid += [(path.stem, f["data"][n]) for n in masks["valid"]]
    return train + valid


def test_export_then_import_gives_the_same_arrays(lerobot_export, demo_dir, tmp_path, capsys):
    from embodied.cli.data import main

    back = tmp_path / "back"
    assert main(["import", str(lerobot_export), "--format", "lerobot", "--out", str(back)]) == 0
    assert "overall: 2 file(s)" in capsys.readouterr().out
    assert main(["validate", str(back)]) == 0
    assert sorted(p.name for p in back.iterdir()) == sorted(p.name for p in demo_dir.glob("*.hdf5"))
    before, after = in_export_order(demo_dir), in_export_order(back)
    assert [(t, g.attrs["task"]) for t, g in before] == [(t, g.attrs["task"]) for t, g in after]
    for (task, a), (_, b) in zip(before, after, strict=True):
        for key in ("actions", "rewards", "dones", "obs/robot_state", "obs/object_state", "obs/goal"):
            np.testing.assert_array_equal(a[key][()].astype(np.float32), b[key][()], err_msg=f"{task} {key}")
        for attr in ("task", "class", "label", "instruction", "instruction_id", "success"):
            assert a.attrs[attr] == b.attrs[attr], (task, attr)
        frames, decoded = (
            a["obs/corner_image"][()].astype(np.int16),
            b["obs/corner_image"][()].astype(np.int16),
        )
        assert frames.shape == decoded.shape and np.abs(frames - decoded).mean() < 8.0  # H.264's error
    for stem in {t for t, _ in before}:
        with h5py.File(demo_dir / f"{stem}.hdf5") as a, h5py.File(back / f"{stem}.hdf5") as b:
            assert len(a["mask/valid"]) == len(b["mask/valid"])  # the export's split, kept
            assert b["data"].attrs["fps"] == 80 and b["data"].attrs["suite"] == a["data"].attrs["suite"]
            assert json.loads(b["data"].attrs["env_args"])["env_name"] == stem


def foreign(lerobot_export, root):
    """The export as another's dataset: its own task texts, state dimensions named x, y, z, grip,
    actions three times as large, no valid split."""
    shutil.copytree(lerobot_export, root)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["observation.state"]["names"] = ["x", "y", "z", "grip"]
    info["splits"] = {"train": f"0:{info['total_episodes']}"}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    tasks = pq.read_table(root / "meta" / "tasks.parquet")
    texts = [f"pick up thing {i}" for i in range(tasks.num_rows)]
    pq.write_table(
        pa.table({"task_index": tasks.column("task_index"), "task": texts}), root / "meta" / "tasks.parquet"
    )
    path = root / "data" / "chunk-000" / "file-000.parquet"
    data = pq.read_table(path)
    actions = np.asarray(data.column("action").to_pylist(), dtype=np.float32) * 3
    column = pa.FixedSizeListArray.from_arrays(pa.array(actions.ravel()), actions.shape[1])
    pq.write_table(data.set_column(data.column_names.index("action"), "action", column), path)
    return actions


def test_another_dataset_imports_and_trains_the_mirror_method(lerobot_export, tmp_path):
    from embodied.cli.train import main as train_main
    from embodied.data.lerobot_import import import_lerobot

    actions = foreign(lerobot_export, tmp_path / "theirs")
    files = import_lerobot(tmp_path / "theirs", tmp_path / "ours")
    assert [p.name for p in files] == ["pick_up_thing_0.hdf5", "pick_up_thing_1.hdf5"]
    with h5py.File(files[0]) as f:
        g = f["data/demo_0"]
        assert (
            g.attrs["task"] == g.attrs["instruction"] == "pick up thing 0"
            and f["data"].attrs["suite"] == "lerobot"
        )
        assert sorted(g["obs"]) == ["corner_image", "goal", "object_state", "state"]  # x, y, z, grip: one key
        low, high = (np.array(json.loads(f["data"].attrs[k])) for k in ("action_min", "action_max"))
        np.testing.assert_allclose(low, actions.min(0), rtol=1e-6)
        scaled = g["actions"][()]
        np.testing.assert_allclose(scaled, 2 * (actions[: len(scaled)] - low) / (high - low) - 1, atol=1e-6)
        assert len(f["mask/valid"]) >= 1  # split as collect splits
    out = tmp_path / "joint"
    argv = ["joint_quick", "--out", str(out), f"data.paths=[{tmp_path / 'ours'}]", "policy.obs_keys=null"]
    assert train_main([*argv, "steps=2", "val_every=2", "ckpt_every=2", "data.batch_size=4"]) == 0
    assert (out / "checkpoints" / "last.pt").is_file()


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda root: (root / "meta" / "info.json").unlink(),
            "no meta/info.json; not a LeRobot dataset folder",
        ),
        (lambda root: _version(root, "v2.1"), "only v3.0 is read"),
        (
            lambda root: next((root / "videos").rglob("*.mp4")).unlink(),
            "missing (the video of observation.images",
        ),
    ],
)
def test_what_cannot_be_imported_is_one_line(lerobot_export, tmp_path, capsys, damage, message):
    from embodied.cli.data import main

    root = tmp_path / "theirs"
    shutil.copytree(lerobot_export, root)
    damage(root)
    assert main(["import", str(root), "--format", "lerobot", "--out", str(tmp_path / "ours")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "ours").exists() and not (tmp_path / "ours.part").exists()


def _version(root, version: str) -> None:
    info = json.loads((root / "meta" / "info.json").read_text())
    (root / "meta" / "info.json").write_text(json.dumps({**info, "codebase_version": version}))
