"""Building blocks the objectives share: the fresh policy, recognizer and mirror head of a run."""

from __future__ import annotations

from torch import nn

from embodied.models.common import DataSpec
from embodied.train.models import build_model


def fresh_policy(cfg, spec: DataSpec, stats: dict, models: dict, made_with: dict) -> None:
    """A new policy from ``cfg.policy``, its normalisation fitted on the train split's ``stats``."""
    models["policy"] = build_model("policy", cfg.policy, spec)
    models["policy"].fit_normalization(stats)
    made_with["policy"] = (cfg.policy, spec)


def fresh_recognizer(cfg, spec: DataSpec, models: dict, made_with: dict) -> None:
    models["recognizer"] = build_model("recognizer", cfg.recognizer, spec)
    made_with["recognizer"] = (cfg.recognizer, spec)


def mirror_head(cfg, spec: DataSpec, dim_u: int, dim_e: int, models: dict, made_with: dict) -> nn.Module:
    """The mirror head from ``cfg.mirror``: ``T_u: dim_u -> mirror.dim``, ``T_e: dim_e -> mirror.dim``."""
    models["mirror"] = build_model("mirror", cfg.mirror, spec, [dim_u, dim_e])
    made_with["mirror"] = (cfg.mirror, spec)
    return models["mirror"]
