"""The demonstration files and the tools that look inside them: info, validate, replay, video;
the schema round trip, determinism, rerun skipping and atomic writes of ``collect``."""

from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest
from hdf5_contents import hdf5_arrays, hdf5_attrs
from PIL import Image

from embodied.cli.data import main
from embodied.data import inspect
from embodied.data.collect import collect, task_args
from embodied.data.schema import FORMAT_VERSION, DemoFileWriter
from embodied.errors import UserError
from embodied.sim import load_suite


def _listing(folder) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


# -- info / validate ------------------------------------------------------------------------------
def test_info_mentions_keys_shapes_and_totals(demo_dir, demo_tasks):
    text = inspect.info([str(demo_dir)])
    for task in demo_tasks:
        assert f"{task}.hdf5" in text and f"{task} (label" in text
    assert "obs/corner_image" in text and "(T, 32, 32, 3) uint8" in text
    assert "obs/robot_state" in text and "(T, 4) float32" in text
    assert "actions" in text and "success 100% (2/2)" in text
    assert "train 1, valid 1" in text and f"format_version {FORMAT_VERSION}" in text
    assert "overall: 2 file(s), 4 demos" in text and "2 class(es)" in text
    assert "classes: reach (2 demos)" in text and "demos per class: drawer 2, reach 2" in text


def test_info_cli_prints_summary(demo_file, capsys):
    assert main(["info", str(demo_file)]) == 0
    out = capsys.readouterr().out
    assert "reach the goal position" in out and "episode length" in out


def test_validate_fresh_files_are_clean(demo_dir, capsys):
    assert inspect.validate([str(demo_dir)]) == []
    assert main(["validate", str(demo_dir)]) == 0
    assert capsys.readouterr().out.strip() == "valid"


# -- replay ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("demo", ["demo_0", "demo_1"])
def test_replay_reproduces_states_and_success(demo_file, demo):
    result = inspect.replay_demo(demo_file, demo)
    with h5py.File(demo_file, "r") as f:
        assert result.steps == f[f"data/{demo}/actions"].shape[0]
    assert result.max_divergence < 1e-6 and result.mean_divergence < 1e-6
    assert result.first_divergent_step is None and result.max_obs_error < 1e-6
    assert result.stored_success and result.replayed_success and result.reproduced
    assert "-> reproduced" in str(result)


def test_replay_notices_a_wrong_seed(demo_copy):
    """The task variant (reach-v3's goal) lives in the model, not in the state: only the seed
    brings it back, and the observations show when it does not."""
    with h5py.File(demo_copy, "r+") as f:
        f["data/demo_0"].attrs["seed"] = 7
    result = inspect.replay_demo(demo_copy, "demo_0")
    assert result.max_obs_error > 1e-3 and not result.reproduced


def test_replay_notices_changed_actions(demo_copy):
    with h5py.File(demo_copy, "r+") as f:
        actions = f["data/demo_0/actions"]
        actions[5:, :3] = 0.0  # the arm stops half-way
    result = inspect.replay_demo(demo_copy, "demo_0")
    assert result.max_divergence > 1e-3 and result.first_divergent_step is not None
    assert not result.reproduced


# -- video ----------------------------------------------------------------------------------------
def _read_video(path) -> np.ndarray:
    import imageio.v2 as imageio

    with imageio.get_reader(path, format="FFMPEG" if str(path).endswith(".mp4") else "GIF") as reader:
        return np.stack([np.asarray(frame)[..., :3] for frame in reader])


def test_video_mp4_has_every_frame_at_stream_size(demo_file, tmp_path):
    out = tmp_path / "clips" / "demo1.mp4"
    msg = inspect.export_video(str(demo_file), "demo_1", str(out), fps=10, raw=True)
    with h5py.File(demo_file, "r") as f:
        stored = f["data/demo_1/obs/corner_image"][()]
    frames = _read_video(out)
    assert frames.shape == stored.shape, msg
    assert np.abs(frames.astype(float) - stored).mean() < 20  # lossy, but the same pictures
    assert sorted(p.name for p in out.parent.iterdir()) == ["demo1.mp4"]  # no temporary left


