"""Typed configs: dataclasses loaded from YAML with dotted command-line overrides.

    cfg = load_config(TrainConfig, "configs/bc_mlp.yaml", ["optim.lr=3e-4", "policy.name=bc_rnn"])

- Every field is checked against its annotation; an unknown key is an error that lists the
  valid ones, a value of the wrong type names the field, the type and the value.
- A field whose type is a registry base class (see :class:`Registry`) is polymorphic: its
  ``name`` picks the registered dataclass, whose own fields are then checked.
- Field documentation is the string literal written under the field (as cleanrl and tyro
  read it); :func:`describe` prints every field for ``--help``.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

from embodied.errors import UserError, close_names, did_you_mean

T = TypeVar("T")
_NONE: Mapping[str, str] = types.MappingProxyType({})


class Registry:
    """Names -> (config dataclass, builder). One registry per kind of model.

    Its two halves register apart: a package's config module (no torch) names each config
    dataclass (:meth:`config`), so that configs are read and ``--help`` lists every variant
    without importing the models; each model module then registers its builder under the same
    name (:meth:`register`)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.configs: dict[str, type] = {}
        self.builders: dict[str, Any] = {}

    def config(self, name: str):
        """Class decorator for a config dataclass: ``@POLICIES.config("bc_mlp")``."""

        def wrap(config_cls: type) -> type:
            if name in self.configs:
                raise ValueError(f"{self.kind} config {name!r} registered twice")
            self.configs[name] = config_cls
            return config_cls

        return wrap

    def register(self, name: str, config_cls: type):
        """Class decorator for a model: ``@POLICIES.register("bc_mlp", BCMLPConfig)``; a config
        not named yet is named here."""

        def wrap(builder):
            if name in self.builders:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            if self.configs.setdefault(name, config_cls) is not config_cls:
                raise ValueError(f"{self.kind} {name!r}: its config is {self.configs[name].__name__}")
            self.builders[name] = builder
            return builder

        return wrap

    def config_class(self, name: str) -> type:
        if name not in self.configs:
            raise UserError(
                f"unknown {self.kind} {name!r}; {did_you_mean(name, sorted(self.configs), 'registered')}"
            )
        return self.configs[name]

    def build(self, config, *args, **kwargs):
        return self.builders[config.name](config, *args, **kwargs)


# A base config class opts into polymorphism by setting ``registry = SOME_REGISTRY`` as a
# ClassVar; its ``name`` field then picks the subclass.


def _registry_of(cls) -> Registry | None:
    return getattr(cls, "registry", None) if isinstance(cls, type) else None


# --------------------------------------------------------------------------- loading
def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as err:
        raise UserError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: a config must be a mapping of keys to values")
    return raw


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override {item!r} is not of the form key.sub=value")
        key, value = item.split("=", 1)
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = parsed
    return raw


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] = ()) -> T:
    raw = load_yaml(path) if path else {}
    apply_overrides(raw, list(overrides))
    where = str(path) if path else "config"
    return from_dict(cls, raw, where, given=overridden(overrides))


def overridden(overrides: list[str]) -> dict[str, str]:
    """Dotted key -> the command line's override of it, for errors to blame the command line."""
    return {item.split("=", 1)[0].strip(): item for item in overrides if "=" in item}


def _origin(where: str, key: str, given: Mapping[str, str]) -> str:
    """What set ``key``: the command line's override of it or of a section above it, else ``where``
    (the YAML file), so that a typo on the command line is not blamed on the file."""
    for k, item in given.items():
        if key == k or key.startswith((k + ".", k + "[")):
            return f"command line {item!r}"
    return where


