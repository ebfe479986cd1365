"""Look inside demonstration files: summarise, check the schema, re-simulate, export video.

    info(["datasets/quick"])                         # a readable summary, per file and overall
    validate(["datasets/quick/drawer-open-v3.hdf5"]) # [] or one line per problem
    replay("datasets/quick/drawer-open-v3.hdf5", "demo_0")
    export_video("datasets/quick/drawer-open-v3.hdf5", "demo_0", "demo0.mp4")
    upgrade(["datasets/quick"])                      # format_version 1 -> 2, in place, atomically

The schema is the one in :mod:`embodied.data.schema` (and design.md). The checks live in
:mod:`.validate`, the upgrade in :mod:`.upgrade`, the re-simulation in :mod:`.replay`, the
file access they share in :mod:`.files`; this module summarises and exports video, and names
every ``embodied-data`` inspection in one place. Every problem names
the file, the demo and the key (``data/x.hdf5: demo_3/actions: 2 values outside [-1, 1]``);
anything a user can cause (a missing, unreadable or malformed file, an unknown demo or
camera) raises :class:`~embodied.errors.UserError` with one such line. Arrays are read
whole, never frame by frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from embodied.data.files import (
    VALID_FRACTION,
    FileEnv,
    demo_identity,
    demo_names,
    env_args_of,
    env_name_of,
    file_env,
    get_demo,
    is_int,
    open_file,
    read_dataset,
    reading,
    split_names,
    text_of,
)
from embodied.data.replay import ReplayResult, replay, replay_demo
from embodied.data.schema import (
    IMAGE_SUFFIX,
    MASKS,
    NO_HIERARCHY,
    expand_paths,
    is_image_key,
)
from embodied.data.upgrade import upgrade
from embodied.data.validate import checksum_notes, core_schema_files, mask_notes, validate, validate_file
from embodied.errors import UserError
from embodied.limits import MAX_FPS, check_image_side, check_range

VIDEO_SUFFIXES = (".mp4", ".gif")

__all__ = [
    "ReplayResult",
    "checksum_notes",
    "core_schema_files",
    "mask_notes",
    "export_video",
    "image_streams",
    "info",
    "open_file",
    "replay",
    "replay_demo",
    "upgrade",
    "validate",
    "validate_file",
]


# -- info --------------------------------------------------------------------------------------
def _fmt_shape(ds: h5py.Dataset) -> str:
    """``(T, 4) float32``: a dataset's shape with its first (time) axis written T."""
    return f"({', '.join(['T', *map(str, ds.shape[1:])])}{',' if ds.ndim == 1 else ''}) {ds.dtype}"


def _fmt_len(lengths: list[int]) -> str:
    if not lengths:
        return "-"
    return f"{min(lengths)} / {np.mean(lengths):.1f} / {max(lengths)}"


def _fmt_rate(successes: int, n: int) -> str:
    return f"{successes / n:.0%} ({successes}/{n})" if n else "-"


