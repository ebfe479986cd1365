"""Where the declarative resources live, in a checkout or in an installed wheel.

In a checkout (or an editable install) ``envs/``, ``configs/`` and ``datasets/`` sit beside
the package; a wheel carries copies under ``embodied/_resources/`` (see pyproject.toml).
"""

from __future__ import annotations

from pathlib import Path

from embodied.errors import UserError, did_you_mean

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def resource_dir(name: str) -> Path:
    """The folder ``envs``, ``configs`` or ``datasets/recipes`` wherever it was installed."""
    for root in (_PACKAGE / "_resources", _CHECKOUT):
        path = root / name
        if path.is_dir():
            return path
    raise FileNotFoundError(f"resource folder {name!r} not found beside the package or in its wheel")


def resolve_resource(path: str | Path, folder: str, suffix: str = ".yaml") -> Path:
    """Resolve a user-given file: as given if it exists, else as a name inside ``folder``.

    ``quick`` and ``quick.yaml`` both find ``<folder>/quick.yaml``, so commands accept bare
    recipe and config names as well as paths.
    """
    path = Path(path)
    if path.exists():
        return path
    base = resource_dir(folder)
    for candidate in (base / path, base / path.with_suffix(suffix), base / (path.name + suffix)):
        if candidate.is_file():
            return candidate
    known = did_you_mean(path.stem, resource_names(folder, suffix), "names there")
    raise UserError(f"{path}: not found, as a file or as a name in {folder}/ ({known})")


def resource_names(folder: str, suffix: str = ".yaml") -> list[str]:
    """The names a command accepts for ``folder`` (``configs``: ``policy_quick``, ...), sorted."""
    return sorted(p.stem for p in resource_dir(folder).glob(f"*{suffix}"))


def checkpoint_path(path: str | Path, name: str = "last.pt") -> Path:
    """A .pt file as given, or ``<run folder>/checkpoints/<name>``. Here, with no torch, so that
    the commands can say a checkpoint is missing before they import torch."""
    path = Path(path)
    return path / "checkpoints" / name if path.is_dir() else path
