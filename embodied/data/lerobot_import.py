"""A local LeRobotDataset v3.0 folder -> demonstration files, so that LeRobot's data trains here.

    embodied-data import ~/.cache/huggingface/lerobot/user/pick_cube --format lerobot --out datasets/pick_cube

The inverse of :mod:`embodied.data.export` (its names and paths, LeRobot's): ``meta/info.json``
(``fps``, ``features``, ``splits``, the path templates), ``meta/tasks.parquet`` (the task
strings), ``meta/episodes/`` (each episode's length and where its video frames lie) and
``data/`` (one row per frame); the videos are decoded with imageio's ffmpeg (H.264, AV1, ...).

- **Tasks.** Each task string is an instruction. Where it is the instruction of exactly one task
  of a registered suite ("open the drawer": Meta-World's ``drawer-open-v3``), the demos take
  that task, its class and ids, and the suite; else the string is the task and its class, ids
  in order of first appearance, and the files name no suite (``env_args.type`` ``lerobot``):
  they train, nothing rolls them out. One file per task, as collect writes them.
- **Streams.** A numeric ``observation.*`` feature whose ``names`` read ``<key>.<i>`` (what the
  export writes: ``robot_state.0``, ...) is cut back into those keys; any other is one key named
  after it (``observation.state`` -> ``state``). ``observation.images.<camera>`` (video or image
  features) -> ``<camera>_image``. ``action``, ``next.reward`` and ``next.done`` are the demo's
  actions, rewards and dones; ``next.success``, where there is one, its success (else 1: LeRobot's
  datasets are demonstrations). LeRobot keeps no simulator state: ``states`` is (T, 0).
- **Actions** outside [-1, 1] (a real robot's joint targets) are scaled per dimension from the
  dataset's min and max onto [-1, 1], LeRobot's own MIN_MAX normalisation, and the files keep
  ``action_min`` and ``action_max`` (``/data`` attributes) to map them back; actions within
  [-1, 1] are kept as they are.
- **Kept**: ``fps`` (a ``/data`` attribute, which a new export takes), the split (``splits``:
  the valid episodes go to ``mask/valid``; without one, collect's split), every array (images
  within the video codec's error).

Every file is written into ``<out>.part`` and the folder renamed when complete.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embodied.data.export import ACTION, DONE, REWARD
from embodied.data.files import VALID_FRACTION
from embodied.data.schema import IMAGE_SUFFIX, DemoFileWriter, task_attrs
from embodied.errors import UserError, one_line
from embodied.fileio import replace_folder

SUITE = "lerobot"
"""``env_args.type`` of files whose tasks no registered suite knows."""
SUCCESS = "next.success"
IMAGE_PREFIX = "observation.images."
LEROBOT_COLUMNS = {"timestamp", "frame_index", "episode_index", "index", "task_index"}
_NAMED = re.compile(r"^(.+)\.(\d+)$")


@dataclass
class _Task:
    attrs: dict
    """The per-demo attributes that name the task (task, class, label, instruction, ...)."""
    suite: str
    writer: DemoFileWriter | None = None
    demos: list[tuple[int, str]] = field(default_factory=list)
    """(episode index, demo name) of each demo written, in episode order."""


def import_lerobot(root: str | Path, out: str | Path, overwrite: bool = False) -> list[Path]:
    """Write the LeRobotDataset v3.0 at ``root`` as one demonstration file per task into ``out``;
    the files. See the module doc."""
    import pyarrow as pa

    root, out = Path(root), Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; pass --overwrite to replace it")
    info = _info(root)
    try:
        written = replace_folder(out, lambda part: _convert(root, info, part))
    except OSError as err:
        raise UserError(f"{out}: cannot write the import ({err.strerror or err})") from None
    except pa.ArrowException as err:
        raise UserError(f"{root}: cannot read the dataset ({one_line(err)})") from None
    return [out / p.name for p in written]


def _info(root: Path) -> dict:
    path = root / "meta" / "info.json"
    if not path.is_file():
        raise UserError(f"{root}: no meta/info.json; not a LeRobot dataset folder")
    try:
        info = json.loads(path.read_text())
    except ValueError as err:
        raise UserError(f"{path}: not JSON ({err})") from None
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3."):
        raise UserError(
            f"{path}: a LeRobot dataset of version {version or '?'}; only v3.0 is read "
            "(LeRobot's convert_dataset_v21_to_v30 upgrades a v2.1 one)"
        )
    if ACTION not in info.get("features", {}):
        raise UserError(f"{path}: the dataset has no {ACTION!r} feature")
    return info


def _table(paths: list[Path], what: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not paths:
        raise UserError(f"no {what} files")
    return pa.concat_tables([pq.read_table(p) for p in paths])


def _array(column, n: int) -> np.ndarray:
    """A parquet column of n rows -> (n, width): fixed-size or variable lists, or scalars."""
    import pyarrow as pa

    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    if (
        pa.types.is_list(column.type)
        or pa.types.is_fixed_size_list(column.type)
        or pa.types.is_large_list(column.type)
    ):
        return np.asarray(column.flatten().to_numpy(zero_copy_only=False)).reshape(n, -1)
    return np.asarray(column.to_numpy(zero_copy_only=False)).reshape(n, 1)


def _obs_keys(key: str, feature: dict) -> list[tuple[str, slice]]:
    """The observation keys a numeric feature holds, each with its slice of the vector."""
    width = int(np.prod(feature.get("shape") or [1]))
    names = feature.get("names")
    if isinstance(names, dict):  # {"motors": [...]}, as some LeRobot datasets name them
        names = next(iter(names.values()), None)
    parts: list[tuple[str, slice]] = []
    if isinstance(names, list) and len(names) == width and all(isinstance(n, str) for n in names):
        matches = [_NAMED.match(n) for n in names]
        if all(matches):
            start = 0
            for i, m in enumerate(matches):  # runs of one key with 0, 1, 2, ... as the export names them
                if i + 1 == width or matches[i + 1].group(1) != m.group(1):
                    parts.append((m.group(1), slice(start, i + 1)))
                    start = i + 1
            ok = all(
                [int(matches[j].group(2)) for j in range(s.start, s.stop)] == list(range(s.stop - s.start))
                for _, s in parts
            )
            if ok and len({k for k, _ in parts}) == len(parts):
                return parts
    return [(key.removeprefix("observation.").replace(".", "_"), slice(0, width))]


def _suite_task(instruction: str) -> tuple[str, object] | None:
    """(suite, TaskSpec) of the one registered task with this instruction, or None."""
    from embodied.sim import known_suites, load_suite

    found = [
        (s, t) for s in known_suites() for t in load_suite(s).tasks.values() if t.instruction == instruction
    ]
    return found[0] if len(found) == 1 else None


def _convert(root: Path, info: dict, part: Path) -> list[Path]:
    fps = int(info.get("fps") or 0)
    if fps < 1:
        raise UserError(f"{root / 'meta' / 'info.json'}: no fps")
    features = info["features"]
    tasks_table = _table([root / "meta" / "tasks.parquet"], f"{root}/meta/tasks.parquet")
    names = tasks_table.column("task" if "task" in tasks_table.column_names else "__index_level_0__")
    task_text = dict(zip(tasks_table.column("task_index").to_pylist(), names.to_pylist(), strict=True))
    episodes = _table(
        sorted((root / "meta" / "episodes").rglob("*.parquet")), f"{root}/meta/episodes"
    ).to_pylist()
    episodes.sort(key=lambda e: e["episode_index"])
    data = _table(sorted((root / "data").rglob("*.parquet")), f"{root}/data")
    n = data.num_rows
    episode_of = _array(data.column("episode_index"), n)[:, 0]
    order = np.lexsort((_array(data.column("frame_index"), n)[:, 0], episode_of))  # episode, then frame
    columns = {
        key: _array(data.column(key), n)[order]
        for key in data.column_names
        if key not in LEROBOT_COLUMNS and features.get(key, {}).get("dtype") not in ("video", "image")
    }
    episode_of, task_index = episode_of[order], _array(data.column("task_index"), n)[order, 0]
    starts = np.searchsorted(episode_of, [e["episode_index"] for e in episodes])
    images = [k for k, ft in features.items() if ft.get("dtype") in ("video", "image")]
    streams = {k: _Frames(root, info, k, features[k]["dtype"], data, order) for k in images}
    actions = columns[ACTION].astype(np.float64)
    scale = None
    if actions.size and (actions.min() < -1 or actions.max() > 1):  # LeRobot's MIN_MAX normalisation
        scale = (actions.min(0), actions.max(0))
    valid = _valid_episodes(info, [e["episode_index"] for e in episodes])

    by_task: dict[str, _Task] = {}
    with contextlib.ExitStack() as open_files:  # a file per task, written as its episodes come
        for e, start in zip(episodes, starts, strict=True):
            length, index = int(e["length"]), e["episode_index"]
            rows = slice(int(start), int(start) + length)
            if not (episode_of[rows] == index).all():
                raise UserError(
                    f"{root}/data: episode {index} lacks the {length} rows meta/episodes gives it"
                )
            text = task_text.get(int(task_index[rows.start]))
            if text is None:
                raise UserError(
                    f"{root}/meta/tasks.parquet: no task {int(task_index[rows.start])} (episode {index})"
                )
            act = columns[ACTION][rows].astype(np.float64)
            if scale is not None:
                span = np.where(scale[1] > scale[0], scale[1] - scale[0], 1.0)
                act = 2 * (act - scale[0]) / span - 1  # (T, A) in [-1, 1]
            arrays = {
                "actions": act.astype(np.float32),
                "rewards": columns[REWARD][rows, 0] if REWARD in columns else np.zeros(length),
                "dones": columns[DONE][rows, 0] if DONE in columns else np.arange(length) == length - 1,
                "states": np.zeros((length, 0)),  # LeRobot keeps no simulator state
            }
            obs = {}
            for key, ft in features.items():
                if key.startswith("observation.") and key in columns:
                    for name, cut in _obs_keys(key, ft):
                        obs[name] = columns[key][rows, cut].astype(np.float32)
            for key in images:
                obs[key.removeprefix(IMAGE_PREFIX).replace(".", "_") + IMAGE_SUFFIX] = streams[key].episode(
                    e, rows
                )
            success = int(bool(columns[SUCCESS][rows].any())) if SUCCESS in columns else 1
            task = by_task.get(text) or by_task.setdefault(text, _new_task(text, len(by_task)))
            if task.writer is None:
                task.writer = open_files.enter_context(_writer(part, text, task, obs, fps, info, root, scale))
            name = task.writer.add_demo(arrays, obs, {**task.attrs, "seed": -1, "success": success})
            task.demos.append((index, name))
        for task in by_task.values():
            masks = None
            if valid is not None:
                masks = {
                    "train": [name for i, name in task.demos if i not in valid],
                    "valid": [name for i, name in task.demos if i in valid],
                }
            task.writer.finish(VALID_FRACTION, split_seed=0, masks=masks)
    for stream in streams.values():
        stream.close()
    return [task.writer.path for task in by_task.values()]


def _writer(part: Path, text: str, task: _Task, obs: dict, fps: int, info: dict, root: Path, scale):
    """The writer of ``task``'s file, named after its suite task (or its text), with what the
    import keeps of the dataset: its fps, where it came from, the actions' scale."""
    slug = task.attrs["task"] if task.suite != SUITE else _slug(text)
    cameras = [k[: -len(IMAGE_SUFFIX)] for k in obs if k.endswith(IMAGE_SUFFIX)]
    size = int(obs[cameras[0] + IMAGE_SUFFIX].shape[1]) if cameras else None
    env_args = {
        "env_name": task.attrs["task"],
        "type": task.suite,
        "env_kwargs": {"cameras": cameras, "image_size": size},
    }
    extra = {"fps": fps, "source": f"LeRobotDataset {info.get('codebase_version')} at {root}"}
    if scale is not None:
        extra |= {"action_min": json.dumps(scale[0].tolist()), "action_max": json.dumps(scale[1].tolist())}
    return DemoFileWriter(part / f"{slug}.hdf5", env_args, task.suite, extra_attrs=extra)


