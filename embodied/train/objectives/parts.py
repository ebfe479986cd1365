"""Building blocks the objectives share: the fresh policy, recognizer and mirror head of a run,
and the frozen models read from other runs' checkpoints."""

from __future__ import annotations

import dataclasses
import json

from torch import nn

from embodied import keys as K
from embodied.data.spec import DataSpec
from embodied.train import checkpoint as ckpt
from embodied.train.models import build_model, rebuild
from embodied.train.objective import prefixed


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


def read_sources(cfg, names) -> dict[str, dict]:
    """The checkpoint entry of each frozen model ``names`` (``probe.<name>_ckpt``), with the
    config of the run that trained it under ``run``."""
    sources = {}
    for name in names:
        path = getattr(cfg.probe, f"{name}_ckpt")
        payload = ckpt.read_checkpoint(path)
        entry = ckpt.source_entry(payload, path, name)
        sources[name] = entry | {"run": ckpt.checkpoint_config(payload, path)}
    return sources


def as_trained(data, sources: dict[str, dict]):
    """``data`` (a DataConfig) reading windows and clips as the frozen models were trained on them:
    To, Ta and the keys from the policy's data, the clip length, stride and camera from the
    recognizer's."""
    if "policy" in sources:
        pspec = DataSpec.from_json(json.loads(sources["policy"]["spec"]))
        data = dataclasses.replace(
            data,
            obs_keys=list(json.loads(sources["policy"]["config"])["obs_keys"]),
            obs_horizon=pspec.obs_horizon,
            action_horizon=pspec.action_horizon,
        )
    if "recognizer" in sources:
        rspec = DataSpec.from_json(json.loads(sources["recognizer"]["spec"]))
        rdata = sources["recognizer"]["run"].data
        data = dataclasses.replace(
            data, clip_len=rspec.clip_len, clip_stride=rdata.clip_stride, camera=rdata.camera
        )
    return data


def frozen_model(name: str, entry: dict, pretrained: bool, models: dict, made_with: dict) -> nn.Module:
    """A frozen model from its checkpoint entry: its trained weights, or (``pretrained`` False)
    its architecture randomly initialised; no gradients."""
    model, mcfg, mspec = rebuild(name, entry, weights=pretrained)
    model.requires_grad_(False)
    models[name], made_with[name] = model, (mcfg, mspec)
    return model


def policy_aligned_to(models, batch: dict, f_u):
    """The policy's loss plus the alignment of its tap with partner features ``f_u`` (B, D_u):
    ``L = mirror.lambda_ee * L_EE + mirror.weight * L_align``, its metrics and the features, for
    the objectives whose partner is not a recognizer trained on its own loss."""
    loss_e, part_e, f_e = models["policy"].loss_and_features(batch)  # (B, D_e)
    mirror = models["mirror"]
    loss_a, part_a = mirror(f_u.float(), f_e.float(), batch[K.EPISODE], batch[K.INSTRUCTION], batch[K.LABEL])
    weights = mirror.config
    loss = weights.lambda_ee * loss_e + weights.weight * loss_a
    return loss, prefixed("policy", part_e) | prefixed("mirror", part_a), (f_u.detach(), f_e.detach())
