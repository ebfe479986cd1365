"""Demonstration files -> a LeRobotDataset v3.0 folder, for training and evaluating in LeRobot.

    embodied-data export datasets/quick --format lerobot --out exports/quick_lerobot

LeRobot itself cannot be installed beside torch 2.13 (it pins torch < 2.11), so the format is
written here, every path and field name as LeRobot's own ``lerobot.datasets.utils`` and its
dataset writer name them::

    meta/info.json                     codebase_version "v3.0", fps, features, totals, paths
    meta/stats.json                    per feature: min, max, mean, std, count
    meta/tasks.parquet                 one row per task string (the index), its task_index
    meta/episodes/chunk-000/file-000.parquet
                                       per episode: episode_index, tasks, length,
                                       data/chunk_index, data/file_index, dataset_from_index,
                                       dataset_to_index, videos/<key>/{chunk_index, file_index,
                                       from_timestamp, to_timestamp}, meta/episodes/*, stats/*
    data/chunk-000/file-000.parquet    one row per frame: the features below
    videos/observation.images.<camera>/chunk-000/file-000.mp4
                                       every episode's frames of that camera, one after another

Features: ``observation.state`` (the robot's own low-dim keys, those named ``robot*``:
Meta-World's ``robot_state``, robosuite's ``robot0_eef_pos``, ...), ``observation.environment_state``
(the other low-dim keys: objects, goal), ``observation.images.<camera>`` (video), ``action``,
``next.reward``, ``next.done``, and LeRobot's ``timestamp``, ``frame_index``, ``episode_index``,
``index``, ``task_index``. Each demo's instruction ("open the drawer") is its task. The state
vectors concatenate their keys in sorted order; ``names`` in ``info.json`` say which dimension
is which (``robot_state.0``, ...). ``splits`` lists the train demos first, then the valid ones
(each file's ``mask/train`` and ``mask/valid``), as episode ranges.

Videos are H.264 (yuv420p, a keyframe every 2 frames as LeRobot encodes, so a frame is found
fast) at the files' image size; LeRobot's decoders (torchcodec, pyav) read them. A data or
video file past LeRobot's sizes (100 MB, 500 MB) starts the next file, as LeRobot's writer
does. The rate (``fps``) is the simulator's control rate: the suite's ``render_fps`` (Meta-World:
80), robosuite's ``control_freq`` from a robomimic file's env_args, the ``fps`` a file imported
from LeRobot keeps (:mod:`embodied.data.lerobot_import`), or ``--fps``.

The files are checked by the same checker as ``embodied-data validate`` first; the export is
written into ``<out>.part`` and renamed when complete, so an interrupted export leaves nothing
at ``out``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from embodied.data.files import (
    demo_identity,
    demo_names,
    env_args_of,
    env_name_of,
    file_suite,
    open_file,
    reading,
    split_names,
)
from embodied.data.schema import IMAGE_SUFFIX, Shapes, expand_paths, is_image_key
from embodied.data.validate import validate_file
from embodied.errors import UserError
from embodied.fileio import replace_folder
from embodied.limits import MAX_FPS

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000
"""Files per chunk folder (LeRobot's ``DEFAULT_CHUNK_SIZE``)."""
DATA_FILE_SIZE_IN_MB = 100
VIDEO_FILE_SIZE_IN_MB = 500
CHUNK_FILE = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE + ".parquet"
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE + ".mp4"
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE + ".parquet"
STATE, ENV_STATE, ACTION = "observation.state", "observation.environment_state", "action"
REWARD, DONE = "next.reward", "next.done"
VIDEO_CODEC, PIX_FMT, GOP = "h264", "yuv420p", 2


def image_feature(camera: str) -> str:
    """LeRobot's key of a camera's stream."""
    return f"observation.images.{camera}"


@dataclass
class _Demo:
    path: Path
    name: str
    task: str
    length: int


@dataclass
class _Shard:
    """Where the next rows go: LeRobot's (chunk, file) numbering, advanced when a file is full."""

    chunk: int = 0
    file: int = 0

    def advance(self) -> None:
        self.file += 1
        if self.file == CHUNKS_SIZE:
            self.chunk, self.file = self.chunk + 1, 0

    def fmt(self, template: str, **keys) -> str:
        return template.format(chunk_index=self.chunk, file_index=self.file, **keys)


@dataclass
class _Stats:
    """Running min, max, sum and sum of squares per feature (exact mean and std at the end)."""

    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, key: str, x: np.ndarray) -> dict[str, np.ndarray]:
        """Add the rows (N, ...) of ``x``; returns their own stats (the episode's)."""
        x = x.astype(np.float64)
        axes = (0, 1, 2) if x.ndim == 4 else (0,)  # images (N, H, W, C): per channel
        s = {
            "min": x.min(axes),
            "max": x.max(axes),
            "sum": x.sum(axes),
            "sumsq": (x**2).sum(axes),
            "count": np.array(int(np.prod([x.shape[a] for a in axes]))),
        }
        self.parts.setdefault(key, []).append(s)
        return _finish([s], frames=len(x), image=x.ndim == 4)

    def result(self, key: str, frames: int, image: bool) -> dict[str, np.ndarray]:
        return _finish(self.parts[key], frames, image)


