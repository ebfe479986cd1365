"""robomimic's own ``SequenceDataset`` reads a collected file unchanged and gives the same arrays.

Needs ``pip install --no-deps robomimic==0.3.0 termcolor`` (robomimic.utils.dataset imports
torch, h5py, numpy, tqdm and termcolor, nothing heavier: no torchvision, no egl_probe);
skipped when robomimic is not importable.

Our files store no ``next_obs`` (optional in the format), so the dataset is built with
``load_next_obs=False``; everything else is robomimic's default, SWMR reading included.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

pytest.importorskip("robomimic")
SequenceDataset = pytest.importorskip("robomimic.utils.dataset").SequenceDataset
ObsUtils = pytest.importorskip("robomimic.utils.obs_utils")

LOW_DIM = ["robot_state", "object_state", "goal"]
RGB = ["corner_image"]
DATASET_KEYS = ("actions", "rewards", "dones")


def robomimic_dataset(path, seq_length: int = 1, cache=None, split=None, next_obs: bool = False):
    """robomimic's SequenceDataset over ``path`` with this module's keys, as its training builds it."""
    ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": LOW_DIM, "rgb": RGB}})
    return SequenceDataset(
        hdf5_path=str(path),
        obs_keys=LOW_DIM + RGB,
        dataset_keys=DATASET_KEYS,
        frame_stack=1,
        seq_length=seq_length,
        hdf5_cache_mode=cache,
        filter_by_attribute=split,
        load_next_obs=next_obs,
    )


def _load(path, split) -> dict[str, dict[str, np.ndarray]]:
    """Our own reading of the file: the demos robomimic should use, in its order, and their arrays."""
    with h5py.File(path, "r") as f:
        demos = sorted(f["data"], key=lambda d: int(d[5:]))
        if split is not None:
            demos = [d.decode() for d in f[f"mask/{split}"][()]]
        return {
            d: {k: f[f"data/{d}/{k}"][()] for k in [*DATASET_KEYS, *(f"obs/{o}" for o in LOW_DIM + RGB)]}
            for d in demos
        }


def _expected(demos: dict, index: int, seq_length: int) -> tuple[str, dict[str, np.ndarray]]:
    """Sequence ``index``: demo by demo, one sequence per step, the last step repeated past the
    end of a demo (robomimic's pad_seq_length)."""
    for demo, arrays in demos.items():
        n = len(arrays["actions"])
        if index < n:
            steps = np.minimum(np.arange(index, index + seq_length), n - 1)
            return demo, {k: v[steps] for k, v in arrays.items()}
        index -= n
    raise IndexError(index)


@pytest.mark.parametrize(
    ("seq_length", "cache", "split"),
    [(1, None, None), (10, None, "train"), (10, "low_dim", None), (10, "all", "valid")],
)
def test_sequence_dataset_reads_collected_file(demo_file, seq_length, cache, split):
    demos = _load(demo_file, split)  # read and closed first: HDF5 refuses a second, SWMR open
    ds = robomimic_dataset(demo_file, seq_length=seq_length, cache=cache, split=split)
    lengths = [len(a["actions"]) for a in demos.values()]
    assert ds.demos == list(demos) and len(ds) == sum(lengths)
    indices = sorted({0, 1, lengths[0] - 5, lengths[0] - 1, len(ds) // 2, len(ds) - 1})
    for index in indices:
        demo, want = _expected(demos, index, seq_length)
        item = ds[index]
        assert set(item["obs"]) == set(LOW_DIM + RGB)
        for key in LOW_DIM + RGB:
            got = np.asarray(item["obs"][key])
            assert got.shape == want[f"obs/{key}"].shape, (index, key)
            np.testing.assert_array_equal(got, want[f"obs/{key}"], err_msg=f"{demo} {index} {key}")
        assert item["obs"]["corner_image"].dtype == np.uint8
        assert item["actions"].shape == (seq_length, 4)
        for key in DATASET_KEYS:
            np.testing.assert_array_equal(
                np.asarray(item[key], dtype=np.float64),
                want[key].astype(np.float64),
                err_msg=f"{demo} {index} {key}",
            )
    ds.close_and_delete_hdf5_handle()


def test_next_obs_for_offline_rl(collect_config, tmp_path):
    """collect --next-obs writes next_obs (obs shifted by one step, the final observation last),
    which robomimic's SequenceDataset reads with load_next_obs=True, as its offline-RL
    algorithms ask; a file made before the setting existed still counts as complete."""
    import dataclasses

    from embodied.data.collect import collect_task, file_is_complete, task_args
    from embodied.data.inspect import validate

    cfg = dataclasses.replace(collect_config(tmp_path), tasks=["reach-v3"], episodes=1, next_obs=True)
    path = tmp_path / "reach-v3.hdf5"
    collect_task(cfg, "reach-v3", path)
    assert validate([str(path)]) == []
    with h5py.File(path, "r") as f:
        obs = {k: f[f"data/demo_0/obs/{k}"][()] for k in LOW_DIM + RGB}
        nxt = {k: f[f"data/demo_0/next_obs/{k}"][()] for k in LOW_DIM + RGB}
    for key in LOW_DIM + RGB:
        np.testing.assert_array_equal(nxt[key][:-1], obs[key][1:], err_msg=key)
        assert not np.array_equal(nxt[key][-1], obs[key][-1]) or key == "goal"
    ds = robomimic_dataset(path, next_obs=True)
    item = ds[len(ds) - 1]
    for key in LOW_DIM + RGB:
        np.testing.assert_array_equal(np.asarray(item["next_obs"][key])[0], nxt[key][-1], err_msg=key)
    ds.close_and_delete_hdf5_handle()

    old = dataclasses.replace(cfg, next_obs=False)
    with h5py.File(path, "r+") as f:  # as written before the setting existed
        stored = json.loads(f["data"].attrs["collect_args"])
        del stored["next_obs"]
        stored["task"], stored["keep_failures"] = "reach-v3", False
        f["data"].attrs["collect_args"] = json.dumps(stored)
    assert file_is_complete(path, task_args(old, "reach-v3"))
    assert not file_is_complete(path, task_args(cfg, "reach-v3"))
