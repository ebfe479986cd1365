"""The demonstration file: robomimic-compatible HDF5, one file per task (design.md).

    /data                attrs: total, env_args (JSON), format_version, suite
    /data/demo_<i>       attrs: num_samples, task, class, label, instruction, instruction_id,
                                seed, success
       actions           (T, A) float32 in [-1, 1]
       rewards, dones    (T,)
       states            (T, S) float64 flattened simulator state
       obs/<key>         (T, d) float32, or (T, H, W, 3) uint8 for ``<camera>_image``
    /mask/train, /mask/valid   demo names (bytes)
    /stats/<key>         attrs count, mean, std over the training demos (obs keys, actions)

Format versions: 2 adds the task hierarchy of the suite spec to each demo: ``class`` (the
object or scene family, ``drawer``), ``label`` (its class id) and ``instruction_id`` (the
task's position in the spec). In version 1 ``label`` was the task's position and there was
no ``class`` or ``instruction_id`` (every task its own class); readers take such a file's
class to be its task, and ``embodied-data upgrade`` rewrites it as version 2.

The checks of a demo's arrays, :func:`check_actions` and :func:`check_stream`, are the one
checker that ``embodied-data validate`` (which lists every problem), the training reader and
``replay`` (which refuse at the first) share: what one refuses, all refuse, each problem named
as ``<file>: <demo>/<key>: <what>``. A :class:`Shapes` keeps widths and image sizes agreeing
across every file read together.

Writing is atomic: :class:`DemoFileWriter` writes ``<name>.part`` and renames it only when
the file is complete, so an interrupted run never leaves a corrupt file at the target.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

import h5py
import numpy as np

from embodied.errors import UserError, one_line
from embodied.sim.registry import action_size_of


def expand_paths(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Demonstration files: files as given, folders as their ``*.hdf5`` (sorted), without repeats,
    in order. A missing path, a folder without files or nothing at all is a UserError."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(path.glob("*.hdf5"))
            if not found:
                raise UserError(f"{path}: folder holds no *.hdf5 files")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise UserError(f"{path}: no such file or folder")
    if not files:
        raise UserError("no demonstration files given")
    return list(dict.fromkeys(files))  # without repeats, in order


FORMAT_VERSION = 2
HIERARCHY_VERSION = 2
"""The first format version whose demos carry ``class`` and ``instruction_id``."""
IMAGE_SUFFIX = "_image"
IMAGE_CHUNK = 16  # frames per HDF5 chunk of an image stream: clips read whole chunks
CHECKSUMS = {"fletcher32": True}
"""How every dataset is written: with HDF5's Fletcher-32 filter, a checksum per chunk that the
HDF5 library verifies on every read, so that a changed byte in actions, states or frames is an
error naming the demo and key rather than a silently different number. A standard filter that
every HDF5 library has built in: h5py and robomimic read the files unchanged. Files written
before (and robomimic's) have none; ``embodied-data upgrade --checksums`` adds them."""
CHECKSUM_FAILURE = "filter returned failure"
"""What HDF5 says (h5py's OSError) when a chunk's filter, Fletcher-32 here, refuses its bytes."""

DEMO_NAME = re.compile(r"demo_\d+")
"""robomimic sorts demos by ``int(name[5:])``: every group under /data must be named so."""
DEMO_ATTRS = {
    "num_samples": "int",
    "task": "str",
    "instruction": "str",
    "label": "int",
    "seed": "int",
    "success": "int",
}
HIERARCHY_ATTRS = {"class": "str", "instruction_id": "int"}
"""Per-demo attributes that format_version 2 adds (the suite's task hierarchy)."""
NO_HIERARCHY = "no class attribute: each task its own class; 'embodied-data upgrade' adds them"
DATA_ATTRS = ("total", "env_args", "format_version", "suite")
CORE_DATA_ATTRS = ("total", "env_args")
"""What robomimic's own files carry (its core schema); the rest of DATA_ATTRS, DEMO_ATTRS but
``num_samples``, and HIERARCHY_ATTRS are embodied's extensions: required in a file that has a
``format_version`` (embodied's), optional in one without (robomimic's, as its
``dataset_states_to_obs.py`` writes them), and checked for their type wherever present."""
CORE_DEMO_ATTRS = ("num_samples",)
MASKS = ("train", "valid")


def demo_sort_key(name: str) -> int:
    """demo_10 after demo_9."""
    return int(name.rsplit("_", 1)[-1]) if name.rsplit("_", 1)[-1].isdigit() else 1 << 30


def format_version(f: h5py.File) -> int | None:
    """The ``format_version`` of an open demonstration file; None when it has none (robomimic's
    own files) or it is not an integer."""
    value = f["data"].attrs.get("format_version")
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def task_attrs(task) -> dict:
    """The per-demo attributes that name a task of a suite spec (a :class:`~embodied.sim.TaskSpec`)."""
    return {
        "task": task.name,
        "class": task.class_name,
        "label": task.class_id,
        "instruction": task.instruction,
        "instruction_id": task.instruction_id,
    }


def is_image_key(key: str) -> bool:
    return key.endswith(IMAGE_SUFFIX)


# --------------------------------------------------------------------------- the array checks
Problem = Callable[[str, str], None]
"""``problem(where, what)``: reports (validate) or refuses (readers) ``<file>: <where>: <what>``."""
REAL_KINDS = "biuf"
"""numpy dtype kinds a low-dim stream or actions may have: bool, ints, floats (robomimic's
files hold float64, ours float32); strings, objects and complex numbers are refused."""


def refuse_in(path: str | Path) -> Problem:
    """A ``problem`` that raises the first problem of ``path`` as a :class:`UserError`."""

    def refuse(where: str, what: str) -> None:
        raise UserError(f"{path}: {where}: {what}")

    return refuse


class Shapes:
    """The per-step shape of each stream (actions, ``obs/<key>``) first seen among files read
    together; a later demo that differs is a problem naming both."""

    def __init__(self) -> None:
        self.first: dict[str, tuple[tuple[int, ...], str]] = {}

    def agree(self, key: str, shape: tuple[int, ...], origin: str, where: str, problem: Problem) -> None:
        seen, first = self.first.setdefault(key, (shape, origin))
        if seen != shape:
            what = f"{_per_step(key, shape)}, but {first} has {_per_step(key, seen)}"
            problem(where, f"{what} (files read together must agree)")


def _per_step(key: str, shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]} frames" if is_image_key(key) else f"width {shape[0]}"