def _finish(parts: list[dict], frames: int, image: bool) -> dict[str, np.ndarray]:
    n = sum(float(p["count"]) for p in parts)
    mean = sum(p["sum"] for p in parts) / n
    std = np.sqrt(np.maximum(sum(p["sumsq"] for p in parts) / n - mean**2, 0.0))
    out = {
        "min": np.min([p["min"] for p in parts], axis=0),
        "max": np.max([p["max"] for p in parts], axis=0),
        "mean": mean,
        "std": std,
        "count": np.array([frames]),  # LeRobot counts frames, also for images
    }
    if image:  # LeRobot's image stats: values in [0, 1], shape (C, 1, 1)
        out = {k: (v / 255.0).reshape(-1, 1, 1) if k != "count" else v for k, v in out.items()}
    return out


def _demos(files: list[Path]) -> tuple[list[_Demo], list[_Demo]]:
    """Every demo of every file, (train, valid) by the files' masks, each file's in demo order."""
    train, valid = [], []
    for path in files:
        with open_file(path) as f, reading(path):
            data = f["data"]
            in_valid = set(split_names(f, "valid"))  # as training splits it
            env_name = env_name_of(f)
            for name in demo_names(data):
                g = data[name]
                task = demo_identity(g, env_name, path).instruction  # LeRobot's task is the instruction
                demo = _Demo(path, name, task, int(g["actions"].shape[0]))
                (valid if name in in_valid else train).append(demo)
    return train, valid


def _fps(files: list[Path], fps: int | None) -> int:
    if fps is not None:
        if not 1 <= fps <= MAX_FPS:
            raise UserError(f"--fps must be in [1, {MAX_FPS}], got {fps}")
        return fps
    rates = set()
    for path in files:
        with open_file(path) as f, reading(path):
            kept = f["data"].attrs.get("fps")  # a file imported from a LeRobot dataset keeps its rate
        if kept is not None:
            rates.add(int(kept))
            continue
        suite = file_suite(path)
        if suite is not None:
            from embodied.sim import get_suite

            rates.add(int(get_suite(suite).env_class().metadata["render_fps"]))
            continue
        with open_file(path) as f, reading(path):
            control = env_args_of(f, str(path)).get("env_kwargs", {}).get("control_freq")
        if control is None:
            raise UserError(f"{path}: the file names no suite or control_freq; give the rate with --fps")
        rates.add(int(control))
    if len(rates) > 1:
        raise UserError(f"the files run at different rates ({sorted(rates)} Hz); export them separately")
    return rates.pop()


def export_lerobot(
    paths: list[str], out: str | Path, fps: int | None = None, overwrite: bool = False
) -> dict:
    """Write the demos of ``paths`` (files or folders) as a LeRobotDataset v3.0 at ``out``; the
    dataset's ``info.json``. See the module doc."""
    import pyarrow as pa

    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out}: already exists; pass --overwrite to replace it")
    files = expand_paths(paths)
    shapes = Shapes()  # the files go into one dataset: their widths and image sizes must agree
    for path in files:  # the one checker: what validate refuses, the export refuses
        problems = validate_file(path, shapes)
        if problems:
            more = (
                f" (and {len(problems) - 1} more: run 'embodied-data validate')" if len(problems) > 1 else ""
            )
            raise UserError(problems[0] + more)
    rate = _fps(files, fps)
    train, valid = _demos(files)
    demos = train + valid
    if not demos:
        raise UserError(f"no demos in {', '.join(map(str, files))}")

    splits = {"train": f"0:{len(train)}"}
    if valid:
        splits["valid"] = f"{len(train)}:{len(demos)}"
    try:
        return replace_folder(out, lambda part: _write(demos, part, rate, splits))
    except OSError as err:
        raise UserError(f"{out}: cannot write the export ({err.strerror or err})") from None
    except pa.ArrowException as err:
        raise UserError(f"{out}: cannot write the export ({err})") from None


