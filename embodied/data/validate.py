"""``embodied-data validate``: check the whole schema of demonstration files (:mod:`.schema`,
design.md), one line per problem naming the file, the demo and the key
(``data/x.hdf5: demo_3/actions: 2 values outside [-1, 1]``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from embodied.data.files import (
    DAMAGE,
    VALID_FRACTION,
    file_suite_of,
    is_int,
    mask_names,
    open_file,
    text_of,
)
from embodied.data.schema import (
    CORE_DATA_ATTRS,
    CORE_DEMO_ATTRS,
    DATA_ATTRS,
    DEMO_ATTRS,
    DEMO_NAME,
    FORMAT_VERSION,
    HIERARCHY_ATTRS,
    HIERARCHY_VERSION,
    MASKS,
    Shapes,
    check_actions,
    check_bytes,
    check_stream,
    checksummed,
    count_not_finite,
    demo_sort_key,
    expand_paths,
    read_array,
)
from embodied.errors import UserError, one_line
from embodied.sim.registry import suite_of_env_type


def validate(paths: list[str]) -> list[str]:
    """Check the whole schema of each file; one line per problem, [] when every file is valid."""
    problems: list[str] = []
    shapes = Shapes()  # files read together (as training reads them) must agree on widths and sizes
    for path in expand_paths(paths):
        problems.extend(validate_file(path, shapes))
    return problems


def core_schema_files(paths: list[str]) -> list[Path]:
    """The files among ``paths`` in robomimic's core schema alone (no ``format_version``):
    embodied's extensions are absent there, which is no problem (see :data:`CORE_DATA_ATTRS`)."""
    found = []
    for path in expand_paths(paths):
        try:
            with h5py.File(path, "r") as f:
                if "format_version" not in f["data"].attrs:
                    found.append(path)
        except (OSError, KeyError):
            continue  # validate has said what is wrong with it
    return found


def checksum_notes(paths: list[str]) -> list[str]:
    """One line for each file among ``paths`` whose datasets lack checksums (written before they
    were, or by robomimic): a changed byte there cannot be detected."""
    notes = []
    for path in expand_paths(paths):
        try:
            with h5py.File(path, "r") as f:
                have, total = checksummed(f)
        except DAMAGE:
            continue  # validate has said what is wrong with it
        if have < total:
            which = "no checksums" if not have else f"checksums on only {have} of {total} datasets"
            notes.append(
                f"{path}: {which} (HDF5 Fletcher-32): a changed byte would go unnoticed; "
                f"'embodied-data upgrade --checksums {path}' adds them"
            )
    return notes


def mask_notes(paths: list[str]) -> list[str]:
    """One line for each file among ``paths`` without ``/mask``, whose demos are split at read time."""
    notes = []
    for path in expand_paths(paths):
        try:
            with h5py.File(path, "r") as f:
                unsplit = "mask" not in f and "data" in f
        except DAMAGE:
            continue  # validate has said what is wrong with it
        if unsplit:
            notes.append(
                f"{path}: no /mask: training splits its demos when it reads them, "
                f"{VALID_FRACTION:.0%} valid (seed 0), as 'embodied-data collect' does"
            )
    return notes


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
    embodied = "format_version" in attrs  # else robomimic's core schema: the extensions are optional
    for key in DATA_ATTRS if embodied else CORE_DATA_ATTRS:
        if key not in attrs:
            add("/data", f"attribute {key} missing")
    if "env_args" in attrs:
        text = text_of(attrs["env_args"])
        try:
            env_args = json.loads(text) if text is not None else None
        except ValueError:
            env_args = None
        if not isinstance(env_args, dict):
            add("/data", "attribute env_args is not a JSON object")
        else:
            # type: embodied's suite name, or robomimic's EnvType number (1 robosuite, 2 gym, 3 iGibson)
            for key, kinds, what in (
                ("env_name", (str,), "a string"),
                ("type", (str, int), "a string or an integer"),
                ("env_kwargs", (dict,), "an object"),
            ):
                value = env_args.get(key)
                if not isinstance(value, kinds) or isinstance(value, bool):
                    add("/data", f"env_args.{key} missing or not {what}")
            suite, env_type = text_of(attrs.get("suite")), env_args.get("type")
            named = suite_of_env_type(env_type)
            if suite is not None and named is not None and named != suite:
                add("/data", f"attribute suite {suite!r} differs from env_args.type {env_type!r} ({named})")
    action_suite = file_suite_of(f)  # whose robot the actions must fit
    hierarchy = False
    if "format_version" in attrs:
        version = attrs["format_version"]
        hierarchy = is_int(version) and int(version) >= HIERARCHY_VERSION
        if not is_int(version):
            add("/data", f"attribute format_version is not an integer ({version!r})")
        elif not 1 <= int(version) <= FORMAT_VERSION:
            add("/data", f"format_version {int(version)} unknown to this reader (knows 1..{FORMAT_VERSION})")
    if "suite" in attrs and text_of(attrs["suite"]) is None:
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
    samples = sum(
        _check_demo(data[name], name, add, path, shapes, hierarchy, embodied, action_suite) for name in names
    )
    _check_same_streams(data, names, add)
    if "total" in attrs:
        total = attrs["total"]
        if not is_int(total):
            add("/data", f"attribute total is not an integer ({total!r})")
        elif int(total) != samples:
            add("/data", f"attribute total is {int(total)} but the demos hold {samples} samples")
    _check_masks(f, set(names), add)
    _check_stats(f, data, names, add)


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