def test_video_gif_and_camera_name_forms(demo_file, tmp_path):
    out = tmp_path / "demo0.gif"
    inspect.export_video(str(demo_file), "demo_0", str(out), camera="corner_image", raw=True)
    with h5py.File(demo_file, "r") as f:
        stored = f["data/demo_0/obs/corner_image"]
        n, size = stored.shape[0], stored.shape[1:]
    frames = _read_video(out)
    assert frames.shape[1:] == size and 1 <= len(frames) <= n  # Pillow merges identical frames
    with Image.open(out) as gif:
        total_ms = 0
        for i in range(gif.n_frames):
            gif.seek(i)
            total_ms += gif.info["duration"]
    assert abs(total_ms - n * 1000 / 20) <= n  # the default 20 fps, to GIF's 10 ms steps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo0.gif"]


def test_video_pads_odd_sizes_for_mp4(demo_copy, tmp_path):
    with h5py.File(demo_copy, "r+") as f:
        img = f["data/demo_0/obs/corner_image"][()]
        del f["data/demo_0/obs/corner_image"]
        f["data/demo_0/obs/corner_image"] = img[:, :31, :29]
    out = tmp_path / "odd.mp4"
    inspect.export_video(str(demo_copy), "demo_0", str(out), raw=True)
    assert _read_video(out).shape == (len(img), 32, 30, 3)


def test_video_is_captioned_as_rollout_videos_and_renders_the_states_again(demo_file, tmp_path):
    from embodied.video import frame_shape

    with h5py.File(demo_file, "r") as f:
        n = len(f["data/demo_0/obs/corner_image"])
    out = tmp_path / "demo0.mp4"
    inspect.export_video(str(demo_file), "demo_0", str(out))  # stored 32 px, enlarged, captioned
    frames = _read_video(out)
    assert frames.shape == (n, *frame_shape(32, 32, 1), 3)
    big = tmp_path / "demo0_128.mp4"
    msg = inspect.export_video(str(demo_file), "demo_0", str(big), size=128)
    frames = _read_video(big)
    assert frames.shape == (n, *frame_shape(128, 128, 1), 3) and "rendered again" in msg
    assert frames[:, 40:].std() > 10  # a scene, not a blank: the caption strip is the first 30 rows
    with pytest.raises(UserError, match="--raw or --size"):
        inspect.export_video(str(demo_file), "demo_0", str(big), size=128, raw=True)


# -- the file format --------------------------------------------------------------------------------
def test_schema_round_trip(demo_dir, collect_config, demo_tasks):
    cfg = collect_config(demo_dir)
    suite = load_suite("metaworld")
    for task in demo_tasks:
        with h5py.File(demo_dir / f"{task}.hdf5", "r") as f:
            data = f["data"]
            env_args = json.loads(data.attrs["env_args"])
            assert env_args["env_name"] == task and env_args["type"] == "metaworld"
            assert (
                env_args["env_kwargs"]["cameras"] == ["corner"] and env_args["env_kwargs"]["image_size"] == 32
            )
            assert data.attrs["format_version"] == FORMAT_VERSION and data.attrs["suite"] == "metaworld"
            assert json.loads(data.attrs["collect_args"]) == json.loads(json.dumps(task_args(cfg, task)))
            names = sorted(data, key=lambda n: int(n.split("_")[1]))
            assert names == [f"demo_{i}" for i in range(cfg.episodes)]
            lengths = {}
            for i, name in enumerate(names):
                g = data[name]
                n = g["actions"].shape[0]
                lengths[name] = n
                assert g.attrs["num_samples"] == n > 0
                assert g.attrs["task"] == task and g.attrs["label"] == suite.task(task).label
                assert g.attrs["instruction"] == suite.task(task).instruction
                assert g.attrs["seed"] == i and g.attrs["success"] == 1
                assert g["actions"].dtype == np.float32 and g["actions"].shape == (n, 4)
                assert np.abs(g["actions"][()]).max() <= 1.0
                assert g["rewards"].shape == (n,) and g["dones"].shape == (n,)
                assert g["dones"][-1] == 1 and not g["dones"][:-1].any()
                assert g["states"].dtype == np.float64 and g["states"].ndim == 2 and len(g["states"]) == n
                assert g["obs/corner_image"].dtype == np.uint8 and g["obs/corner_image"].shape == (
                    n,
                    32,
                    32,
                    3,
                )
                for key in ("robot_state", "object_state", "goal"):
                    assert g[f"obs/{key}"].dtype == np.float32 and g[f"obs/{key}"].shape[0] == n
            assert data.attrs["total"] == sum(lengths.values())
            train = [s.decode() for s in f["mask/train"][()]]
            valid = [s.decode() for s in f["mask/valid"][()]]
            assert sorted(train + valid) == sorted(names) and not set(train) & set(valid) and valid
            for key in ("actions", "robot_state", "object_state", "goal"):
                st = f[f"stats/{key}"].attrs
                rows = np.concatenate(
                    [data[n]["actions" if key == "actions" else f"obs/{key}"][()] for n in train]
                )
                assert st["count"] == len(rows)
                np.testing.assert_allclose(st["mean"], rows.mean(0), atol=1e-6)
                np.testing.assert_allclose(st["std"], rows.std(0), atol=1e-6)
            assert "corner_image" not in f["stats"]