def _layout(first: h5py.Group) -> tuple[list[str], list[str], list[str]]:
    """(state keys, environment-state keys, cameras) of the files, from their first demo."""
    keys = sorted(first["obs"])
    low = [k for k in keys if not is_image_key(k)]
    state = [k for k in low if k.startswith("robot")]
    cameras = [k[: -len(IMAGE_SUFFIX)] for k in keys if is_image_key(k)]
    return state, [k for k in low if k not in state], cameras


def _write(demos: list[_Demo], root: Path, fps: int, splits: dict) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with h5py.File(demos[0].path, "r") as f:
        first = f["data"][demos[0].name]
        state_keys, env_keys, cameras = _layout(first)
        widths = {k: int(np.prod(first["obs"][k].shape[1:])) for k in state_keys + env_keys}
        action_dim = int(first["actions"].shape[1])
        sizes = {c: first["obs"][c + IMAGE_SUFFIX].shape[1:3] for c in cameras}

    def names(keys: list[str]) -> list[str]:
        return [f"{k}.{i}" for k in keys for i in range(widths[k])]

    features: dict[str, dict] = {}
    if state_keys:
        features[STATE] = {"dtype": "float32", "shape": [len(names(state_keys))], "names": names(state_keys)}
    if env_keys:
        features[ENV_STATE] = {"dtype": "float32", "shape": [len(names(env_keys))], "names": names(env_keys)}
    for cam in cameras:
        h, w = (int(v) for v in sizes[cam])
        features[image_feature(cam)] = {
            "dtype": "video",
            "shape": [h, w, 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": h,
                "video.width": w,
                "video.codec": VIDEO_CODEC,
                "video.pix_fmt": PIX_FMT,
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    features[ACTION] = {
        "dtype": "float32",
        "shape": [action_dim],
        "names": [f"action.{i}" for i in range(action_dim)],
    }
    features[REWARD] = {"dtype": "float32", "shape": [1], "names": None}
    features[DONE] = {"dtype": "bool", "shape": [1], "names": None}
    features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        features[key] = {"dtype": "int64", "shape": [1], "names": None}

    tasks = list(dict.fromkeys(d.task for d in demos))
    task_index = {t: i for i, t in enumerate(tasks)}
    stats = _Stats()
    data_shard, rows, rows_bytes = _Shard(), [], 0
    videos = {cam: _VideoFile(root, image_feature(cam), fps) for cam in cameras}
    episodes = []
    index = 0

    def flush_data() -> None:
        nonlocal rows, rows_bytes
        if rows:
            path = root / data_shard.fmt(DATA_PATH)
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables(rows), path)
            data_shard.advance()
        rows, rows_bytes = [], 0

    handles: dict[Path, h5py.File] = {}
    try:
        for e, demo in enumerate(demos):
            if demo.path not in handles:
                handles[demo.path] = h5py.File(demo.path, "r")
            g = handles[demo.path]["data"][demo.name]
            n = demo.length
            columns: dict[str, np.ndarray] = {}
            if state_keys:
                columns[STATE] = np.concatenate([g["obs"][k][()].reshape(n, -1) for k in state_keys], 1)
            if env_keys:
                columns[ENV_STATE] = np.concatenate([g["obs"][k][()].reshape(n, -1) for k in env_keys], 1)
            columns[ACTION] = g["actions"][()]
            columns[REWARD] = g["rewards"][()] if "rewards" in g else np.zeros(n)
            columns[DONE] = g["dones"][()].astype(bool) if "dones" in g else np.arange(n) == n - 1
            meta: dict = {"episode_index": e, "tasks": [demo.task], "length": n}
            for key, x in columns.items():
                x = x.astype(np.float32) if key != DONE else x
                columns[key] = x
                for stat, value in stats.add(key, x.reshape(n, -1)).items():
                    meta[f"stats/{key}/{stat}"] = value.tolist()
            frame = np.arange(n)
            extra = {
                "timestamp": (frame / fps).astype(np.float32),
                "frame_index": frame,
                "episode_index": np.full(n, e),
                "index": index + frame,
                "task_index": np.full(n, task_index[demo.task]),
            }
            for key, x in extra.items():
                for stat, value in stats.add(key, x.reshape(n, 1)).items():
                    meta[f"stats/{key}/{stat}"] = value.tolist()
            table = pa.table(
                {
                    **{k: _column(v) for k, v in columns.items()},
                    **{k: pa.array(v) for k, v in extra.items()},
                }
            )
            if rows and rows_bytes + table.nbytes > DATA_FILE_SIZE_IN_MB * 1024**2:
                flush_data()
            meta.update(
                {
                    "data/chunk_index": data_shard.chunk,
                    "data/file_index": data_shard.file,
                    "dataset_from_index": index,
                    "dataset_to_index": index + n,
                }
            )
            rows.append(table)
            rows_bytes += table.nbytes
            for cam in cameras:
                frames = g["obs"][cam + IMAGE_SUFFIX][()]
                for stat, value in stats.add(image_feature(cam), frames).items():
                    meta[f"stats/{image_feature(cam)}/{stat}"] = value.tolist()
                meta.update(videos[cam].append(frames))
            meta["meta/episodes/chunk_index"], meta["meta/episodes/file_index"] = 0, 0
            episodes.append(meta)
            index += n
        flush_data()
    finally:
        for video in videos.values():
            video.close()
        for f in handles.values():
            f.close()

    (root / "meta").mkdir(parents=True, exist_ok=True)
    episodes_path = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    episodes_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(episodes), episodes_path)
    task_table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": tasks})
    # As pandas writes LeRobot's DataFrame indexed by the task string, so pandas.read_parquet
    # (LeRobot's load_tasks) gives the same index; pyarrow readers see a "task" column.
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "embodied"},
        "pandas_version": "2.2.0",
    }
    task_table = task_table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    pq.write_table(task_table, root / "meta" / "tasks.parquet")

    frames_total = sum(d.length for d in demos)
    all_stats = {
        key: stats.result(key, frames_total, image=features[key]["dtype"] == "video")
        for key in features
        if key in stats.parts
    }
    (root / "meta" / "stats.json").write_text(
        json.dumps({k: {s: v.tolist() for s, v in st.items()} for k, st in all_stats.items()}, indent=4)
    )
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": None,
        "total_episodes": len(demos),
        "total_frames": frames_total,
        "total_tasks": len(tasks),
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_SIZE_IN_MB,
        "video_files_size_in_mb": VIDEO_FILE_SIZE_IN_MB,
        "fps": fps,
        "splits": splits,
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if cameras else None,
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return info