READ_ERRORS = (OSError, ValueError, RuntimeError)
"""What h5py raises when a dataset's bytes cannot be read."""


def read_failure(ds: h5py.Dataset, err: BaseException) -> str:
    """What is wrong when reading ``ds`` raised ``err``: a checksum mismatch where the dataset has
    one (:data:`CHECKSUMS`) and its filter refused the bytes, else the error itself."""
    if ds.fletcher32 and CHECKSUM_FAILURE in str(err):
        return (
            "checksum mismatch (HDF5 Fletcher-32): its bytes changed after it was written "
            "(a damaged copy or disk); restore or collect the file again"
        )
    return f"unreadable ({one_line(err)})"


def dataset_where(ds: h5py.Dataset) -> str:
    """``<file>: <demo>/<key>`` of a dataset of a demonstration file, for a message."""
    name = ds.name.removeprefix("/").removeprefix("data/")
    return f"{ds.file.filename}: {name}"


def read_array(ds: h5py.Dataset, where: str, problem: Problem) -> np.ndarray | None:
    """A whole dataset, or None (and a problem) when its bytes cannot be read."""
    try:
        return ds[()]
    except READ_ERRORS as err:
        problem(where, read_failure(ds, err))
        return None


def read_refusing(ds: h5py.Dataset, selection=()) -> np.ndarray:
    """``ds[selection]``; a failed read (a checksum mismatch) is a UserError naming the file, the
    demo and the key."""
    try:
        return ds[selection]
    except READ_ERRORS as err:
        raise UserError(f"{dataset_where(ds)}: {read_failure(ds, err)}") from None


def check_bytes(ds: h5py.Dataset, where: str, problem: Problem) -> bool:
    """Read ``ds`` a chunk's worth of rows at a time (an image stream need not fit in memory)
    so that the HDF5 library verifies every chunk's checksum; a problem names the rows of the
    first chunk that fails and how many do. True when every chunk reads."""
    rows = ds.chunks[0] if ds.chunks else max(1, len(ds))
    failed, first = 0, None
    for lo in range(0, len(ds), rows):
        try:
            ds[lo : lo + rows]
        except READ_ERRORS as err:
            failed += 1
            first = first or (lo, min(lo + rows, len(ds)) - 1, read_failure(ds, err))
    if first is not None:
        lo, hi, what = first
        more = f" and {failed - 1} more chunk(s) of {-(-len(ds) // rows)}" if failed > 1 else ""
        problem(where, f"steps {lo}-{hi}{more}: {what}")
    return first is None


def checksummed(f: h5py.File) -> tuple[int, int]:
    """(datasets with a checksum, datasets) in an open file."""
    found = []
    f.visititems(lambda _, item: found.append(item.fletcher32) if isinstance(item, h5py.Dataset) else None)
    return sum(found), len(found)


def count_not_finite(x: np.ndarray | None) -> int:
    return 0 if x is None or x.dtype.kind != "f" else int(np.count_nonzero(~np.isfinite(x)))