def _file_summary(path: Path) -> tuple[list[str], dict]:
    """The lines about one file and its numbers for the overall summary."""
    with open_file(path) as f:
        if not isinstance(f.get("data"), h5py.Group):
            raise UserError(f"{path}: no /data group; not a demonstration file")
        data = f["data"]
        attrs = data.attrs
        names = demo_names(data)
        lengths, successes, tasks, instructions, classes = [], 0, {}, {}, {}
        recorded = 0  # demos that record success: robomimic's own files record none
        env_name = env_name_of(f)
        keys: dict[str, str] = {}
        for name in names:
            g = data[name]
            n = int(g.attrs.get("num_samples", len(g["actions"]) if "actions" in g else 0))
            lengths.append(n)
            recorded += "success" in g.attrs
            successes += int(bool(g.attrs.get("success", 0)))
            who = demo_identity(g, env_name, path)
            ids = [f"label {g.attrs.get('label', '?')}"]
            if "instruction_id" in g.attrs:
                ids.append(f"instruction_id {g.attrs['instruction_id']}")
            if "task" not in g.attrs:
                ids.append("from env_args.env_name" if env_name else "from the file name")
            tasks.setdefault(who.task, ", ".join(ids))
            classes[who.class_name] = classes.get(who.class_name, 0) + 1  # no class attribute: the task
            instructions[who.instruction] = instructions.get(who.instruction, 0) + 1
            for sub in ("actions", "states", "rewards", "dones"):
                if sub in g and sub not in keys and isinstance(g[sub], h5py.Dataset):
                    keys[sub] = _fmt_shape(g[sub])
            if isinstance(g.get("obs"), h5py.Group):
                for key, ds in g["obs"].items():
                    if f"obs/{key}" not in keys and isinstance(ds, h5py.Dataset):
                        keys[f"obs/{key}"] = _fmt_shape(ds)
        masks = {}
        for split in MASKS:  # a file without /mask: the split it gets when read
            if f"mask/{split}" in f or "mask" not in f:
                masks[split] = len(split_names(f, split))
            else:
                masks[split] = None
        try:
            env_args = env_args_of(f, str(path))
        except UserError:
            env_args = {}
        lines = [f"{path}"]
        lines.append(
            f"  format_version {attrs.get('format_version', '?')}, "
            f"suite {text_of(attrs.get('suite')) or '?'}, "
            f"env {env_args.get('type', '?')}/{env_args.get('env_name', '?')} "
            f"{_short_kwargs(env_args.get('env_kwargs', {}))}"
        )
        mask_text = ", ".join(f"{s} {'-' if c is None else c}" for s, c in masks.items())
        if "mask" not in f:
            mask_text += f"; no /mask: split when read, {VALID_FRACTION:.0%} valid, seed 0"
        lines.append(
            f"  demos {len(names)} ({mask_text}), samples {attrs.get('total', sum(lengths))}, "
            f"success {_fmt_rate(successes, len(names)) if recorded else 'not recorded'}"
        )
        lines.append(f"  episode length min / mean / max: {_fmt_len(lengths)}")
        lines.append("  tasks: " + ", ".join(f"{t} ({ids})" for t, ids in tasks.items()))
        note = "" if all("class" in data[n].attrs for n in names) else f" ({NO_HIERARCHY})"
        lines.append("  classes: " + ", ".join(f"{c} ({k} demos)" for c, k in classes.items()) + note)
        for instr, count in instructions.items():
            lines.append(f"  instruction: {instr!r} ({count} demos)")
        for key, desc in sorted(keys.items(), key=lambda kv: (kv[0].startswith("obs/"), kv[0])):
            lines.append(f"  {key:<24} {desc}")
    numbers = {
        "demos": len(names),
        "lengths": lengths,
        "successes": successes,
        "recorded": recorded,
        "tasks": set(tasks),
        "classes": classes,
        "instructions": instructions,
    }
    return lines, numbers


def info(paths: list[str]) -> str:
    """A readable summary of demonstration files (or folders of them): per file and overall."""
    files = expand_paths(paths)
    out: list[str] = []
    lengths: list[int] = []
    demos = successes = recorded = 0
    tasks: set[str] = set()
    classes: dict[str, int] = {}
    instructions: dict[str, int] = {}
    for path in files:
        with reading(path):
            lines, numbers = _file_summary(path)
        out.extend(lines)
        demos += numbers["demos"]
        lengths += numbers["lengths"]
        successes += numbers["successes"]
        recorded += numbers["recorded"]
        tasks |= numbers["tasks"]
        for total, part in ((classes, numbers["classes"]), (instructions, numbers["instructions"])):
            for key, count in part.items():
                total[key] = total.get(key, 0) + count
    out.append(
        f"overall: {len(files)} file(s), {demos} demos, {sum(lengths)} samples, {len(tasks)} task(s), "
        f"{len(classes)} class(es), {len(instructions)} instruction(s), "
        f"success {_fmt_rate(successes, recorded) if recorded else 'not recorded'}"
        + (f" (recorded by {recorded} of {demos} demos)" if 0 < recorded < demos else "")
        + f", length min / mean / max {_fmt_len(lengths)}"
    )
    if len(files) > 1:
        out.append("  demos per class: " + ", ".join(f"{c} {k}" for c, k in classes.items()))
        out.append("  demos per instruction: " + ", ".join(f"{i!r} {k}" for i, k in instructions.items()))
    return "\n".join(out)


# -- video -------------------------------------------------------------------------------------
def image_streams(g: h5py.Group) -> list[str]:
    """The cameras stored in a demo (``corner`` for ``obs/corner_image``)."""
    og = g.get("obs")
    if not isinstance(og, h5py.Group):
        return []
    return [k[: -len(IMAGE_SUFFIX)] for k in og if is_image_key(k)]