def from_dict(
    cls: type[T], raw: dict, where: str = "config", prefix: str = "", *, given: Mapping[str, str] = _NONE
) -> T:
    """Build dataclass ``cls`` from a dict, checking every key and value. ``given``: the keys the
    command line set (:func:`overridden`), whose errors name the command line, not ``where``."""
    if not isinstance(raw, dict):
        raise UserError(
            f"{_origin(where, prefix[:-1], given)}: {prefix or 'config'} must be a mapping, got {raw!r}"
        )
    registry = _registry_of(cls)
    if registry is not None:
        name = raw.get("name")
        if name is None:
            raise UserError(
                f"{where}: {prefix}name is required; one of {', '.join(sorted(registry.configs))}"
            )
        try:
            cls = registry.config_class(name)
        except UserError as err:
            raise UserError(f"{_origin(where, prefix + 'name', given)}: {prefix}name: {err}") from None
    upgrade = getattr(cls, "upgrade_raw", None)  # keys a class has moved since older files were written
    if upgrade is not None:
        raw = upgrade(raw, where)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        scope = f" of {prefix[:-1]}" if prefix else ""
        close = close_names(unknown[0], fields)
        hint = (
            f"did you mean {' or '.join(repr(prefix + c) for c in close)}?"
            if close
            else f"valid keys{scope}: {', '.join(fields)}"
        )
        raise UserError(
            f"{_origin(where, prefix + unknown[0], given)}: unknown key {prefix + unknown[0]!r}; {hint}"
        )
    for k, v in raw.items():  # `head.modes=3` alone keeps the default head's name
        default = _default(fields[k])
        if isinstance(v, dict) and "name" not in v and _registry_of(type(default)) is not None:
            raw[k] = {"name": default.name, **v}
    kwargs = {k: _convert(hints[k], v, where, f"{prefix}{k}", given) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        mine = [item for k, item in given.items() if k.startswith(prefix)]
        context = f"{where} with the command line's {', '.join(mine)}" if mine else where
        raise UserError(f"{context}: {prefix[:-1] or 'config'}: {err}") from None


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _convert(tp, value, where: str, key: str, given: Mapping[str, str] = _NONE):
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where, key, given)
            except UserError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            close = close_names(value, args) if isinstance(value, str) else []
            hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
            choices = ", ".join(map(repr, args))
            raise UserError(
                f"{_origin(where, key, given)}: {key} must be one of {choices}, got {value!r}{hint}"
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]  # a scalar where a list is expected means a list of one
        inner = args[0] if args else Any
        items = [_convert(inner, v, where, f"{key}[{i}]", given) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{_origin(where, key, given)}: {key} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value if value is not None else {}, where, f"{key}.", given=given)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # YAML's .nan and .inf: no setting means either
                raise UserError(f"{_origin(where, key, given)}: {key} must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
    else:
        return value
    raise UserError(
        f"{_origin(where, key, given)}: {key} must be {getattr(tp, '__name__', tp)}, got {value!r}"
    )


@functools.cache
def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


# --------------------------------------------------------------------------- saving
def to_dict(cfg) -> dict:
    """A plain, JSON- and YAML-safe dict of a config (paths as strings, tuples as lists)."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return plain(cfg)


# --------------------------------------------------------------------------- help
@functools.cache
def field_docs(cls) -> dict[str, str]:
    """The docstring under each field of a dataclass and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for stmt, nxt in zip(body, body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[stmt.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe(
    cls, prefix: str = "", _expanded: dict[str, str] | None = None, _under: str = "the first listing"
) -> list[str]:
    """One line per field, nested configs expanded; registries list every registered variant,
    once per key (``policy.head`` under each policy refers back to the first listing).
    ``_expanded``: registry key -> the variant it was listed under; ``_under``: the variant
    being listed now."""
    expanded = {} if _expanded is None else _expanded
    lines: list[str] = []
    hints = _hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        sub = _dataclass_in(tp)
        if sub is not None:
            registry = _registry_of(sub)
            if registry is not None:
                key = f"{prefix}{f.name}"
                lines.append(f"{key}: {docs.get(f.name, '')} One of: {', '.join(sorted(registry.configs))}")
                if key in expanded:
                    lines.append(f"  (its settings: as listed under {expanded[key]} above)")
                    continue
                expanded[key] = _under
                for name, variant in sorted(registry.configs.items()):
                    lines.append(f"  [{key}.name={name}]")
                    nested = describe(variant, f"{key}.", expanded, f"[{key}.name={name}]")
                    lines += ["  " + line for line in nested]
            else:
                lines += describe(sub, f"{prefix}{f.name}.", expanded, _under)
            continue
        default = (
            f.default
            if f.default is not dataclasses.MISSING
            else (f.default_factory() if f.default_factory is not dataclasses.MISSING else "required")
        )
        lines.append(f"{prefix}{f.name} ({_type_name(tp)}, default {default!r}): {docs.get(f.name, '')}")
    return lines


def _dataclass_in(tp):
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _type_name(tp) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(map(repr, get_args(tp)))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