def test_collect_cli_is_deterministic(demo_dir, demo_tasks, collect_argv, tmp_path, capsys):
    """The ``collect`` command (worker processes) writes exactly what the in-process fixture wrote."""
    task = demo_tasks[0]
    assert main(collect_argv(tmp_path, tasks=[task])) == 0
    assert f"{task}: 2 demos" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{task}.hdf5"]
    ours, theirs = hdf5_arrays(tmp_path / f"{task}.hdf5"), hdf5_arrays(demo_dir / f"{task}.hdf5")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key].dtype == theirs[key].dtype and np.array_equal(ours[key], theirs[key]), key
    assert hdf5_attrs(tmp_path / f"{task}.hdf5") == hdf5_attrs(demo_dir / f"{task}.hdf5")


def test_rerun_skips_complete_files_and_refuses_changed_settings(
    demo_dir, demo_tasks, collect_argv, collect_config, capsys
):
    before = _listing(demo_dir)
    assert main(collect_argv(demo_dir)) == 0
    out = capsys.readouterr().out
    assert all(f"{task}: complete, skipped" in out for task in demo_tasks)
    assert all(s.get("skipped") for s in collect(collect_config(demo_dir)))

    argv = collect_argv(demo_dir)
    argv[argv.index("--episodes") + 1] = "3"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "--overwrite" in err[0]
    assert _listing(demo_dir) == before


# -- atomic writes --------------------------------------------------------------------------------
def test_interrupted_writer_leaves_nothing(tmp_path):
    target = tmp_path / "x.hdf5"
    arrays = {
        "actions": np.zeros((3, 4)),
        "rewards": np.zeros(3),
        "dones": np.zeros(3),
        "states": np.zeros((3, 5)),
    }
    with (
        pytest.raises(RuntimeError, match="stop"),
        DemoFileWriter(target, {"env_name": "x"}, "metaworld") as w,
    ):
        w.add_demo(arrays, {"robot_state": np.zeros((3, 4))}, {"task": "x"})
        assert (tmp_path / "x.hdf5.part").exists()
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_collection_leaves_nothing(tmp_path, demo_tasks, collect_config, monkeypatch):
    import embodied.data.collect as collect_mod

    real, calls = collect_mod.collect_episode, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(collect_mod, "collect_episode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        collect_mod.collect_task(collect_config(tmp_path), demo_tasks[0], tmp_path / "t.hdf5")
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_user_errors_name_file_and_demo(demo_file, tmp_path):
    with pytest.raises(UserError, match=r"reach-v3\.hdf5: no demo 'demo_7'.*demo_0, demo_1"):
        inspect.replay(str(demo_file), "demo_7")
    with pytest.raises(UserError, match=r"demo_0/obs: no stream top_image; stored: corner"):
        inspect.export_video(str(demo_file), "demo_0", str(tmp_path / "a.mp4"), camera="top")
    with pytest.raises(UserError, match=r"unknown video type \.avi"):
        inspect.export_video(str(demo_file), "demo_0", str(tmp_path / "a.avi"))
    with pytest.raises(UserError, match="no such file"):
        inspect.info([str(tmp_path / "missing.hdf5")])
    assert os.listdir(tmp_path) == []


def test_every_collect_setting_has_a_flag():
    import argparse
    import dataclasses

    from embodied.cli.data import _collect_parser
    from embodied.data.collect import CollectConfig

    sub = argparse.ArgumentParser().add_subparsers()
    _collect_parser(sub)
    flags = {a.dest for a in sub.choices["collect"]._actions}
    assert {f.name for f in dataclasses.fields(CollectConfig)} <= flags