def _new_task(text: str, order: int) -> _Task:
    found = _suite_task(text)
    if found is not None:
        suite, spec = found
        return _Task(task_attrs(spec), suite)
    attrs = {"task": text, "class": text, "label": order, "instruction": text, "instruction_id": order}
    return _Task(attrs, SUITE)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:80] or "task"


def _valid_episodes(info: dict, indices: list[int]) -> set[int] | None:
    """The episodes of ``splits.valid`` (``"a:b"`` ranges, as LeRobot writes them); None without one."""
    spec = (info.get("splits") or {}).get("valid")
    if not spec:
        return None
    chosen = set()
    for part in str(spec).split(","):
        a, _, b = part.partition(":")
        chosen |= set(range(int(a), int(b)))
    return {i for i in indices if i in chosen}


class _Frames:
    """One camera's frames, episode by episode: decoded from its MP4 files (video features), or
    from the PNG bytes in the data rows (image features)."""

    def __init__(self, root: Path, info: dict, key: str, dtype: str, data, order: np.ndarray) -> None:
        self.root, self.key, self.fps = root, key, int(info["fps"])
        self.template = (
            info.get("video_path") or "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
        )
        self.png = data.column(key).to_pylist() if dtype == "image" else None
        self.order = order
        self.reader = self.frames = self.file = None
        self.position = 0

    def episode(self, meta: dict, rows: slice) -> np.ndarray:
        if self.png is not None:
            return np.stack([_png(self.png[i]) for i in self.order[rows]])
        where = (meta[f"videos/{self.key}/chunk_index"], meta[f"videos/{self.key}/file_index"])
        first = round(float(meta[f"videos/{self.key}/from_timestamp"]) * self.fps)
        if where != self.file or first < self.position:
            self._open(where)
        frames = []
        for frame in self.frames:  # LeRobot's files hold the episodes one after another
            self.position += 1
            if self.position > first:
                frames.append(np.asarray(frame)[..., :3])
                if len(frames) == rows.stop - rows.start:
                    return np.stack(frames)
        raise UserError(
            f"{self.path}: ends after {self.position} frames; episode {meta['episode_index']} needs "
            f"frames {first} to {first + rows.stop - rows.start - 1}"
        )

    def _open(self, where: tuple[int, int]) -> None:
        import imageio.v2 as imageio

        self.close()
        self.path = self.root / self.template.format(
            video_key=self.key, chunk_index=where[0], file_index=where[1]
        )
        if not self.path.is_file():
            raise UserError(f"{self.path}: missing (the video of {self.key})")
        self.reader = imageio.get_reader(self.path, format="FFMPEG")
        self.frames, self.file, self.position = iter(self.reader), where, 0

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None


def _png(value) -> np.ndarray:
    import io

    from PIL import Image

    raw = value.get("bytes") if isinstance(value, dict) else value
    return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"))