def _check_demo(
    g: h5py.Group,
    name: str,
    add,
    path: Path,
    shapes: Shapes,
    hierarchy: bool = False,
    embodied: bool = True,
    suite: str | None = None,
) -> int:
    """Check one demo (with ``hierarchy``, format_version 2's attributes too; without
    ``embodied``, robomimic's core schema, embodied's attributes only where present); returns
    its length (0 when it cannot be told). Actions and observation streams go through the
    schema's checks, the ones the readers apply."""
    for key, kind in (DEMO_ATTRS | HIERARCHY_ATTRS).items():
        if key not in g.attrs:
            if key in CORE_DEMO_ATTRS or (embodied and (key in DEMO_ATTRS or hierarchy)):
                add(name, f"attribute {key} missing")
            continue
        value = g.attrs[key]
        ok = is_int(value) if kind == "int" else text_of(value) is not None
        if not ok:
            add(name, f"attribute {key} is not {'an integer' if kind == 'int' else 'a string'} ({value!r})")
    if "success" in g.attrs and is_int(g.attrs["success"]) and int(g.attrs["success"]) not in (0, 1):
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
    check_actions(g, name, add, shapes, origin, suite)  # the readers' own checks
    if isinstance(actions, h5py.Dataset) and actions.ndim >= 1:
        length = actions.shape[0]
    elif "num_samples" in g.attrs and is_int(g.attrs["num_samples"]):
        length = int(g.attrs["num_samples"])
    else:
        length = None
    stated = g.attrs.get("num_samples")
    if length is not None and is_int(stated) and int(stated) != length:
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
            x = read_array(ds, f"{name}/{key}", add)
            bad = count_not_finite(x)
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
            bad = count_not_finite(read_array(ds, f"{name}/states", add))
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
            where = f"{name}/{prefix}/{key}"
            stream = check_stream(ds, where, key, length, add, shapes, origin)
            if isinstance(stream, h5py.Dataset):  # an image stream, returned unread: every chunk's checksum
                check_bytes(stream, where, add)
    if isinstance(g.get("obs"), h5py.Group) and isinstance(g.get("next_obs"), h5py.Group):
        missing = sorted(set(g["obs"]) - set(g["next_obs"]))
        if missing:
            add(f"{name}/next_obs", f"lacks keys that obs has: {', '.join(missing)}")
    return length or 0


def _check_masks(f: h5py.File, names: set[str], add) -> None:
    if "mask" not in f:  # no problem: the readers split the demos (files.split_names; mask_notes says so)
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
        if read_array(ds, key, add) is None:
            continue
        split_names = mask_names(f, split)
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
