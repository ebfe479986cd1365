"""What an HDF5 file holds, as plain Python, for tests that compare two files."""

from __future__ import annotations

import h5py
import numpy as np


def hdf5_arrays(path) -> dict[str, np.ndarray]:
    """``{dataset path: its array}`` of every dataset of the file."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return out


def hdf5_attrs(path) -> dict[str, dict]:
    """``{group or dataset path: its attributes as lists}`` of the file."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, {k: np.asarray(v).tolist() for k, v in obj.attrs.items()})
        )
    return out
