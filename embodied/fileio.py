"""Atomic file writes: a temporary file beside the target, then one rename.

A reader never sees a half-written file, and a run killed mid-write keeps the previous one.
The temporary file is ``.<name>.<pid>.tmp`` and never survives a failure; a folder written whole
(:func:`replace_folder`) is ``<name>.part``.
"""

from __future__ import annotations

import errno
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from embodied.errors import UserError
from embodied.lifetime import alive as _alive

T = TypeVar("T")


def temporary_path(path: Path) -> Path:
    """``.<name>.<pid>.tmp`` beside ``path``: the temporary file :func:`replace_atomically` writes
    (the pid tells whose it is: :func:`remove_stale_temporaries`)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def replace_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary path)`` beside ``path``, then rename it into place.

    Errors (``OSError`` included) propagate; :func:`write_user_file` turns them into one line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # fails first where a file is in the way
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def replace_folder(path: Path, write: Callable[[Path], T]) -> T:
    """Call ``write(<path>.part)`` on a fresh folder beside ``path`` (one an interrupted run left
    is removed first), then put it in ``path``'s place, the old folder removed only then; returns
    what ``write`` returns. The ``.part`` folder never survives; errors propagate."""
    part = path.with_name(path.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    try:
        part.mkdir(parents=True)
        result = write(part)
        if path.exists():
            shutil.rmtree(path)
        part.rename(path)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return result


def remove_stale_temporaries(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temporary files of ``names`` (:func:`temporary_path`) that a process killed while
    writing left in ``folder``; those of live processes stay."""
    removed = []
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
        name, _, pid = tmp.name[1 : -len(".tmp")].rpartition(".")
        if name in names and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)
"""errno values of a write the machine refused: a full disk or quota, a read-only mount, no
permission, a file where a folder should be."""


def check_writable(folder: str | Path, what: str = "output folder") -> None:
    """Refuse, before any long work, a ``folder`` that could not be made or written to: a regular
    file in the way, no permission, a read-only mount. Creates nothing."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe.parent != probe:  # the nearest part that exists
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{what} {folder} cannot be made: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):  # also false on a read-only mount
        raise UserError(f"{what} {folder} is not writable ({probe}: no permission or read-only)")


def write_user_file(path: str | Path, write: Callable[[Path], object]) -> Path:
    """:func:`replace_atomically` for outputs a user asked for: a folder in the way, no
    permission or a full disk is a :class:`UserError` naming the file."""
    try:
        return replace_atomically(path, write)
    except OSError as err:
        raise UserError(f"{path}: cannot write ({err.strerror or err})") from None


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`write_user_file`)."""
    return write_user_file(path, lambda tmp: tmp.write_text(text))


def json_safe(obj):
    """NaN and infinities -> None, recursively, so ``json.dumps(..., allow_nan=False)`` accepts
    it (JSON has no NaN; a rate over no episodes is NaN in memory, ``null`` on disk)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