def check_actions(
    g: h5py.Group,
    demo: str,
    problem: Problem,
    shapes: Shapes | None = None,
    origin: str = "",
    suite: str | None = None,
) -> np.ndarray | None:
    """Check a demo's ``actions``: (T, A) with T > 0, real numbers, finite, in [-1, 1], A the
    width the file's ``suite`` takes (where the registry fixes one: a robot given other actions
    fails every step) and the same A as ``shapes`` saw first (``origin``: this demo's file and
    name, for a later message). Returns the array as stored (None when it cannot be read)."""

    ds = g.get("actions")
    where = f"{demo}/actions"
    if not isinstance(ds, h5py.Dataset):
        problem(where, "missing")
        return None
    if ds.ndim != 2:
        problem(where, f"shape {ds.shape}, expected (T, d)")
        return None
    if ds.dtype.kind not in REAL_KINDS:
        problem(where, f"dtype {ds.dtype}, expected real numbers (float32)")
        return None
    if ds.shape[0] == 0:
        problem(demo, "empty demo (0 samples)")
    width = action_size_of(suite)
    if width is not None and ds.shape[1] != width:
        problem(where, f"width {ds.shape[1]}, but the {suite} suite's robot takes actions of width {width}")
    if shapes is not None:
        shapes.agree("actions", ds.shape[1:], origin or demo, where, problem)
    x = read_array(ds, where, problem)
    if x is None:
        return None
    bad = count_not_finite(x)
    if bad:
        problem(where, f"{bad} values not finite")
    outside = int(np.count_nonzero((x < -1) | (x > 1)))
    if outside:
        problem(where, f"{outside} values outside [-1, 1]")
    return x


def check_stream(
    ds,
    where: str,
    key: str,
    length: int | None,
    problem: Problem,
    shapes: Shapes | None = None,
    origin: str = "",
):
    """Check one observation stream ``<demo>/obs/<key>``: a low-dim (T, d) of real, finite
    numbers, or an image ``<camera>_image`` (T, H, W, 3) uint8; T as the actions' ``length``;
    its d or H, W as ``shapes`` saw first. Returns a low-dim stream's array as stored, an image
    stream's dataset unread (uint8 holds no NaN), or None after a problem."""
    if not isinstance(ds, h5py.Dataset):
        problem(where, "not a dataset")
        return None
    image = is_image_key(key)
    if ds.ndim != (4 if image else 2):
        problem(where, f"shape {ds.shape}, expected {'(T, H, W, 3)' if image else '(T, d)'}")
        return None
    if length is not None and ds.shape[0] != length:
        problem(where, f"{ds.shape[0]} steps, expected {length} (as actions)")
        return None
    if image:
        ok = True
        if ds.shape[-1] != 3:
            problem(where, f"shape {ds.shape}, expected (T, H, W, 3)")
            ok = False
        if ds.dtype != np.uint8:
            problem(where, f"dtype {ds.dtype}, expected uint8")
            ok = False
        if ok and shapes is not None:
            shapes.agree(key, ds.shape[1:], origin, where, problem)
        return ds if ok else None
    if ds.dtype.kind not in REAL_KINDS:
        problem(where, f"dtype {ds.dtype}, expected real numbers (float32)")
        return None
    if shapes is not None:
        shapes.agree(key, ds.shape[1:], origin, where, problem)
    x = read_array(ds, where, problem)
    if x is not None:
        bad = count_not_finite(x)
        if bad:
            problem(where, f"{bad} values not finite")
    return x


def split_masks(names: list[str], valid_fraction: float, seed: int) -> dict[str, list[str]]:
    """A reproducible train/valid split of demo names (at least one valid demo when n >= 2)."""
    n = len(names)
    n_valid = 0 if n < 2 else max(1, round(n * valid_fraction))
    order = np.random.default_rng(seed).permutation(n)
    valid = sorted((names[i] for i in order[:n_valid]), key=demo_sort_key)
    train = sorted((names[i] for i in order[n_valid:]), key=demo_sort_key)
    return {"train": train, "valid": valid}


