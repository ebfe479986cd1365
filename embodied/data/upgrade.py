"""``embodied-data upgrade``: rewrite files of an older ``format_version`` as the current one,
in place and atomically (version 1 -> 2 adds the task hierarchy: each demo's class and
instruction id, from the suite's spec)."""

from __future__ import annotations

from pathlib import Path

import h5py

from embodied.data.files import (
    demo_names,
    file_env,
    is_int,
    open_file,
    reading,
    text_of,
)
from embodied.data.schema import (
    CHECKSUMS,
    FORMAT_VERSION,
    HIERARCHY_ATTRS,
    HIERARCHY_VERSION,
    checksummed,
    expand_paths,
    read_refusing,
    task_attrs,
)
from embodied.errors import UserError, one_line
from embodied.fileio import replace_atomically


def _upgrade_plan(path: Path) -> dict[str, dict] | None:
    """The new attributes of each demo of ``path`` (None when it is already current); every
    task must be one the file's suite spec knows, else a one-line UserError."""
    from embodied.sim import load_suite

    with open_file(path) as f, reading(path):
        if not isinstance(f.get("data"), h5py.Group):
            raise UserError(f"{path}: no /data group; not a demonstration file")
        data = f["data"]
        version = data.attrs.get("format_version")
        names = demo_names(data)
        if not names:
            raise UserError(f"{path}: /data holds no demos; nothing to upgrade")
        if version is not None and not is_int(version):
            raise UserError(f"{path}: /data: attribute format_version is not an integer ({version!r})")
        if version is not None and int(version) > FORMAT_VERSION:
            raise UserError(
                f"{path}: format_version {int(version)} is newer than this reader's {FORMAT_VERSION}"
            )
        current = version is not None and int(version) >= HIERARCHY_VERSION
        if current and all(set(HIERARCHY_ATTRS) <= set(data[n].attrs) for n in names):
            return None
        recorded = file_env(f, str(path))
        suite_name = recorded.suite
        if suite_name is None:
            raise UserError(f"{path}: /data names no suite (attribute suite, env_args.type); cannot upgrade")
        try:
            suite = load_suite(suite_name)
        except UserError as err:
            raise UserError(f"{path}: {err}; cannot upgrade") from None
        env_name = recorded.task
        plan = {}
        for name in names:
            task = text_of(data[name].attrs.get("task")) or env_name
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


def _unchecked(path: Path) -> bool:
    """True when some dataset of ``path`` has no checksum (:data:`CHECKSUMS`)."""
    with open_file(path) as f, reading(path):
        have, total = checksummed(f)
    return have < total


def copy_with_checksums(src: h5py.Group, dst: h5py.Group) -> None:
    """Every attribute, group and dataset of ``src`` into ``dst``, each dataset written with
    :data:`CHECKSUMS` (keeping its chunks and compression; HDF5 cannot add a filter to a dataset
    in place) and read a chunk's rows at a time, so that an image stream need not fit in memory.
    A read that fails (damaged bytes) is a UserError naming the demo and key."""
    for key in src.attrs:  # with their stored types (a fixed-length string stays one)
        dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)
    for key, item in src.items():
        if isinstance(item, h5py.Group):
            copy_with_checksums(item, dst.create_group(key))
            continue
        if not item.shape:  # a scalar cannot be chunked, so it cannot carry a checksum
            src.copy(item, dst, name=key)
            continue
        ds = dst.create_dataset(
            key,
            shape=item.shape,
            dtype=item.dtype,
            chunks=item.chunks or True,
            compression=item.compression,
            compression_opts=item.compression_opts,
            shuffle=item.shuffle,
            **CHECKSUMS,
        )
        rows = ds.chunks[0]
        for lo in range(0, len(item), rows):
            ds[lo : lo + rows] = read_refusing(item, slice(lo, lo + rows))
        for attr in item.attrs:
            ds.attrs.create(attr, item.attrs[attr], dtype=item.attrs.get_id(attr).dtype)


def upgrade(paths: list[str], checksums: bool = False) -> list[str]:
    """Rewrite format_version 1 files as version 2, in place: each demo gets its task's
    ``class``, ``label`` (class id) and ``instruction_id`` from the suite spec; with
    ``checksums``, every dataset without a checksum gets one (:func:`copy_with_checksums`).
    Every file is checked before any is changed; each is rewritten atomically (a copy, edited,
    renamed over it). Returns one line per file."""
    import shutil

    files = expand_paths(paths)
    plans = [(path, _upgrade_plan(path)) for path in files]  # refuse before writing anything
    out = []
    for path, plan in plans:
        add_sums = checksums and _unchecked(path)
        if plan is None and not add_sums:
            out.append(f"{path}: already format_version {FORMAT_VERSION}, unchanged")
            continue

        def rewrite(tmp: Path, path=path, plan=plan or {}, add_sums=add_sums) -> None:  # a copy, edited
            if add_sums:
                with open_file(path) as src, h5py.File(tmp, "w") as dst:
                    copy_with_checksums(src, dst)
            else:
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
        sums = "checksums (Fletcher-32) on every dataset"
        if plan is None:
            out.append(f"{path}: rewritten with {sums}")
            continue
        classes = list(dict.fromkeys(a["class"] for a in plan.values()))
        out.append(
            f"{path}: upgraded to format_version {FORMAT_VERSION} ({len(plan)} demos; "
            f"class {', '.join(classes)})" + (f", with {sums}" if add_sums else "")
        )
    return out
