"""The dataset reader on hand-made tiny files: windows, padding, clips, pairing, statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodied import keys as K
from embodied.data.reader import DemoDataset
from embodied.data.schema import DemoFileWriter
from embodied.errors import UserError
from embodied.train.sampling import ShardedBatches, train_loader

H = 8  # image side


def write_file(path, task, lengths, offset=0.0, image=True, valid_fraction=0.0):
    """Demo d of length L: obs 'x' row t = [offset + 100 d + t], action row t = [(t % 10) / 10];
    image frame t is filled with value (10 d + t) % 256, so every read is checkable."""
    with DemoFileWriter(
        path, {"env_name": task, "type": "metaworld", "env_kwargs": {"cameras": ["cam"]}}, "metaworld"
    ) as w:
        for d, n in enumerate(lengths):
            t = np.arange(n, dtype=np.float32)
            obs = {"x": (offset + 100 * d + t)[:, None], "y": np.stack([t, -t], 1)}
            if image:
                obs["cam_image"] = np.broadcast_to(
                    ((10 * d + t) % 256).astype(np.uint8)[:, None, None, None], (n, H, H, 3)
                ).copy()
            arrays = {
                "actions": np.repeat(((t % 10) / 10)[:, None], 4, 1),  # Meta-World takes 4
                "rewards": np.zeros(n),
                "dones": np.zeros(n),
                "states": np.zeros((n, 3)),
            }
            w.add_demo(
                arrays, obs, {"task": task, "instruction": f"do {task}", "label": 0, "seed": d, "success": 1}
            )
        w.finish(valid_fraction, split_seed=0)
    return path


@pytest.fixture
def files(tmp_path):
    a = write_file(tmp_path / "a.hdf5", "task-a", [5, 3])
    b = write_file(tmp_path / "b.hdf5", "task-b", [4], offset=1000.0)
    return [a, b]


def test_windows_pad_history_at_start_and_mask_actions_past_end(files):
    ds = DemoDataset(files, split="all", obs_keys=["x"], obs_horizon=3, action_horizon=4)
    assert len(ds) == 5 + 3 + 4
    # episode 0 (length 5), t = 0: history repeats the first frame
    b = ds.__getitems__([0])
    assert b[K.OBS]["x"][0, :, 0].tolist() == [0, 0, 0]
    assert b[K.ACTIONS][0, :, 0].tolist() == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert b[K.ACTION_MASK][0].tolist() == [True] * 4
    # t = 3: history 1, 2, 3; actions 3, 4 then padding (last action repeated, masked)
    b = ds.__getitems__([3])
    assert b[K.OBS]["x"][0, :, 0].tolist() == [1, 2, 3]
    assert b[K.ACTIONS][0, :, 0].tolist() == pytest.approx([0.3, 0.4, 0.4, 0.4])
    assert b[K.ACTION_MASK][0].tolist() == [True, True, False, False]
    # the first sample of episode 1 (demo_1, x = 100 + t) never sees episode 0's frames
    b = ds.__getitems__([5])
    assert b[K.OBS]["x"][0, :, 0].tolist() == [100, 100, 100]
    # second file: offset and labels
    b = ds.__getitems__([8 + 3])
    assert b[K.OBS]["x"][0, :, 0].tolist() == [1001, 1002, 1003]
    assert b[K.ACTION_MASK][0].tolist() == [True, False, False, False]
    assert b[K.LABEL].tolist() == [1] and ds.classes == ["task-a", "task-b"]
    assert ds.instructions == ["do task-a", "do task-b"]


def test_batched_fetch_equals_single_fetch(files):
    ds = DemoDataset(files, split="all", obs_keys=["x", "y", "cam_image"], obs_horizon=2, action_horizon=3)
    idx = [0, 4, 7, 11]
    batch = ds.__getitems__(idx)
    for row, i in enumerate(idx):
        one = ds[i]
        for key in ("x", "y", "cam_image"):
            assert torch.equal(batch[K.OBS][key][row], one[K.OBS][key])
        assert torch.equal(batch[K.ACTIONS][row], one[K.ACTIONS])
    assert batch[K.OBS]["cam_image"].shape == (4, 2, 3, H, H)
    assert batch[K.OBS]["cam_image"].dtype == torch.uint8


@pytest.mark.parametrize("in_memory", [True, False])
def test_clips_stride_padding_and_no_frame_from_another_episode(files, in_memory):
    cache = 1 << 30 if in_memory else 0
    ds = DemoDataset(
        files,
        split="all",
        mode="clip",
        clip_len=3,
        clip_stride=2,
        camera="cam",
        training=False,
        image_cache_bytes=cache,
    )
    assert ds.images_in_memory == in_memory
    # episode 0 (length 5): span 5 fits exactly, frames 0, 2, 4
    clip = ds.clip(np.array([0]), np.array([0]))
    assert clip.shape == (1, 3, 3, H, H)
    assert clip[0, :, 0, 0, 0].tolist() == [0, 2, 4]
    # episode 1 (length 3, frame value 10 + t): span 5 does not fit: 10, 12, then the last frame repeated
    clip = ds.clip(np.array([1]), np.array([0]))
    assert clip[0, :, 0, 0, 0].tolist() == [10, 12, 12]
    # evaluation clips sit around t and stay inside the episode
    starts = ds.clip_starts(np.array([0, 0, 1]), np.array([0, 4, 2]))
    assert starts.tolist() == [0, 0, 0]
    # a whole episode's video, each frame once, from the right episode and file
    assert ds.episode_video(1)[:, 0, 0, 0].tolist() == [10, 11, 12]
    assert ds.episode_video(2).shape == (4, 3, H, H) and ds.episode_video(2)[:, 0, 0, 0].tolist() == [
        0,
        1,
        2,
        3,
    ]


def test_training_clips_are_random_and_stay_in_their_episode(files):
    ds = DemoDataset(files, split="all", mode="clip", clip_len=2, clip_stride=1, camera="cam", training=True)
    torch.manual_seed(0)
    seen = set()
    for _ in range(50):
        b = ds.__getitems__([0])  # episode 0, frames have values 0..4
        values = b[K.VIDEO][0, :, 0, 0, 0].tolist()
        assert values[1] == values[0] + 1 and 0 <= values[0] <= 3
        seen.add(values[0])
    assert len(seen) > 1


def test_paired_rows_come_from_the_same_episode(files):
    ds = DemoDataset(
        files,
        split="all",
        mode="paired",
        obs_keys=["x"],
        clip_len=2,
        clip_stride=1,
        camera="cam",
        training=False,
    )
    b = ds.__getitems__(list(range(len(ds))))
    ep = b[K.EPISODE].numpy()
    demo_of_obs = (b[K.OBS]["x"][:, -1, 0].numpy() % 1000) // 100  # demo index within its file
    demo_of_video = b[K.VIDEO][:, 0, 0, 0, 0].numpy() // 10
    assert (demo_of_obs == demo_of_video).all()
    assert ep.tolist() == [0] * 5 + [1] * 3 + [2] * 4


@pytest.mark.parametrize("cache", [4 << 30, 0])  # images in memory, and read from the file
def test_a_policy_on_the_observer_camera_pairs_frames_of_its_own_episode(files, cache):
    """The policy's image key is the clips' stream: read once, both sides show the step's episode."""
    ds = DemoDataset(
        files,
        split="all",
        mode="paired",
        obs_keys=["x", "cam_image"],
        clip_len=2,
        clip_stride=1,
        camera="cam",
        training=False,
        image_cache_bytes=cache,
    )
    b = ds.__getitems__(list(range(len(ds))))
    demo = (b[K.OBS]["x"][:, -1, 0].numpy() % 1000) // 100  # (N,) demo index within its file
    t = b[K.OBS]["x"][:, -1, 0].numpy() % 100  # (N,) the step
    frame = b[K.OBS]["cam_image"][:, -1, 0, 0, 0].numpy()  # (N,) value 10 d + t
    assert (frame == 10 * demo + t).all()
    assert (b[K.VIDEO][:, 0, 0, 0, 0].numpy() // 10 == demo).all()


def test_max_demos_keeps_the_first_demos_of_each_file_and_their_statistics(tmp_path):
    a = write_file(tmp_path / "a.hdf5", "task-a", [5, 3, 4, 6])
    b = write_file(tmp_path / "b.hdf5", "task-b", [2, 6, 3, 7], offset=1000.0)
    full = DemoDataset([a, b], split="train", obs_keys=["x"])  # 3 train demos per file
    ds = DemoDataset([a, b], split="train", obs_keys=["x"], max_demos=2)
    first_two = [e for f in (0, 1) for e in [e for e in full.episodes if e.file == f][:2]]
    assert [(e.file, e.demo) for e in ds.episodes] == [(e.file, e.demo) for e in first_two]
    x = np.concatenate([full.low_dim["x"][e.start : e.start + e.length] for e in first_two])
    assert ds.stats["x"]["mean"] == pytest.approx(x.mean(0))  # of these demos, not the file's stored ones
    assert full.stats["x"]["mean"] != pytest.approx(x.mean(0))
    assert len(DemoDataset([a, b], split="train", obs_keys=["x"], max_demos=10).episodes) == 6
    with pytest.raises(UserError, match="max_demos"):
        DemoDataset([a], max_demos=-1)


def test_statistics_merge_exactly_over_files(files):
    ds = DemoDataset(files, split="all", obs_keys=["x"])
    x = np.concatenate([np.arange(5), 100 + np.arange(3), 1000 + np.arange(4)]).astype(np.float64)
    stats = ds.normalization_stats()
    assert stats["x"]["mean"][0] == pytest.approx(x.mean())
    assert stats["x"]["std"][0] == pytest.approx(x.std())
    assert set(stats) == {"x", K.ACTIONS}


def test_splits_and_loader_order_is_reproducible(tmp_path):
    path = write_file(tmp_path / "c.hdf5", "task-c", [6] * 10, valid_fraction=0.2)
    train = DemoDataset(path, split="train", obs_keys=["x"])
    valid = DemoDataset(path, split="valid", obs_keys=["x"])
    assert len(train.episodes) == 8 and len(valid.episodes) == 2
    assert not {e.demo for e in train.episodes} & {e.demo for e in valid.episodes}

    def first_batches(seed: int) -> list:
        # the training loader: whole batches in the seeded, resumable order of ShardedBatches
        loader = iter(train_loader(train, ShardedBatches(len(train), 4, seed), num_workers=0))
        return [next(loader)[K.OBS]["x"][:, 0, 0].tolist() for _ in range(len(train) // 4)]

    assert first_batches(3) == first_batches(3) and first_batches(3) != first_batches(4)


def test_missing_stream_and_bad_paths_are_user_errors(files, tmp_path):
    with pytest.raises(UserError, match="no obs/other_image"):
        DemoDataset(files, split="all", mode="clip", camera="other")
    with pytest.raises(UserError, match="no such file"):
        DemoDataset(tmp_path / "missing.hdf5")
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(UserError, match="not a readable HDF5"):
        DemoDataset(bad)