def running_stats(arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """count, mean, std over the rows of several (T, d) arrays."""
    x = np.concatenate(arrays, axis=0).astype(np.float64)
    return {"count": np.int64(len(x)), "mean": x.mean(0), "std": x.std(0)}


def merge_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Exact mean and std of the union of several (count, mean, std) summaries."""
    counts = np.array([p["count"] for p in parts], dtype=np.float64)
    means = np.stack([p["mean"] for p in parts])
    second = np.stack([p["std"] ** 2 + p["mean"] ** 2 for p in parts])  # E[x^2] per part
    total = counts.sum()
    mean = (counts[:, None] * means).sum(0) / total
    var = np.maximum((counts[:, None] * second).sum(0) / total - mean**2, 0.0)
    return {"count": np.int64(total), "mean": mean, "std": np.sqrt(var)}


class DemoFileWriter:
    """Write one demonstration file atomically (``with DemoFileWriter(path, ...) as w:``)."""

    def __init__(self, path: str | Path, env_args: dict, suite: str, extra_attrs: dict | None = None):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".part")
        self.env_args = env_args
        self.suite = suite
        self.extra_attrs = extra_attrs or {}
        self.names: list[str] = []
        self.low_dim: dict[str, list[np.ndarray]] = {}
        self.total = 0
        self._file: h5py.File | None = None

    def __enter__(self) -> DemoFileWriter:
        self.tmp.unlink(missing_ok=True)
        self._file = h5py.File(self.tmp, "w")
        self._data = self._file.create_group("data")
        return self

    def add_demo(self, arrays: dict[str, np.ndarray], obs: dict[str, np.ndarray], attrs: dict) -> str:
        """Add one demo: ``arrays`` holds actions, rewards, dones, states; ``obs`` the streams,
        and those under ``next/<key>`` go to ``next_obs/<key>`` (robomimic's next observations)."""
        self._check_room(sum(np.asarray(v).nbytes for v in (*arrays.values(), *obs.values())))
        name = f"demo_{len(self.names)}"
        grp = self._data.create_group(name)
        n = len(arrays["actions"])
        put = lambda group, key, x, **kw: group.create_dataset(key, data=x, **kw, **CHECKSUMS)  # noqa: E731
        put(grp, "actions", np.asarray(arrays["actions"], dtype=np.float32))
        put(grp, "rewards", np.asarray(arrays["rewards"], dtype=np.float32))
        put(grp, "dones", np.asarray(arrays["dones"], dtype=np.int64))
        put(grp, "states", np.asarray(arrays["states"], dtype=np.float64))
        og = grp.create_group("obs")
        nog = grp.create_group("next_obs") if any(k.startswith("next/") for k in obs) else None
        for full_key, value in obs.items():
            group, key = (nog, full_key[5:]) if full_key.startswith("next/") else (og, full_key)
            if is_image_key(key):
                chunks = (min(IMAGE_CHUNK, n), *value.shape[1:])
                put(group, key, np.asarray(value, dtype=np.uint8), chunks=chunks)
            else:
                put(group, key, np.asarray(value, dtype=np.float32))
                if group is og:
                    self.low_dim.setdefault(key, []).append(np.asarray(value, dtype=np.float32))
        self.low_dim.setdefault("actions", []).append(np.asarray(arrays["actions"], dtype=np.float32))
        grp.attrs["num_samples"] = n
        for key, value in attrs.items():
            grp.attrs[key] = value
        self.names.append(name)
        self.total += n
        return name

    ROOM_MARGIN = 1 << 20
    """Bytes beyond a demo's arrays that writing it needs free (HDF5's chunk indexes, headers,
    the file's closing metadata)."""

    def _check_room(self, nbytes: int) -> None:
        """Raise ENOSPC before a demo that the disk has no room for: HDF5 meeting a full disk
        mid-write spews errors from its object destructors and may take the process down, where
        an OSError here is one line (collect's) and leaves no partial file (``__exit__``)."""
        free = shutil.disk_usage(self.tmp.parent).free
        if free < nbytes + nbytes // 100 + self.ROOM_MARGIN:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def finish(
        self, valid_fraction: float, split_seed: int, masks: dict[str, list[str]] | None = None
    ) -> None:
        """Write masks, statistics and the file attributes, then move the file into place.
        ``masks``: the split of demos that came with one (an import); else one drawn here."""
        assert self._file is not None
        masks = masks or split_masks(self.names, valid_fraction, split_seed)
        for split, names in masks.items():
            self._file.create_dataset(f"mask/{split}", data=np.array(names, dtype="S"), **CHECKSUMS)
        train = {int(n.split("_")[1]) for n in masks["train"]} or set(range(len(self.names)))
        stats = self._file.create_group("stats")
        for key, arrays in self.low_dim.items():
            s = running_stats([a for i, a in enumerate(arrays) if i in train])
            g = stats.create_group(key)
            for k, v in s.items():
                g.attrs[k] = v
        self._data.attrs["total"] = self.total
        self._data.attrs["env_args"] = json.dumps(self.env_args)
        self._data.attrs["format_version"] = FORMAT_VERSION
        self._data.attrs["suite"] = self.suite
        for key, value in self.extra_attrs.items():
            self._data.attrs[key] = value
        self._file.close()
        self._file = None
        os.replace(self.tmp, self.path)  # atomic on one filesystem

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._file is not None:  # finish() was not reached: leave nothing behind
            self._file.close()
            self._file = None
        self.tmp.unlink(missing_ok=True)