def export_video(
    path: str,
    demo: str,
    out: str,
    camera: str | None = None,
    fps: int = 20,
    size: int = 0,
    raw: bool = False,
) -> str:
    """Write a demo's ``<camera>_image`` stream as MP4 or GIF (by ``out``'s suffix), atomically,
    captioned as evaluation's rollout videos are (task, seed, step, outcome; the same writer).

    The default camera is the first one the file was collected with (the observer camera).
    ``size`` 0: the stored frames, enlarged by whole factors; else every stored state is
    rendered again at ``size`` pixels square (the demo's own seed sets the task variant), for
    watching. ``raw``: the stored frames exactly, no caption (MP4 pads an odd side by one edge
    pixel). GIF players see the same timing, but Pillow merges identical consecutive frames.
    """
    if raw and size:
        raise UserError("a raw video is the stored stream: give --raw or --size, not both")

    path, out_path = Path(path), Path(out)
    suffix = out_path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise UserError(
            f"{out_path}: unknown video type {suffix or '(none)'}; use {' or '.join(VIDEO_SUFFIXES)}"
        )
    try:  # embodied.limits: a huge side ends in an EGL error or a MemoryError far away
        check_range("--fps", fps, 1, MAX_FPS)
        check_image_side("--size (0: the stored frames)", size, zero_ok=True)
    except ValueError as err:
        raise UserError(str(err)) from None
    with open_file(path) as f, reading(path):
        g = get_demo(f, path, demo)
        streams = image_streams(g)
        if not streams:
            raise UserError(f"{path}: {demo}/obs: no camera streams (*{IMAGE_SUFFIX}) stored")
        try:
            recorded = file_env(f, str(path))
        except UserError:
            if size:  # rendering the states again needs the environment the file names
                raise
            recorded = FileEnv(None, None, (), None, None)  # the camera and the caption have other sources
        if camera is None:
            camera = next((c for c in recorded.cameras if c in streams), streams[0])
        camera = camera[: -len(IMAGE_SUFFIX)] if camera.endswith(IMAGE_SUFFIX) else camera
        if camera not in streams:
            raise UserError(
                f"{path}: {demo}/obs: no stream {camera}{IMAGE_SUFFIX}; stored: {', '.join(streams)}"
            )
        key = f"{camera}{IMAGE_SUFFIX}"
        frames = read_dataset(g["obs"], key, f"{path}: {demo}/obs")
        task = text_of(g.attrs.get("task")) or recorded.task or "?"
        seed, success = g.attrs.get("seed"), bool(g.attrs.get("success", False))
        states = read_dataset(g, "states", f"{path}: {demo}") if size else None
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise UserError(
            f"{path}: {demo}/obs/{key}: shape {frames.shape} {frames.dtype}, expected (T, H, W, 3) uint8"
        )
    from embodied.video import episode_frames, write_video  # evaluation's writer and captions

    if raw:
        note = ""
        h, w = frames.shape[1:3]
        if suffix == ".mp4" and (h % 2 or w % 2):  # yuv420p needs even sides
            frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            note = f", padded to {frames.shape[2]}x{frames.shape[1]}"
        write_video(out_path, frames, fps)
        t, h, w = frames.shape[:3]
        return f"{out_path}: {t} frames of {key} ({w}x{h}{note}, raw) at {fps} fps from {path} {demo}"
    if size:
        frames = _render_states(path, demo, recorded, camera, size, seed, states)

    steps = len(frames) - 1  # the stored frames come before each action: success shows on the last
    captioned = episode_frames(
        {camera: frames},
        task,
        int(seed) if is_int(seed) else -1,
        steps if success else None,
        None if success else "horizon",
    )
    write_video(out_path, captioned, fps)
    t, h, w = frames.shape[:3]
    how = f"rendered again at {w}x{h}" if size else f"{w}x{h} as stored"
    return f"{out_path}: {t} frames of {key} ({how}, captioned) at {fps} fps from {path} {demo}"


def _short_kwargs(kwargs) -> str:
    """``env_kwargs`` on one readable line: nested objects (robosuite's controller config, some
    hundred keys) as ``{...}``; the whole is in the file's ``env_args``."""
    if not isinstance(kwargs, dict):
        return json.dumps(kwargs)
    shown = {k: "{...}" if isinstance(v, dict) else v for k, v in sorted(kwargs.items())}
    return json.dumps(shown).replace('"{...}"', "{...}")


def _render_states(
    path: Path, demo: str, recorded: FileEnv, camera: str, size: int, seed, states
) -> np.ndarray:
    """(T, size, size, 3): each stored state rendered again at ``size`` px in the demo's variant."""
    from embodied.sim import image_key, make_env

    if seed is None or not is_int(seed):
        raise UserError(f"{path}: {demo}: attribute seed missing: the states cannot be rendered again")
    suite, task = recorded.require(str(path), "to render the states again")
    try:
        env = make_env(suite, task, cameras=(camera,), image_size=size, mesh_detail=recorded.mesh_detail)
    except UserError as err:
        raise UserError(f"{path}: /data: env_args: {err}") from None
    try:
        env.reset(seed=int(seed))  # the task variant (Meta-World: object and goal placement)
        return np.stack([env.set_state(state)[image_key(camera)] for state in states])
    finally:
        env.close()
