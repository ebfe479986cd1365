"""embodied-data export --format lerobot: a LeRobotDataset v3.0 read back with pyarrow (and the
video with ffmpeg) and checked against the HDF5 it came from, frame by frame."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def hdf5_demos(demo_dir):
    """Every demo in the export's order: each file's train demos, then each file's valid demos."""
    train, valid = [], []
    for path in sorted(demo_dir.glob("*.hdf5")):
        with h5py.File(path, "r") as f:
            masks = {s: {v.decode() for v in f[f"mask/{s}"][()]} for s in ("train", "valid")}
            names = sorted(f["data"], key=lambda n: int(n.split("_")[1]))
            for name in names:
                g = f["data"][name]
                demo = {
                    "actions": g["actions"][()],
                    "rewards": g["rewards"][()],
                    "robot_state": g["obs/robot_state"][()],
                    "env": np.concatenate([g["obs/goal"][()], g["obs/object_state"][()]], 1),
                    "frames": g["obs/corner_image"][()].astype(np.int16),
                    "instruction": g.attrs["instruction"],
                }
                (valid if name in masks["valid"] else train).append(demo)
    return train, valid


def test_layout_and_info_follow_lerobot(lerobot_export, demo_dir):
    info = json.loads((lerobot_export / "meta" / "info.json").read_text())
    train, valid = hdf5_demos(demo_dir)
    n = sum(len(d["actions"]) for d in train + valid)
    assert info["codebase_version"] == "v3.0" and info["fps"] == 80
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (
        len(train) + len(valid),
        n,
        2,
    )
    assert info["splits"] == {"train": f"0:{len(train)}", "valid": f"{len(train)}:{len(train) + len(valid)}"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    features = info["features"]
    assert features["observation.state"]["shape"] == [4]
    assert features["observation.environment_state"]["names"][:3] == ["goal.0", "goal.1", "goal.2"]
    video = features["observation.images.corner"]
    assert video["dtype"] == "video" and video["shape"] == [32, 32, 3]
    assert video["info"]["video.fps"] == 80 and video["info"]["video.codec"] == "h264"
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index", "action"):
        assert key in features
    stats = json.loads((lerobot_export / "meta" / "stats.json").read_text())
    actions = np.concatenate([d["actions"] for d in train + valid])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["min"], actions.min(0), rtol=1e-6)
    assert stats["action"]["count"] == [n]
    assert np.asarray(stats["observation.images.corner"]["mean"]).shape == (3, 1, 1)
    assert not lerobot_export.with_name("lerobot.part").exists()


def test_frames_actions_and_tasks_match_the_hdf5(lerobot_export, demo_dir):
    import imageio.v3 as iio

    train, valid = hdf5_demos(demo_dir)
    demos = train + valid
    data = pq.read_table(lerobot_export / "data" / "chunk-000" / "file-000.parquet")
    episodes = pq.read_table(
        lerobot_export / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    ).to_pylist()
    tasks = pq.read_table(lerobot_export / "meta" / "tasks.parquet").to_pylist()
    task_of = {t["task_index"]: t["task"] for t in tasks}
    video = iio.imread(lerobot_export / "videos" / "observation.images.corner" / "chunk-000" / "file-000.mp4")
    assert len(video) == data.num_rows == sum(len(d["actions"]) for d in demos)

    action = np.asarray(data["action"].to_pylist(), dtype=np.float32)
    state = np.asarray(data["observation.state"].to_pylist(), dtype=np.float32)
    env = np.asarray(data["observation.environment_state"].to_pylist(), dtype=np.float32)
    for e, (demo, meta) in enumerate(zip(demos, episodes, strict=True)):
        lo, hi = meta["dataset_from_index"], meta["dataset_to_index"]
        assert (meta["episode_index"], meta["length"], hi - lo) == (
            e,
            len(demo["actions"]),
            len(demo["actions"]),
        )
        np.testing.assert_array_equal(action[lo:hi], demo["actions"])
        np.testing.assert_array_equal(state[lo:hi], demo["robot_state"])
        np.testing.assert_array_equal(env[lo:hi], demo["env"])
        np.testing.assert_allclose(data["next.reward"].to_numpy()[lo:hi], demo["rewards"], rtol=1e-6)
        assert data["episode_index"].to_numpy()[lo:hi].tolist() == [e] * (hi - lo)
        assert data["frame_index"].to_numpy()[lo:hi].tolist() == list(range(hi - lo))
        assert data["index"].to_numpy()[lo:hi].tolist() == list(range(lo, hi))
        np.testing.assert_allclose(data["timestamp"].to_numpy()[lo:hi], np.arange(hi - lo) / 80, atol=1e-6)
        assert {task_of[i] for i in data["task_index"].to_numpy()[lo:hi]} == {demo["instruction"]}
        assert meta["tasks"] == [demo["instruction"]]
        # The video's frames of this episode, found through its timestamps as LeRobot finds them.
        key = "videos/observation.images.corner"
        first = round(meta[f"{key}/from_timestamp"] * 80)
        assert round(meta[f"{key}/to_timestamp"] * 80) - first == hi - lo
        decoded = video[first : first + hi - lo].astype(np.int16)
        error = np.abs(decoded - demo["frames"]).mean()
        # H.264 in yuv420p is lossy (about 5 grey levels on average here, most of it the colour
        # conversion); frames of another episode are off by far more.
        assert error < 8.0, (e, error)
        if e > 0:  # the episode starts on its own first frame, not on the last one of the episode before
            assert (
                np.abs(decoded[0] - demo["frames"][0]).mean()
                < np.abs(decoded[0] - demos[e - 1]["frames"][-1]).mean()
            )


def test_tasks_parquet_reads_as_lerobot_reads_it(lerobot_export, demo_dir):
    """LeRobot reads meta/tasks.parquet with pandas and looks tasks up by the index."""
    pd = pytest.importorskip("pandas")

    tasks = pd.read_parquet(lerobot_export / "meta" / "tasks.parquet")
    train, _ = hdf5_demos(demo_dir)
    assert tasks.loc[train[0]["instruction"]]["task_index"] == 0
    assert list(tasks.columns) == ["task_index"]


def test_refusals(demo_copy, tmp_path, capsys):
    from embodied.cli.data import main

    out = tmp_path / "out"
    out.mkdir()
    assert main(["export", str(demo_copy), "--format", "lerobot", "--out", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    with h5py.File(demo_copy, "r+") as f:  # a file validate refuses, the export refuses
        f["data/demo_0/actions"][0, 0] = np.nan
    fresh = tmp_path / "fresh"
    assert main(["export", str(demo_copy), "--format", "lerobot", "--out", str(fresh)]) == 2
    err = capsys.readouterr().err
    assert "demo_0/actions" in err and "Traceback" not in err
    assert not fresh.exists() and not fresh.with_name("fresh.part").exists()
