"""Opening a demonstration file and reading its parts, every failure one line naming the file
(and the demo and key) that a user can act on: what :mod:`.inspect`, :mod:`.validate`,
:mod:`.upgrade` and :mod:`.replay` share."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from embodied.data.recipe import VALID_FRACTION
from embodied.data.schema import READ_ERRORS, demo_sort_key, read_failure, split_masks
from embodied.errors import UserError, one_line

DAMAGE = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError)
"""What h5py raises on a file damaged inside (unreadable metadata, broken links)."""


@contextmanager
def reading(path: Path):
    """Turn h5py's errors while reading ``path`` into one-line UserErrors."""
    try:
        yield
    except DAMAGE as err:
        raise UserError(
            f"{path}: damaged or not a demonstration file ({one_line(err)}); "
            "run 'embodied-data validate' on it"
        ) from None


def open_file(path: str | os.PathLike) -> h5py.File:
    """Open a demonstration file for reading; any failure is a one-line UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise UserError(f"{path}: not a readable HDF5 file ({one_line(err)})") from None


def text_of(value) -> str | None:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return None


def is_int(value) -> bool:
    return isinstance(value, int | np.integer | np.bool_)  # bool is an int too


def demo_names(data: h5py.Group) -> list[str]:
    return sorted((k for k in data if isinstance(data.get(k), h5py.Group)), key=demo_sort_key)


def mask_names(f: h5py.File, split: str) -> list[str]:
    raw = np.asarray(f[f"mask/{split}"][()]).reshape(-1)
    return [text_of(v) if text_of(v) is not None else str(v) for v in raw]


def split_names(f: h5py.File, split: str) -> list[str]:
    """The demos of ``split`` (``train`` or ``valid``): the file's ``/mask/<split>``, or, in a file
    without ``/mask`` (robomimic's files before its ``split_train_val.py``), a split made here as
    collect makes one (:data:`VALID_FRACTION` valid, seed 0), the same at every read."""
    if "mask" in f:
        return mask_names(f, split)
    return split_masks(demo_names(f["data"]), VALID_FRACTION, seed=0)[split]


def env_args_of(f: h5py.File, where: str) -> dict:
    raw = f["data"].attrs.get("env_args") if "data" in f else None
    text = text_of(raw)
    if text is None:
        raise UserError(f"{where}: /data: attribute env_args is missing")
    try:
        env_args = json.loads(text)
    except ValueError as err:
        raise UserError(f"{where}: /data: attribute env_args is not JSON ({err})") from None
    if not isinstance(env_args, dict):
        raise UserError(f"{where}: /data: attribute env_args is not a JSON object")
    return env_args


@dataclass(frozen=True)
class FileEnv:
    """The environment a demonstration file was recorded in, from its ``env_args`` in either of
    the forms files come in: embodied's (``type`` the suite's name, ``env_kwargs`` make_env's
    keywords: ``cameras``, ``image_size``, ``horizon``, ``mesh_detail``) or robomimic's (``type`` its EnvType
    number, robosuite 1; ``env_kwargs`` robosuite.make's: ``camera_names``, ``camera_heights``,
    ``horizon``). A field the file does not give is None (or no cameras)."""

    suite: str | None
    task: str | None
    cameras: tuple[str, ...]
    image_size: int | None
    horizon: int | None
    mesh_detail: str = "full"
    """How its cameras drew meshes (:mod:`embodied.sim.meshes`); ``full`` where the file does
    not say (files made before the setting, robomimic's)."""

    def require(self, where: str, why: str) -> tuple[str, str]:
        """(suite, task), or one line saying that ``env_args`` lacks them for ``why``."""
        if self.suite is None or self.task is None:
            raise UserError(f"{where}: /data: env_args names no known suite and task ({why})")
        return self.suite, self.task


def file_env(f: h5py.File, where: str) -> FileEnv:
    """The recorded environment of an open file (one line when ``env_args`` is missing or not
    JSON). The suite is the ``suite`` attribute where the file has one, else what
    ``env_args.type`` names."""
    from embodied.sim.registry import suite_of_env_type

    env_args = env_args_of(f, where)
    kwargs = env_args.get("env_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    suite = text_of(f["data"].attrs.get("suite")) or suite_of_env_type(env_args.get("type"))
    task = env_args.get("env_name")
    cameras = kwargs.get("cameras", kwargs.get("camera_names")) or ()
    size = kwargs.get("image_size", kwargs.get("camera_heights"))
    size = size[0] if isinstance(size, list) and size else size
    horizon = kwargs.get("horizon")
    detail = kwargs.get("mesh_detail", "full")
    return FileEnv(
        suite=suite,
        task=task if isinstance(task, str) and task else None,
        cameras=(cameras,) if isinstance(cameras, str) else tuple(str(c) for c in cameras),
        image_size=int(size) if is_int(size) else None,
        horizon=int(horizon) if is_int(horizon) else None,
        mesh_detail=detail if isinstance(detail, str) else "full",
    )


def file_suite_of(f: h5py.File) -> str | None:
    """The suite an open demonstration file records; None where it names none (or its
    ``env_args`` is missing or not JSON, which validate reports on its own)."""
    try:
        return file_env(f, str(f.filename)).suite
    except UserError:
        return None


def file_suite(path: str | os.PathLike) -> str | None:
    """The suite a demonstration file records (its ``suite`` attribute, else what
    ``env_args.type`` names); None for a file that names none or cannot be read."""
    try:
        with h5py.File(path, "r") as f:
            return file_suite_of(f)
    except DAMAGE:
        return None


def env_name_of(f: h5py.File) -> str | None:
    """The ``env_args.env_name`` of an open demonstration file; None when it has none."""
    try:
        name = env_args_of(f, str(f.filename)).get("env_name")
    except UserError:
        return None
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class DemoIdentity:
    """What a demo shows, by the names the readers, ``info`` and the export use."""

    task: str
    instruction: str
    class_name: str


def demo_identity(g: h5py.Group, env_name: str | None, path: str | os.PathLike) -> DemoIdentity:
    """The task of a demo: its own ``task`` attribute (embodied's files), else the file's
    ``env_args.env_name`` (robomimic's files: ``Lift``, ``PickPlaceCan``; robomimic names every
    file ``image_v15.hdf5``, so the file name would merge tasks), else the file's name. The
    instruction and the class default to the task (each task its own class)."""
    text = lambda name: text_of(g.attrs.get(name)) or None  # noqa: E731  (an empty string: absent)
    task = text("task") or env_name or Path(path).stem
    return DemoIdentity(task, text("instruction") or task, text("class") or task)


def get_demo(f: h5py.File, path: Path, demo: str) -> h5py.Group:
    if not isinstance(f.get("data"), h5py.Group):
        raise UserError(f"{path}: no /data group; not a demonstration file")
    data = f["data"]
    if demo not in data or not isinstance(data[demo], h5py.Group):
        names = demo_names(data)
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise UserError(f"{path}: no demo {demo!r}; the file has {len(names)} demos ({shown or 'none'})")
    return data[demo]


def read_dataset(group: h5py.Group, key: str, where: str) -> np.ndarray:
    if key not in group or not isinstance(group[key], h5py.Dataset):
        raise UserError(f"{where}/{key}: missing")
    try:
        return group[key][()]
    except READ_ERRORS as err:
        raise UserError(f"{where}/{key}: {read_failure(group[key], err)}") from None
