"""The one model factory: every part a run trains or loads (policy, recognizer, mirror head, and
the parts an objective adds), built fresh or rebuilt from a checkpoint's entry.

A part is registered with its config class and a builder ``(config, spec, dims) -> nn.Module``;
``dims`` are the sizes a part takes from the others (the mirror head's ``[dim_u, dim_e]``),
stored beside its config so a checkpoint rebuilds it alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from embodied.config import from_dict, to_dict
from embodied.data.spec import DataSpec
from embodied.mirror import MirrorConfig, MirrorHead
from embodied.policies import PolicyConfig, build_policy
from embodied.recognizers import RecognizerConfig, build_recognizer


@dataclass(frozen=True)
class Part:
    config_class: type
    build: Callable[[object, DataSpec, list[int]], nn.Module]
    dims: Callable[[nn.Module], list[int]] = lambda model: []
    """The ``dims`` a built part was made with, read back off it (for its checkpoint entry)."""


PARTS: dict[str, Part] = {
    "policy": Part(PolicyConfig, lambda config, spec, dims: build_policy(config, spec)),
    "recognizer": Part(RecognizerConfig, lambda config, spec, dims: build_recognizer(config, spec)),
    "mirror": Part(
        MirrorConfig,
        lambda config, spec, dims: MirrorHead(config, *dims),
        lambda model: [model.dim_u, model.dim_e],
    ),
}
"""Every part by the name a checkpoint stores it under."""


def register_part(name: str, part: Part) -> None:
    """Add a part an objective builds (its module registers it beside the objective)."""
    if name in PARTS:
        raise ValueError(f"model part {name!r} is registered twice")
    PARTS[name] = part


def build_model(name: str, config, spec: DataSpec, dims: list[int] | None = None) -> nn.Module:
    """A fresh part ``name`` (policy, recognizer, mirror, ...); the mirror head needs [dim_u, dim_e]."""
    if name not in PARTS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(PARTS)}")
    return PARTS[name].build(config, spec, list(dims or []))


def model_entry(name: str, model: nn.Module, config, spec: DataSpec, state: dict | None = None) -> dict:
    """What a checkpoint stores of one part: its config, spec, sizes and weights."""
    state = model.state_dict() if state is None else state
    return {
        "config": json.dumps(to_dict(config)),
        "spec": json.dumps(spec.to_json()),
        "dims": PARTS[name].dims(model),
        "state": {k: v.detach().cpu().clone() for k, v in state.items()},
    }


def rebuild(name: str, entry: dict, weights: bool = True) -> tuple[nn.Module, object, DataSpec]:
    """(model, config, spec) from a checkpoint entry; with its stored weights unless ``weights`` is False."""
    if name not in PARTS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(PARTS)}")
    config = from_dict(PARTS[name].config_class, json.loads(entry["config"]), f"checkpoint {name} config")
    spec = DataSpec.from_json(json.loads(entry["spec"]))
    model = build_model(name, config, spec, list(entry["dims"]))
    if weights:
        model.load_state_dict(entry["state"])
    return model, config, spec