def _column(x: np.ndarray):
    """A frame-per-row arrow column: fixed-size lists for vectors, LeRobot's shape (1,) as scalars."""
    import pyarrow as pa

    flat = x.reshape(len(x), -1)
    if flat.shape[1] == 1 and x.ndim == 1:
        return pa.array(flat[:, 0])
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel()), flat.shape[1])


class _VideoFile:
    """One camera's MP4 files: episodes appended one after another; a new file past LeRobot's size."""

    def __init__(self, root: Path, key: str, fps: int) -> None:
        self.root, self.key, self.fps = root, key, fps
        self.shard = _Shard()
        self.writer = None
        self.path: Path | None = None
        self.frames = 0  # in the current file

    def append(self, frames: np.ndarray) -> dict:
        """Write one episode's frames (T, H, W, 3); its episode metadata."""
        import imageio.v2 as imageio

        if self.writer is not None and self.path.stat().st_size > VIDEO_FILE_SIZE_IN_MB * 1024**2:
            self.close()
            self.shard.advance()
        if self.writer is None:
            self.path = self.root / self.shard.fmt(VIDEO_PATH, video_key=self.key)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = imageio.get_writer(
                self.path,
                format="FFMPEG",
                fps=self.fps,
                codec="libx264",
                pixelformat=PIX_FMT,
                macro_block_size=1,  # 84 px stays 84 px
                ffmpeg_params=["-g", str(GOP), "-crf", "18"],
                ffmpeg_log_level="error",
            )
            self.frames = 0
        start = self.frames
        for frame in frames:
            self.writer.append_data(frame)
        self.frames += len(frames)
        return {
            f"videos/{self.key}/chunk_index": self.shard.chunk,
            f"videos/{self.key}/file_index": self.shard.file,
            f"videos/{self.key}/from_timestamp": start / self.fps,
            f"videos/{self.key}/to_timestamp": self.frames / self.fps,
        }

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
