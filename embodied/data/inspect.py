"""Look inside demonstration files: summarise, check the schema, re-simulate, export video.

    info(["datasets/quick"])                         # a readable summary, per file and overall
    validate(["datasets/quick/drawer-open-v3.hdf5"]) # [] or one line per problem
    replay("datasets/quick/drawer-open-v3.hdf5", "demo_0")
    export_video("datasets/quick/drawer-open-v3.hdf5", "demo_0", "demo0.mp4")
    upgrade(["datasets/quick"])                      # format_version 1 -> 2, in place, atomically

The schema is the one in :mod:`embodied.data.schema` (and design.md). Every problem names
the file, the demo and the key (``data/x.hdf5: demo_3/actions: 2 values outside [-1, 1]``);
anything a user can cause (a missing, unreadable or malformed file, an unknown demo or
camera) raises :class:`~embodied.errors.UserError` with one such line. Arrays are read
whole, never frame by frame.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from embodied.data.schema import (
    FORMAT_VERSION,
    HIERARCHY_VERSION,
    IMAGE_SUFFIX,
    Shapes,
    check_actions,
    check_stream,
    demo_sort_key,
    expand_paths,
    is_image_key,
    refuse_in,
    task_attrs,
)
from embodied.errors import UserError, one_line
from embodied.fileio import replace_atomically

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
MASKS = ("train", "valid")
VIDEO_SUFFIXES = (".mp4", ".gif")


# -- opening files ---------------------------------------------------------------------------
DAMAGE = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError)
"""What h5py raises on a file damaged inside (unreadable metadata, broken links)."""


@contextmanager
def _reading(path: Path):
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


def _text(value) -> str | None:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    return None


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer | np.bool_)  # bool is an int too


def _demo_names(data: h5py.Group) -> list[str]:
    return sorted((k for k in data if isinstance(data.get(k), h5py.Group)), key=demo_sort_key)


def _mask_names(f: h5py.File, split: str) -> list[str]:
    raw = np.asarray(f[f"mask/{split}"][()]).reshape(-1)
    return [_text(v) if _text(v) is not None else str(v) for v in raw]


def _env_args(f: h5py.File, where: str) -> dict:
    raw = f["data"].attrs.get("env_args") if "data" in f else None
    text = _text(raw)
    if text is None:
        raise UserError(f"{where}: /data: attribute env_args is missing")
    try:
        env_args = json.loads(text)
    except ValueError as err:
        raise UserError(f"{where}: /data: attribute env_args is not JSON ({err})") from None
    if not isinstance(env_args, dict):
        raise UserError(f"{where}: /data: attribute env_args is not a JSON object")
    return env_args


def _get_demo(f: h5py.File, path: Path, demo: str) -> h5py.Group:
    if not isinstance(f.get("data"), h5py.Group):
        raise UserError(f"{path}: no /data group; not a demonstration file")
    data = f["data"]
    if demo not in data or not isinstance(data[demo], h5py.Group):
        names = _demo_names(data)
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise UserError(f"{path}: no demo {demo!r}; the file has {len(names)} demos ({shown or 'none'})")
    return data[demo]


def _read(group: h5py.Group, key: str, where: str) -> np.ndarray:
    if key not in group or not isinstance(group[key], h5py.Dataset):
        raise UserError(f"{where}/{key}: missing")
    try:
        return group[key][()]
    except (OSError, ValueError, RuntimeError) as err:
        raise UserError(f"{where}/{key}: unreadable ({one_line(err)})") from None


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
        names = _demo_names(data)
        lengths, successes, tasks, instructions, classes = [], 0, {}, {}, {}
        keys: dict[str, str] = {}
        for name in names:
            g = data[name]
            n = int(g.attrs.get("num_samples", len(g["actions"]) if "actions" in g else 0))
            lengths.append(n)
            successes += int(bool(g.attrs.get("success", 0)))
            task = _text(g.attrs.get("task")) or "?"
            ids = [f"label {g.attrs.get('label', '?')}"]
            if "instruction_id" in g.attrs:
                ids.append(f"instruction_id {g.attrs['instruction_id']}")
            tasks.setdefault(task, ", ".join(ids))
            cls = _text(g.attrs.get("class")) or task  # format_version 1: the task is the class
            classes[cls] = classes.get(cls, 0) + 1
            instr = _text(g.attrs.get("instruction"))
            if instr is not None:
                instructions[instr] = instructions.get(instr, 0) + 1
            for sub in ("actions", "states", "rewards", "dones"):
                if sub in g and sub not in keys and isinstance(g[sub], h5py.Dataset):
                    keys[sub] = _fmt_shape(g[sub])
            if isinstance(g.get("obs"), h5py.Group):
                for key, ds in g["obs"].items():
                    if f"obs/{key}" not in keys and isinstance(ds, h5py.Dataset):
                        keys[f"obs/{key}"] = _fmt_shape(ds)
        masks = {}
        for split in MASKS:
            masks[split] = len(_mask_names(f, split)) if f"mask/{split}" in f else None
        try:
            env_args = _env_args(f, str(path))
        except UserError:
            env_args = {}
        lines = [f"{path}"]
        lines.append(
            f"  format_version {attrs.get('format_version', '?')}, suite {_text(attrs.get('suite')) or '?'}, "
            f"env {env_args.get('type', '?')}/{env_args.get('env_name', '?')} "
            f"{json.dumps(env_args.get('env_kwargs', {}), sort_keys=True)}"
        )
        mask_text = ", ".join(f"{s} {'-' if c is None else c}" for s, c in masks.items())
        lines.append(
            f"  demos {len(names)} ({mask_text}), samples {attrs.get('total', sum(lengths))}, "
            f"success {_fmt_rate(successes, len(names))}"
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
    demos = successes = 0
    tasks: set[str] = set()
    classes: dict[str, int] = {}
    instructions: dict[str, int] = {}
    for path in files:
        with _reading(path):
            lines, numbers = _file_summary(path)
        out.extend(lines)
        demos += numbers["demos"]
        lengths += numbers["lengths"]
        successes += numbers["successes"]
        tasks |= numbers["tasks"]
        for total, part in ((classes, numbers["classes"]), (instructions, numbers["instructions"])):
            for key, count in part.items():
                total[key] = total.get(key, 0) + count
    out.append(
        f"overall: {len(files)} file(s), {demos} demos, {sum(lengths)} samples, {len(tasks)} task(s), "
        f"{len(classes)} class(es), {len(instructions)} instruction(s), "
        f"success {_fmt_rate(successes, demos)}, length min / mean / max {_fmt_len(lengths)}"
    )
    if len(files) > 1:
        out.append("  demos per class: " + ", ".join(f"{c} {k}" for c, k in classes.items()))
        out.append("  demos per instruction: " + ", ".join(f"{i!r} {k}" for i, k in instructions.items()))
    return "\n".join(out)


# -- validate ----------------------------------------------------------------------------------
def validate(paths: list[str]) -> list[str]:
    """Check the whole schema of each file; one line per problem, [] when every file is valid."""
    problems: list[str] = []
    shapes = Shapes()  # files read together (as training reads them) must agree on widths and sizes
    for path in expand_paths(paths):
        problems.extend(validate_file(path, shapes))
    return problems


def validate_file(path: str | os.PathLike, shapes: Shapes | None = None) -> list[str]:
    """The problems of one file, each ``<file>: <demo>/<key>: <what>``; ``shapes``: those of
    files checked before, which this one must agree with."""
    path = Path(path)
    shapes = Shapes() if shapes is None else shapes
    try:
        f = open_file(path)
    except UserError as err:
        return [str(err)]
    problems: list[str] = []
    add = lambda where, what: problems.append(f"{path}: {where}: {what}")
    try:
        with f:
            _check_file(f, add, path, shapes)
    except DAMAGE as err:  # damaged inside
        add("file", f"unreadable ({one_line(err)})")
    return problems


def _check_file(f: h5py.File, add, path: Path, shapes: Shapes) -> None:
    if not isinstance(f.get("data"), h5py.Group):
        add("/data", "group missing")
        return
    data = f["data"]
    attrs = data.attrs
    for key in DATA_ATTRS:
        if key not in attrs:
            add("/data", f"attribute {key} missing")
    if "env_args" in attrs:
        text = _text(attrs["env_args"])
        try:
            env_args = json.loads(text) if text is not None else None
        except ValueError:
            env_args = None
        if not isinstance(env_args, dict):
            add("/data", "attribute env_args is not a JSON object")
        else:
            for key, kind in (("env_name", str), ("type", str), ("env_kwargs", dict)):
                if not isinstance(env_args.get(key), kind):
                    add("/data", f"env_args.{key} missing or not a {kind.__name__}")
            suite = _text(attrs.get("suite"))
            if suite is not None and isinstance(env_args.get("type"), str) and suite != env_args["type"]:
                add("/data", f"attribute suite {suite!r} differs from env_args.type {env_args['type']!r}")
    hierarchy = False
    if "format_version" in attrs:
        version = attrs["format_version"]
        hierarchy = _is_int(version) and int(version) >= HIERARCHY_VERSION
        if not _is_int(version):
            add("/data", f"attribute format_version is not an integer ({version!r})")
        elif not 1 <= int(version) <= FORMAT_VERSION:
            add("/data", f"format_version {int(version)} unknown to this reader (knows 1..{FORMAT_VERSION})")
    if "suite" in attrs and _text(attrs["suite"]) is None:
        add("/data", "attribute suite is not a string")

    names = []
    for key in data:
        item = data.get(key)
        if not isinstance(item, h5py.Group):
            add(f"/data/{key}", "not a demo group")
        elif not DEMO_NAME.fullmatch(key):
            add(key, "demo name must be demo_<integer> (robomimic sorts by it)")
        else:
            names.append(key)
    names.sort(key=demo_sort_key)
    if not names:
        add("/data", "holds no demos")
    samples = sum(_check_demo(data[name], name, add, path, shapes, hierarchy) for name in names)
    _check_same_streams(data, names, add)
    if "total" in attrs:
        total = attrs["total"]
        if not _is_int(total):
            add("/data", f"attribute total is not an integer ({total!r})")
        elif int(total) != samples:
            add("/data", f"attribute total is {int(total)} but the demos hold {samples} samples")
    _check_masks(f, set(names), add)
    _check_stats(f, data, names, add)


def _load(ds: h5py.Dataset, where: str, add) -> np.ndarray | None:
    """A whole dataset, or None (and a problem) when its bytes cannot be read."""
    try:
        return ds[()]
    except (OSError, ValueError, RuntimeError) as err:
        add(where, f"unreadable ({one_line(err)})")
        return None


def _count_not_finite(x: np.ndarray | None) -> int:
    return 0 if x is None or x.dtype.kind != "f" else int(np.count_nonzero(~np.isfinite(x)))


def _check_same_streams(data: h5py.Group, names: list[str], add) -> None:
    """Every demo of a file holds the same observation streams as its first (a reader that
    needs a stream needs it in every demo)."""
    keys = lambda name: set(data[name]["obs"]) if isinstance(data[name].get("obs"), h5py.Group) else None
    first = next((n for n in names if keys(n) is not None), None)
    if first is None:
        return
    want = keys(first)
    for name in names:
        have = keys(name)
        if have is None or have == want:
            continue
        lacks, extra = sorted(want - have), sorted(have - want)
        what = [f"lacks {', '.join(lacks)}"] if lacks else []
        what += [f"adds {', '.join(extra)}"] if extra else []
        add(f"{name}/obs", f"streams differ from {first}'s: {'; '.join(what)}")


def _check_demo(g: h5py.Group, name: str, add, path: Path, shapes: Shapes, hierarchy: bool = False) -> int:
    """Check one demo (with ``hierarchy``, format_version 2's attributes too); returns its
    length (0 when it cannot be told). Actions and observation streams go through the
    schema's checks, the ones the readers apply."""
    for key, kind in (DEMO_ATTRS | HIERARCHY_ATTRS if hierarchy else DEMO_ATTRS).items():
        if key not in g.attrs:
            add(name, f"attribute {key} missing")
            continue
        value = g.attrs[key]
        ok = _is_int(value) if kind == "int" else _text(value) is not None
        if not ok:
            add(name, f"attribute {key} is not {'an integer' if kind == 'int' else 'a string'} ({value!r})")
    if "success" in g.attrs and _is_int(g.attrs["success"]) and int(g.attrs["success"]) not in (0, 1):
        add(name, f"attribute success must be 0 or 1, got {g.attrs['success']!r}")

    datasets = {}
    for key in ("rewards", "dones", "states"):
        item = g.get(key)
        if not isinstance(item, h5py.Dataset):
            add(f"{name}/{key}", "missing")
        else:
            datasets[key] = item
    origin = f"{path}: {name}"
    actions = g.get("actions")
    check_actions(g, name, add, shapes, origin)  # the readers' own checks
    if isinstance(actions, h5py.Dataset) and actions.ndim >= 1:
        length = actions.shape[0]
    elif "num_samples" in g.attrs and _is_int(g.attrs["num_samples"]):
        length = int(g.attrs["num_samples"])
    else:
        length = None
    stated = g.attrs.get("num_samples")
    if length is not None and _is_int(stated) and int(stated) != length:
        add(name, f"attribute num_samples is {int(stated)} but actions hold {length} steps")

    def shape_ok(ds: h5py.Dataset, where: str, ndim: int) -> bool:
        if ds.ndim != ndim:
            want = {1: "(T,)", 2: "(T, d)", 4: "(T, H, W, 3)"}[ndim]
            add(where, f"shape {ds.shape}, expected {want}")
            return False
        if length is not None and ds.shape[0] != length:
            add(where, f"{ds.shape[0]} steps, expected {length} (as actions)")
            return False
        return True

    for key in ("rewards", "dones"):
        if key in datasets and shape_ok(datasets[key], f"{name}/{key}", 1):
            ds = datasets[key]
            if ds.dtype.kind not in "fiub":
                add(f"{name}/{key}", f"dtype {ds.dtype}, expected a number")
                continue
            x = _load(ds, f"{name}/{key}", add)
            bad = _count_not_finite(x)
            if bad:
                add(f"{name}/{key}", f"{bad} values not finite")
            if key == "dones" and x is not None:
                odd = int(np.count_nonzero((x != 0) & (x != 1)))
                if odd:
                    add(f"{name}/dones", f"{odd} values other than 0 and 1")
    if "states" in datasets and shape_ok(datasets["states"], f"{name}/states", 2):
        ds = datasets["states"]
        if ds.dtype.kind != "f":
            add(f"{name}/states", f"dtype {ds.dtype}, expected float64")
        else:
            bad = _count_not_finite(_load(ds, f"{name}/states", add))
            if bad:
                add(f"{name}/states", f"{bad} values not finite")

    for prefix, required in (("obs", True), ("next_obs", False)):
        og = g.get(prefix)
        if og is None:
            if required:
                add(f"{name}/{prefix}", "group missing")
            continue
        if not isinstance(og, h5py.Group):
            add(f"{name}/{prefix}", "not a group")
            continue
        if not len(og):
            add(f"{name}/{prefix}", "holds no observation keys")
        for key, ds in og.items():
            # next_obs is obs shifted by one step: the same streams, so the same shapes
            check_stream(ds, f"{name}/{prefix}/{key}", key, length, add, shapes, origin)
    if isinstance(g.get("obs"), h5py.Group) and isinstance(g.get("next_obs"), h5py.Group):
        missing = sorted(set(g["obs"]) - set(g["next_obs"]))
        if missing:
            add(f"{name}/next_obs", f"lacks keys that obs has: {', '.join(missing)}")
    return length or 0


def _check_masks(f: h5py.File, names: set[str], add) -> None:
    if "mask" not in f:
        add("/mask", "group missing (mask/train, mask/valid)")
        return
    seen: dict[str, list[str]] = {}
    for split in MASKS:
        key = f"mask/{split}"
        if key not in f or not isinstance(f[key], h5py.Dataset):
            add(key, "missing")
            continue
        ds = f[key]
        if ds.ndim != 1 or ds.dtype.kind not in "SUO":
            add(key, f"shape {ds.shape} dtype {ds.dtype}, expected a 1-d array of demo names")
            continue
        split_names = _mask_names(f, split)
        unknown = [n for n in split_names if n not in names]
        if unknown:
            add(key, f"names {len(unknown)} demos that do not exist ({', '.join(unknown[:3])})")
        if len(set(split_names)) != len(split_names):
            add(key, "names a demo twice")
        seen[split] = split_names
    if len(seen) == 2:
        both = sorted(set(seen["train"]) & set(seen["valid"]), key=demo_sort_key)
        if both:
            add("/mask", f"{len(both)} demos in both train and valid ({', '.join(both[:3])})")


def _check_stats(f: h5py.File, data: h5py.Group, names: list[str], add) -> None:
    """The optional /stats/<key> groups: count, mean, std of a low-dim key's width."""
    stats = f.get("stats")
    if stats is None:
        return
    if not isinstance(stats, h5py.Group):
        add("/stats", "not a group")
        return
    widths = {}
    if names:
        first = data[names[0]]
        if isinstance(first.get("actions"), h5py.Dataset) and first["actions"].ndim == 2:
            widths["actions"] = first["actions"].shape[1]
        if isinstance(first.get("obs"), h5py.Group):
            for key, ds in first["obs"].items():
                if isinstance(ds, h5py.Dataset) and ds.ndim == 2:
                    widths[key] = ds.shape[1]
    for key, g in stats.items():
        if not isinstance(g, h5py.Group):
            add(f"stats/{key}", "not a group of count, mean, std")
            continue
        for attr in ("count", "mean", "std"):
            if attr not in g.attrs:
                add(f"stats/{key}", f"attribute {attr} missing")
        if key in widths:
            for attr in ("mean", "std"):
                if attr in g.attrs and np.shape(g.attrs[attr]) != (widths[key],):
                    add(
                        f"stats/{key}",
                        f"{attr} has shape {np.shape(g.attrs[attr])}, expected ({widths[key]},)",
                    )


# -- upgrade -----------------------------------------------------------------------------------
def _upgrade_plan(path: Path) -> dict[str, dict] | None:
    """The new attributes of each demo of ``path`` (None when it is already current); every
    task must be one the file's suite spec knows, else a one-line UserError."""
    from embodied.sim import load_suite

    with open_file(path) as f, _reading(path):
        if not isinstance(f.get("data"), h5py.Group):
            raise UserError(f"{path}: no /data group; not a demonstration file")
        data = f["data"]
        version = data.attrs.get("format_version")
        names = _demo_names(data)
        if not names:
            raise UserError(f"{path}: /data holds no demos; nothing to upgrade")
        if version is not None and not _is_int(version):
            raise UserError(f"{path}: /data: attribute format_version is not an integer ({version!r})")
        if version is not None and int(version) > FORMAT_VERSION:
            raise UserError(
                f"{path}: format_version {int(version)} is newer than this reader's {FORMAT_VERSION}"
            )
        current = version is not None and int(version) >= HIERARCHY_VERSION
        if current and all(set(HIERARCHY_ATTRS) <= set(data[n].attrs) for n in names):
            return None
        suite_name = _text(data.attrs.get("suite"))
        if suite_name is None:
            env_type = _env_args(f, str(path)).get("type")
            suite_name = env_type if isinstance(env_type, str) else None
        if suite_name is None:
            raise UserError(f"{path}: /data names no suite (attribute suite, env_args.type); cannot upgrade")
        try:
            suite = load_suite(suite_name)
        except UserError as err:
            raise UserError(f"{path}: {err}; cannot upgrade") from None
        env_name = _env_args(f, str(path)).get("env_name")
        plan = {}
        for name in names:
            task = _text(data[name].attrs.get("task")) or (env_name if isinstance(env_name, str) else None)
            if task is None:
                raise UserError(f"{path}: {name}: no task attribute (nor env_args.env_name); cannot upgrade")
            if task not in suite.tasks:
                raise UserError(
                    f"{path}: {name}: task {task!r} is not in the {suite.suite} suite spec; cannot upgrade"
                )
            attrs = task_attrs(suite.task(task))
            attrs.pop("instruction")  # the file's own wording stays
            plan[name] = attrs
    return plan


def upgrade(paths: list[str]) -> list[str]:
    """Rewrite format_version 1 files as version 2, in place: each demo gets its task's
    ``class``, ``label`` (class id) and ``instruction_id`` from the suite spec. Every file is
    checked before any is changed; each is rewritten atomically (a copy, edited, renamed over
    it). Returns one line per file."""
    import shutil

    files = expand_paths(paths)
    plans = [(path, _upgrade_plan(path)) for path in files]  # refuse before writing anything
    out = []
    for path, plan in plans:
        if plan is None:
            out.append(f"{path}: already format_version {FORMAT_VERSION}, unchanged")
            continue

        def rewrite(tmp: Path, path=path, plan=plan) -> None:  # a copy, edited
            shutil.copy2(path, tmp)
            with h5py.File(tmp, "r+") as f:
                for name, attrs in plan.items():
                    for key, value in attrs.items():
                        f["data"][name].attrs[key] = value
                f["data"].attrs["format_version"] = FORMAT_VERSION

        try:
            replace_atomically(path, rewrite)
        except OSError as err:
            raise UserError(f"{path}: cannot rewrite ({one_line(err)}); the file is unchanged") from None
        classes = list(dict.fromkeys(a["class"] for a in plan.values()))
        out.append(
            f"{path}: upgraded to format_version {FORMAT_VERSION} ({len(plan)} demos; "
            f"class {', '.join(classes)})"
        )
    return out


# -- replay ------------------------------------------------------------------------------------
@dataclass
class ReplayResult:
    path: str
    demo: str
    task: str
    seed: int
    steps: int
    max_divergence: float
    """Largest absolute difference between a replayed and a stored state, over all steps."""
    mean_divergence: float
    """Mean over steps of the per-step largest absolute state difference."""
    first_divergent_step: int | None
    """First step whose state differs by more than ``tolerance`` (None if none does)."""
    max_reward_error: float
    max_obs_error: float
    """Largest absolute difference of a replayed and a stored low-dim observation (this also
    catches a wrong task variant, e.g. a goal, that lives in the model and not in the state)."""
    stored_success: bool
    replayed_success: bool
    tolerance: float = 1e-6

    @property
    def reproduced(self) -> bool:
        return (
            self.stored_success == self.replayed_success
            and self.max_divergence <= self.tolerance
            and self.max_obs_error <= max(self.tolerance, 1e-5)  # float32 observations
        )

    def __str__(self) -> str:
        lines = [
            f"{self.path} {self.demo}: replayed {self.steps} steps of {self.task} (seed {self.seed})",
            f"  state divergence: max {self.max_divergence:.3g}, mean {self.mean_divergence:.3g}"
            + (
                ""
                if self.first_divergent_step is None
                else f" (first above {self.tolerance:g} at step {self.first_divergent_step})"
            ),
            f"  observation divergence: max {self.max_obs_error:.3g}; reward divergence: max "
            f"{self.max_reward_error:.3g}",
            f"  success: stored {int(self.stored_success)}, replayed {int(self.replayed_success)} -> "
            + ("reproduced" if self.stored_success == self.replayed_success else "NOT reproduced"),
        ]
        return "\n".join(lines)


def replay_demo(path: str | os.PathLike, demo: str, tolerance: float = 1e-6) -> ReplayResult:
    """Re-simulate ``demo`` from its seed, ``states[0]`` and its actions; compare with the file.

    ``states[t]`` is the state before action ``t``; the state after action ``t`` is compared
    with ``states[t + 1]`` (the state after the last action is not stored).
    """
    from embodied.sim import make_env

    path = Path(path)
    with open_file(path) as f, _reading(path):
        g = _get_demo(f, path, demo)
        env_args = _env_args(f, str(path))
        states = _read(g, "states", f"{path}: {demo}")
        refuse = refuse_in(path)
        actions = check_actions(g, demo, refuse)  # the schema's checks, as validate and training
        rewards = _read(g, "rewards", f"{path}: {demo}") if "rewards" in g else None
        og = g.get("obs")
        obs = (
            {}
            if not isinstance(og, h5py.Group)
            else {
                k: check_stream(og[k], f"{demo}/obs/{k}", k, len(actions), refuse)
                for k in og
                if not is_image_key(k)
            }
        )
        seed = g.attrs.get("seed")
        stored_success = bool(g.attrs.get("success", False))
    if seed is None or not _is_int(seed):
        raise UserError(f"{path}: {demo}: attribute seed missing or not an integer")
    if actions.ndim != 2 or states.ndim != 2 or len(actions) != len(states) or not len(actions):
        raise UserError(
            f"{path}: {demo}: actions {actions.shape} and states {states.shape} must be (T, A) and (T, S)"
        )
    suite, task = env_args.get("type"), env_args.get("env_name")
    kwargs = env_args.get("env_kwargs") or {}
    if not isinstance(suite, str) or not isinstance(task, str):
        raise UserError(f"{path}: /data: env_args needs env_name and type")
    try:
        env = make_env(suite, task, horizon=kwargs.get("horizon"))
    except UserError as err:
        raise UserError(f"{path}: /data: env_args: {err}") from None
    try:
        env.reset(seed=int(seed))
        if env.get_state().shape != states.shape[1:]:
            raise UserError(
                f"{path}: {demo}/states: width {states.shape[1]}, but {task} has states of "
                f"{env.get_state().shape[0]}"
            )

        def obs_error(now: dict, t: int) -> float:
            errs = [
                np.max(np.abs(now[k] - v[t]))
                for k, v in obs.items()
                if k in now and v.shape[1:] == now[k].shape
            ]
            return float(max(errs, default=0.0))

        obs_err = obs_error(env.set_state(states[0]), 0)
        diffs = np.zeros(len(actions) - 1)
        reward_err = 0.0
        success = False
        for t, action in enumerate(actions):
            now, reward, _, _, step_info = env.step(action)
            success = success or bool(step_info["success"])
            if rewards is not None and rewards.shape == (len(actions),):
                reward_err = max(reward_err, abs(float(reward) - float(rewards[t])))
            if t + 1 < len(states):
                diffs[t] = np.max(np.abs(env.get_state() - states[t + 1]))
                obs_err = max(obs_err, obs_error(now, t + 1))
    finally:
        env.close()
    above = np.flatnonzero(diffs > tolerance)
    return ReplayResult(
        path=str(path),
        demo=demo,
        task=task,
        seed=int(seed),
        steps=len(actions),
        max_divergence=float(diffs.max()) if len(diffs) else 0.0,
        mean_divergence=float(diffs.mean()) if len(diffs) else 0.0,
        first_divergent_step=int(above[0]) + 1 if len(above) else None,
        max_reward_error=reward_err,
        max_obs_error=obs_err,
        stored_success=stored_success,
        replayed_success=success,
        tolerance=tolerance,
    )


def replay(path: str, demo: str) -> str:
    """Re-simulate a demo open loop and report state divergence and whether success reproduces."""
    return str(replay_demo(path, demo))


# -- video -------------------------------------------------------------------------------------
def image_streams(g: h5py.Group) -> list[str]:
    """The cameras stored in a demo (``corner`` for ``obs/corner_image``)."""
    og = g.get("obs")
    if not isinstance(og, h5py.Group):
        return []
    return [k[: -len(IMAGE_SUFFIX)] for k in og if is_image_key(k)]


def export_video(path: str, demo: str, out: str, camera: str | None = None, fps: int = 20) -> str:
    """Write a demo's stored ``<camera>_image`` stream as MP4 or GIF (by ``out``'s suffix), atomically.

    The default camera is the first one the file was collected with (the observer camera).
    MP4 keeps every frame; frames of odd width or height are padded by one edge pixel.
    GIF players see the same timing, but Pillow merges identical consecutive frames.
    """

    path, out_path = Path(path), Path(out)
    suffix = out_path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise UserError(
            f"{out_path}: unknown video type {suffix or '(none)'}; use {' or '.join(VIDEO_SUFFIXES)}"
        )
    if fps <= 0:
        raise UserError(f"fps must be positive, got {fps}")
    with open_file(path) as f, _reading(path):
        g = _get_demo(f, path, demo)
        streams = image_streams(g)
        if not streams:
            raise UserError(f"{path}: {demo}/obs: no camera streams (*{IMAGE_SUFFIX}) stored")
        if camera is None:
            try:
                wanted = _env_args(f, str(path)).get("env_kwargs", {}).get("cameras") or []
            except (UserError, AttributeError):
                wanted = []
            camera = next((c for c in wanted if c in streams), streams[0])
        camera = camera[: -len(IMAGE_SUFFIX)] if camera.endswith(IMAGE_SUFFIX) else camera
        if camera not in streams:
            raise UserError(
                f"{path}: {demo}/obs: no stream {camera}{IMAGE_SUFFIX}; stored: {', '.join(streams)}"
            )
        key = f"{camera}{IMAGE_SUFFIX}"
        frames = _read(g["obs"], key, f"{path}: {demo}/obs")
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise UserError(
            f"{path}: {demo}/obs/{key}: shape {frames.shape} {frames.dtype}, expected (T, H, W, 3) uint8"
        )

    from embodied.video import write_video  # the one atomic MP4/GIF writer

    note = ""
    h, w = frames.shape[1:3]
    if suffix == ".mp4" and (h % 2 or w % 2):  # yuv420p needs even sides
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        note = f", padded to {frames.shape[2]}x{frames.shape[1]}"
    write_video(out_path, frames, fps)
    t, h, w = frames.shape[:3]
    return f"{out_path}: {t} frames of {key} ({w}x{h}{note}) at {fps} fps from {path} {demo}"


__all__ = [
    "ReplayResult",
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
