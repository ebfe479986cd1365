"""robomimic's own ``SequenceDataset`` reads a collected file unchanged and gives the same arrays.

Needs ``pip install --no-deps robomimic==0.3.0 termcolor`` (robomimic.utils.dataset imports
torch, h5py, numpy, tqdm and termcolor, nothing heavier: no torchvision, no egl_probe);
skipped when robomimic is not importable.

Our files store no ``next_obs`` (optional in the format), so the dataset is built with
``load_next_obs=False``; everything else is robomimic's default, SWMR reading included.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

pytest.importorskip("robomimic")
SequenceDataset = pytest.importorskip("robomimic.utils.dataset").SequenceDataset
ObsUtils = pytest.importorskip("robomimic.utils.obs_utils")

LOW_DIM = ["robot_state", "object_state", "goal"]
RGB = ["corner_image"]
DATASET_KEYS = ("actions", "rewards", "dones")


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
    ObsUtils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": LOW_DIM, "rgb": RGB}})
    ds = SequenceDataset(
        hdf5_path=str(demo_file),
        obs_keys=LOW_DIM + RGB,
        dataset_keys=DATASET_KEYS,
        frame_stack=1,
        seq_length=seq_length,
        hdf5_cache_mode=cache,
        filter_by_attribute=split,
        load_next_obs=False,
    )
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
