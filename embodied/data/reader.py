"""The dataset reader: the training hot path.

One :class:`DemoDataset` over one or many demonstration files gives, for sample ``(episode, t)``:

- an **execution window** (mode ``window``): the observation history ``t-To+1 .. t`` (the
  first frame repeated before the episode starts, as robomimic's frame stacking does) and
  the action chunk ``t .. t+Ta-1`` with ``action_mask`` False past the episode's end (the
  last action repeated there);
- an **observation clip** (mode ``clip``): ``T`` observer-camera frames at ``stride``; in
  training from a random position in the episode, at evaluation around ``t``. An episode
  shorter than the clip's span is padded by repeating its last frame;
- both, from the same episode (mode ``paired``), for alignment.

Labels: ``label`` indexes :attr:`DemoDataset.classes`, the demos' ``class`` attribute (the
object family, format_version 2), or their task where a file has none (format_version 1,
robomimic's files: every task its own class); ``instruction_id`` indexes
:attr:`DemoDataset.instructions`, the demos' ``instruction``. Both vocabularies list names in
the order the demos first show them, unless given (a model's, for its validation split).

``max_demos`` keeps the first N demos of the split in each file (demo order: ``demo_0``,
``demo_1``, ...), for low-data studies, like robomimic's ``N_percent`` filter keys; the
normalisation statistics are then computed from those demos.

``action_demos`` (learning by watching) keeps every demo but gives the policy the actions of
only the first N successful demos of the split in each file: the other episodes, the failed
attempts (``success`` 0) included, are served action-free, their windows with ``action_mask``
all False, so they reach the recognizer's clips and the alignment's pairs and never the
behaviour cloning loss (which averages over the mask). ``watch_all=False`` leaves those episodes
out: the same action demos, every window with actions (the control without the watching).

The window and clip arithmetic (with its timeline) is :mod:`embodied.data.windows`.

Speed: low-dim streams and actions are held in memory as one array per key and gathered
for a whole batch with one fancy index (``__getitems__``); image streams are held in memory
when they fit under ``image_cache_bytes`` and in half the machine's free memory, else read
from HDF5 one contiguous span per sample (whole chunks, never one call per frame).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import torch
from einops import rearrange

from embodied import keys as K
from embodied.data.files import (
    VALID_FRACTION,
    demo_identity,
    env_name_of,
    file_env,
    file_suite_of,
    split_names,
)
from embodied.data.schema import (
    Shapes,
    check_actions,
    check_stream,
    demo_sort_key,
    expand_paths,
    format_version,
    merge_stats,
    read_refusing,
    refuse_in,
    running_stats,
)
from embodied.data.spec import DataSpec
from embodied.data.windows import (
    action_steps,
    clip_start_around,
    clip_steps,
    last_clip_start,
    observation_steps,
)
from embodied.errors import UserError
from embodied.limits import available_memory

Mode = Literal["window", "clip", "paired"]
Split = Literal["train", "valid", "all"]


@dataclass
class _Episode:
    file: int
    demo: str
    start: int  # first row in the concatenated arrays
    length: int
    task: str
    instruction: str
    cls: str  # the demo's class; its task in files without one
    acts: bool = True  # its actions are the policy's to learn (see action_demos)


class DemoDataset(torch.utils.data.Dataset):
    """Execution windows, observation clips, or both, over demonstration files (see module doc)."""

    def __init__(
        self,
        paths: list[str | Path] | str | Path,
        split: Split = "train",
        mode: Mode = "window",
        obs_keys: list[str] | None = None,
        obs_horizon: int = 1,
        action_horizon: int = 1,
        clip_len: int = 8,
        clip_stride: int = 2,
        camera: str | None = None,
        training: bool = True,
        image_cache_bytes: int = 4 << 30,
        classes: list[str] | None = None,
        instructions: list[str] | None = None,
        max_demos: int = 0,
        action_demos: int = 0,
        watch_all: bool = True,
    ) -> None:
        if max_demos < 0 or action_demos < 0:
            raise UserError(f"max_demos and action_demos must be >= 0, got {max_demos}, {action_demos}")
        self.files = expand_paths(paths)
        self.split, self.mode, self.training = split, mode, training
        self.To, self.Ta = int(obs_horizon), int(action_horizon)
        self.clip_len, self.clip_stride = int(clip_len), int(clip_stride)
        if min(self.To, self.Ta, self.clip_len, self.clip_stride) < 1:
            raise UserError("obs_horizon, action_horizon, clip_len and clip_stride must be at least 1")

        self.episodes: list[_Episode] = []
        low_dim: dict[str, list[np.ndarray]] = {}
        images: dict[str, list] = {}
        file_stats: list[dict] = []
        self._handles: list[h5py.File] = []
        shapes = Shapes()  # widths and image sizes must agree across all the files
        self.v1_files: list[Path] = []  # format_version 1: no class hierarchy
        details: dict[str, Path] = {}  # how the files' cameras drew meshes -> a file that did so
        for fi, path in enumerate(self.files):
            f = self._open(path)
            if format_version(f) == 1:
                self.v1_files.append(path)
            details.setdefault(_mesh_detail(f), path)
            every = self._demos(f, path)
            env_name = env_name_of(f)
            demos = every[:max_demos] if max_demos else every  # the first N, in demo order
            if action_demos and not watch_all:  # the action demos only (as `acts` picks them below)
                demos = [d for d in demos if _succeeded(f["data"][d])][:action_demos]
            if not demos:
                continue
            if not isinstance(f["data"][demos[0]].get("obs"), h5py.Group):
                raise UserError(f"{path}: {demos[0]}/obs: group missing")
            if obs_keys is None:  # default: every low-dim stream; image streams only on request
                obs_keys = sorted(k for k in f["data"][demos[0]]["obs"] if not k.endswith("_image"))
            if camera is None and mode != "window":
                camera = self._default_camera(f)
            wanted = list(obs_keys) + ([f"{camera}_image"] if mode != "window" else [])
            # once each: a policy that reads the observer camera wants the clips' stream too, and a
            # stream read twice would be stored twice and shift every later episode's frames
            wanted = list(dict.fromkeys(wanted))
            refuse = refuse_in(path)
            suite = file_suite_of(f)  # actions must have the width its robot takes
            acting = 0  # action demos of this file so far
            for demo in demos:
                g = f["data"][demo]
                # the schema's checks (those of embodied-data validate), on the arrays read here anyway
                actions = check_actions(g, demo, refuse, shapes, f"{path}: {demo}", suite)
                n = len(actions)
                who = demo_identity(g, env_name, path)
                og = g.get("obs")
                stored = sorted(og.keys()) if isinstance(og, h5py.Group) else []
                streams = {}
                for key in wanted:
                    if key not in stored:
                        refuse(demo, f"no obs/{key} (streams: {', '.join(stored) or 'none'})")
                    where, origin = f"{demo}/obs/{key}", f"{path}: {demo}"
                    streams[key] = check_stream(og[key], where, key, n, refuse, shapes, origin)
                acts = not action_demos or (acting < action_demos and _succeeded(g))
                acting += acts
                self.episodes.append(
                    _Episode(
                        fi,
                        demo,
                        sum(e.length for e in self.episodes),
                        n,
                        who.task,
                        who.instruction,
                        who.class_name,
                        acts,
                    )
                )
                for key, stream in streams.items():
                    if key.endswith("_image"):
                        images.setdefault(key, []).append(stream)  # the h5py dataset, read below
                    else:
                        low_dim.setdefault(key, []).append(stream.astype(np.float32))
                low_dim.setdefault(K.ACTIONS, []).append(actions.astype(np.float32))
            file_stats.append(self._file_stats(f, demos, low_dim, whole_split=len(demos) == len(every)))
        if not self.episodes:
            raise UserError(f"no demos in split {split!r} of {', '.join(map(str, self.files))}")

        self.obs_keys = [k for k in obs_keys if not k.endswith("_image")]
        self.image_obs_keys = [k for k in obs_keys if k.endswith("_image")]
        if len(details) > 1 and (self.image_obs_keys or mode != "window"):
            shown = "; ".join(f"{d} in {p}" for d, p in details.items())
            raise UserError(f"the files' images are drawn differently (mesh_detail {shown}); collect alike")
        self.mesh_detail = next(iter(details)) if len(details) == 1 else "full"
        self.camera = camera
        self.video_key = f"{camera}_image" if mode != "window" else None
        self.low_dim = {k: np.concatenate(v) for k, v in low_dim.items()}  # key -> (N, d)
        self.images = self._load_images(
            images, image_cache_bytes
        )  # key -> (N, H, W, 3) or per-episode datasets
        self.stats = self._merge(file_stats)

        lengths = np.array([e.length for e in self.episodes])
        self.ep_start = np.array([e.start for e in self.episodes])
        self.ep_len = lengths
        self.ep_acts = np.array([e.acts for e in self.episodes])  # (E,) bool: actions for the policy
        # sample i -> (episode, t)
        self.sample_ep = np.repeat(np.arange(len(lengths)), lengths)
        self.sample_t = np.concatenate([np.arange(n) for n in lengths])

        ep_class = [e.cls for e in self.episodes]
        if classes and not set(ep_class) <= set(classes) and {e.task for e in self.episodes} <= set(classes):
            ep_class = [e.task for e in self.episodes]  # a model from before the hierarchy: class = task
        self.classes = list(classes or _ordered_unique(ep_class))
        self.instructions = list(instructions or _ordered_unique(e.instruction for e in self.episodes))
        self.ep_label = self._index(self.classes, ep_class, "class")
        self.ep_instruction = self._index(
            self.instructions, [e.instruction for e in self.episodes], "instruction"
        )
        self.tasks = _ordered_unique(e.task for e in self.episodes)
        first = {}
        for i, e in enumerate(self.episodes):
            first.setdefault(e.task, i)
        self.task_labels = [int(self.ep_label[first[t]]) for t in self.tasks]
        self.task_instructions = [int(self.ep_instruction[first[t]]) for t in self.tasks]
        if self.v1_files:
            _note_v1(self.v1_files)

    # ------------------------------------------------------------------ loading
    @staticmethod
    def _open(path: Path) -> h5py.File:
        try:
            f = h5py.File(path, "r")
        except OSError as err:
            raise UserError(f"{path}: not a readable HDF5 file ({err})") from None
        if "data" not in f:
            raise UserError(f"{path}: no /data group (not a demonstration file)")
        return f

    def _demos(self, f: h5py.File, path: Path) -> list[str]:
        self._handles.append(f)
        if self.split == "all":
            names = list(f["data"].keys())
        elif "mask" not in f:  # robomimic's files before its split_train_val.py: split here
            _note_unsplit(path)
            names = split_names(f, self.split)
        else:
            mask = f"mask/{self.split}"
            if mask not in f:
                raise UserError(f"{path}: no /{mask} (needed for split {self.split!r})")
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f[mask][()]]
            for n in names:
                if n not in f["data"]:
                    raise UserError(f"{path}: /{mask} names {n}, which is not in /data")
        return sorted(names, key=demo_sort_key)

    @staticmethod
    def _default_camera(f: h5py.File) -> str:
        try:
            return file_env(f, str(f.filename)).cameras[0]
        except (UserError, IndexError):
            first = next(iter(f["data"].values()))
            streams = [k for k in first["obs"] if k.endswith("_image")]
            if not streams:
                raise UserError(f"{f.filename}: no camera stream (obs/<camera>_image) for clips") from None
            return streams[0][: -len("_image")]

    def _file_stats(self, f: h5py.File, demos: list[str], low_dim: dict, whole_split: bool) -> dict:
        """Statistics stored with the file when they cover these demos (the whole train split),
        else computed here."""
        n = len(demos)
        if self.split == "train" and whole_split and "stats" in f:
            stored = {
                k: {a: np.asarray(f["stats"][k].attrs[a]) for a in ("count", "mean", "std")}
                for k in f["stats"]
            }
            if all(k in stored for k in low_dim):
                return stored
        return {k: running_stats(v[-n:]) for k, v in low_dim.items()}

    @staticmethod
    def _merge(parts: list[dict]) -> dict[str, dict[str, np.ndarray]]:
        keys = set.intersection(*(set(p) for p in parts))
        return {k: {kk: vv for kk, vv in merge_stats([p[k] for p in parts]).items()} for k in sorted(keys)}

    def _load_images(self, images: dict[str, list], limit: int) -> dict:
        total = sum(int(np.prod(ds.shape)) for dss in images.values() for ds in dss)
        free = available_memory()
        # in memory only where they leave half the machine's free memory to the run, else from disk
        self.images_in_memory = total <= limit and (free is None or total <= free // 2)
        if self.images_in_memory:  # stored channels-first once, so a batch is a single gather
            return {
                k: np.concatenate([rearrange(read_refusing(ds), "n h w c -> n c h w") for ds in dss])
                for k, dss in images.items()
            }
        return images  # per-episode h5py datasets, read per sample

    @staticmethod
    def _index(vocab: list[str], values: list[str], what: str) -> np.ndarray:
        lookup = {v: i for i, v in enumerate(vocab)}
        missing = sorted(set(values) - set(lookup))
        if missing:
            raise UserError(f"{what} {missing[0]!r} of the data is not among the model's: {', '.join(vocab)}")
        return np.array([lookup[v] for v in values], dtype=np.int64)

    # ------------------------------------------------------------------ sampling
    def __len__(self) -> int:
        return len(self.sample_ep)

    def __getitem__(self, index: int) -> dict:
        batch = self.__getitems__([index])
        return _unbatch(batch)

    def __getitems__(self, indices) -> dict:
        """A whole batch at once: low-dim data gathered with one fancy index per key."""
        idx = np.asarray(indices)
        ep, t = self.sample_ep[idx], self.sample_t[idx]  # (B,), (B,)
        batch: dict = {
            K.LABEL: torch.from_numpy(self.ep_label[ep]),
            K.INSTRUCTION: torch.from_numpy(self.ep_instruction[ep]),
            K.EPISODE: torch.from_numpy(ep.astype(np.int64)),
        }
        if self.mode in ("window", "paired"):
            batch.update(self._windows(ep, t))
        if self.mode in ("clip", "paired"):
            batch[K.VIDEO] = self._clips(ep, t)
        return batch

    def _windows(self, ep: np.ndarray, t: np.ndarray) -> dict:
        start, length = self.ep_start[ep][:, None], self.ep_len[ep][:, None]  # (B, 1)
        obs_t = observation_steps(t, self.To)  # (B, To)
        act_t = action_steps(t, self.Ta)  # (B, Ta)
        mask = (act_t < length) & self.ep_acts[ep][:, None]  # past the end, or an action-free episode
        act_rows = start + np.minimum(act_t, length - 1)  # past the end: repeat the last action
        obs_rows = start + obs_t
        obs = {k: torch.from_numpy(self.low_dim[k][obs_rows]) for k in self.obs_keys}  # (B, To, d)
        for k in self.image_obs_keys:
            obs[k] = torch.from_numpy(self._frames(k, ep, obs_rows - start))  # (B, To, 3, H, W)
        return {
            K.OBS: obs,
            K.ACTIONS: torch.from_numpy(self.low_dim[K.ACTIONS][act_rows]),  # (B, Ta, A)
            K.ACTION_MASK: torch.from_numpy(mask),  # (B, Ta)
        }

    def clip_starts(self, ep: np.ndarray, t: np.ndarray) -> np.ndarray:
        """First frame of each clip: random in training, around ``t`` at evaluation."""
        length = self.ep_len[ep]
        if self.training:
            last = last_clip_start(length, self.clip_len, self.clip_stride)
            return (torch.rand(len(ep)).numpy() * (last + 1)).astype(np.int64)
        return clip_start_around(t, length, self.clip_len, self.clip_stride)

    def clip(self, ep: np.ndarray, start: np.ndarray) -> torch.Tensor:
        """(B, T, 3, H, W) uint8 clips of episodes ``ep`` from frames ``start``; short episodes
        are padded by repeating their last frame."""
        frame_t = clip_steps(start, self.ep_len[ep], self.clip_len, self.clip_stride)  # (B, T)
        return torch.from_numpy(self._frames(self.video_key, ep, frame_t))  # (B, T, 3, H, W)

    def episode_video(self, episode: int) -> np.ndarray:
        """(L, 3, H, W) uint8: the whole observer stream of one episode, in one read (one
        contiguous HDF5 span when the images are not in memory)."""
        length = int(self.ep_len[episode])
        return self._frames(self.video_key, np.array([episode]), np.arange(length)[None])[0]

    def _clips(self, ep: np.ndarray, t: np.ndarray) -> torch.Tensor:
        return self.clip(ep, self.clip_starts(ep, t))

    def _frames(self, key: str, ep: np.ndarray, frame_t: np.ndarray) -> np.ndarray:
        """Frames ``frame_t`` (B, T) (episode-relative) of stream ``key`` -> (B, T, 3, H, W)."""
        if self.images_in_memory:
            return self.images[key][self.ep_start[ep][:, None] + frame_t]
        out = []
        for e, ts in zip(ep, frame_t, strict=True):
            lo, hi = int(ts.min()), int(ts.max()) + 1
            # one contiguous read (whole chunks), (n, H, W, 3); a checksum failure names demo and key
            span = read_refusing(self.images[key][e], slice(lo, hi))
            out.append(span[ts - lo])
        return np.ascontiguousarray(rearrange(np.stack(out), "b t h w c -> b t c h w"))

    # ------------------------------------------------------------------ description
    def data_spec(self) -> DataSpec:
        shapes = {k: [int(self.low_dim[k].shape[1])] for k in self.obs_keys}
        for k in self.image_obs_keys:
            shapes[k] = list(self._frame_shape(k))
        size = (
            self._frame_shape(self.video_key)[1]
            if self.video_key
            else (shapes[self.image_obs_keys[0]][1] if self.image_obs_keys else 0)
        )
        return DataSpec(
            obs_shapes=shapes,
            action_dim=int(self.low_dim[K.ACTIONS].shape[1]),
            num_classes=len(self.classes),
            num_instructions=len(self.instructions),
            obs_horizon=self.To,
            action_horizon=self.Ta,
            clip_len=self.clip_len,
            image_size=int(size),
            mesh_detail=self.mesh_detail,
            classes=list(self.classes),
            instructions=list(self.instructions),
            tasks=list(self.tasks),
            task_labels=list(self.task_labels),
            task_instructions=list(self.task_instructions),
        )

    def _frame_shape(self, key: str) -> tuple[int, int, int]:
        """(3, H, W) of one frame of ``key``."""
        if self.images_in_memory:
            return tuple(self.images[key].shape[1:])
        h, w, c = self.images[key][0].shape[1:]
        return c, h, w

    def normalization_stats(self) -> dict[str, dict[str, np.ndarray]]:
        """``{key: {"mean", "std"}}`` for low-dim obs keys and actions (training split)."""
        return {k: {"mean": v["mean"], "std": v["std"]} for k, v in self.stats.items()}

    def memory_bytes(self) -> int:
        """Bytes of the data this reader holds in memory (low-dim arrays, cached image streams)."""
        arrays = list(self.low_dim.values()) + (list(self.images.values()) if self.images_in_memory else [])
        return sum(a.nbytes for a in arrays)

    def close(self) -> None:
        for f in self._handles:
            f.close()
        self._handles.clear()

    def __getstate__(self):  # DataLoader workers reopen the files
        state = self.__dict__.copy()
        state["_handles"] = []
        if not self.images_in_memory:
            state["images"] = None
            state["_reopen"] = True
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if state.pop("_reopen", False):
            handles = [h5py.File(p, "r") for p in self.files]
            self._handles = handles
            self.images = {}
            for key in [*self.image_obs_keys, *([self.video_key] if self.video_key else [])]:
                self.images[key] = [handles[e.file]["data"][e.demo]["obs"][key] for e in self.episodes]


_NOTED_V1 = False


def _note_v1(files: list[Path]) -> None:
    """Say once per process that format_version 1 files carry no class hierarchy."""
    global _NOTED_V1
    if _NOTED_V1:
        return
    _NOTED_V1 = True
    shown = ", ".join(map(str, files[:2])) + (", ..." if len(files) > 2 else "")
    print(
        f"note: {len(files)} demonstration file(s) are format_version 1 ({shown}): no class hierarchy, "
        "each task is its own class, so positives by class and by instruction coincide; "
        "'embodied-data upgrade PATH...' adds the suite's classes",
        file=sys.stderr,
    )


_NOTED_UNSPLIT: set[Path] = set()


def _note_unsplit(path: Path) -> None:
    """Say once per process and file that its demos were split at read time."""
    if path in _NOTED_UNSPLIT:
        return
    _NOTED_UNSPLIT.add(path)
    print(
        f"note: {path} has no /mask: its demos are split here, {VALID_FRACTION:.0%} valid (seed 0), as "
        "'embodied-data collect' splits (robomimic's split_train_val.py writes a /mask of its own)",
        file=sys.stderr,
    )


def _mesh_detail(f: h5py.File) -> str:
    """How a file's cameras drew meshes (its ``env_args``; files without that say: ``full``)."""
    try:
        return file_env(f, str(f.filename)).mesh_detail
    except UserError:
        return "full"


def _succeeded(g: h5py.Group) -> bool:
    """A demo not marked failed (``success`` 0, kept with ``--keep-failures``); files without the
    attribute hold successes only."""
    return bool(g.attrs.get("success", 1))


def _ordered_unique(values) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _unbatch(batch: dict) -> dict:
    return {k: (_unbatch(v) if isinstance(v, dict) else v[0]) for k, v in batch.items()}


__all__ = ["DemoDataset", "dataclasses"]
