"""``probe``: the paper's "spontaneous alignment". The policy and the recognizer are loaded frozen
from checkpoints (``probe.*_ckpt``), or, with ``probe.init=random``, their architectures are
randomly initialised (the control); only the mirror head's T_u, T_e train, and the alignment is
read as Recall@k on the validation pairs."""

from __future__ import annotations

import dataclasses
import json

import torch

from embodied import keys as K
from embodied.models.common import DataSpec
from embodied.train import checkpoint as ckpt
from embodied.train.models import rebuild
from embodied.train.objective import Objective, prefixed, register
from embodied.train.objectives.parts import mirror_head


@register
class ProbeObjective(Objective):
    name = "probe"
    summary = "frozen E and U from checkpoints (or random init); only the mirror head's maps train"
    sections = ("mirror", "probe")
    data = "paired"
    trains = frozenset({"mirror"})
    frozen = frozenset({"policy", "recognizer"})
    provides = frozenset({"policy", "recognizer"})
    contrastive = True

    def resolve(self, cfg):
        """Windows and clips as the probed models were trained on them: To and Ta from the
        policy's data, the clip length, stride and camera from the recognizer's."""
        sources: dict[str, dict] = {}
        for name, path in (("policy", cfg.probe.policy_ckpt), ("recognizer", cfg.probe.recognizer_ckpt)):
            payload = ckpt.read_checkpoint(path)
            entry = ckpt.source_entry(payload, path, name)
            sources[name] = entry | {"run": ckpt.checkpoint_config(payload, path)}
        pspec = DataSpec.from_json(json.loads(sources["policy"]["spec"]))
        rspec = DataSpec.from_json(json.loads(sources["recognizer"]["spec"]))
        rdata = sources["recognizer"]["run"].data
        data = dataclasses.replace(
            cfg.data,
            obs_keys=list(json.loads(sources["policy"]["config"])["obs_keys"]),
            obs_horizon=pspec.obs_horizon,
            action_horizon=pspec.action_horizon,
            clip_len=rspec.clip_len,
            clip_stride=rdata.clip_stride,
            camera=rdata.camera,
        )
        return dataclasses.replace(cfg, data=data), sources

    def vocabulary(self, sources):
        return DataSpec.from_json(json.loads(sources["policy"]["spec"]))

    def build_models(self, cfg, spec, stats, sources):
        models, made_with = {}, {}
        pretrained = cfg.probe.init == "checkpoint"
        for name, entry in sources.items():
            model, mcfg, mspec = rebuild(name, entry, weights=pretrained)
            if name == "policy":
                ckpt.check_spec(
                    mspec,
                    spec,
                    f"the probed policy ({cfg.probe.policy_ckpt})",
                    keys=mcfg.obs_keys,
                    fields=("action_dim", "obs_horizon", "action_horizon"),
                )
                if not pretrained:
                    model.fit_normalization(stats)
            model.requires_grad_(False)
            models[name], made_with[name] = model, (mcfg, mspec)
        dims = (models["recognizer"].feature_dim, models["policy"].feature_dim)
        mirror_head(cfg, spec, *dims, models, made_with)
        return models, made_with

    def loss(self, models, batch):
        with torch.no_grad():
            f_u = models["recognizer"].features(batch[K.VIDEO])  # (B, D_u)
            f_e = models["policy"].features(batch)  # (B, D_e)
        loss, part = models["mirror"](
            f_u.float(), f_e.float(), batch[K.EPISODE], batch[K.INSTRUCTION], batch[K.LABEL]
        )
        return loss, prefixed("mirror", part), (f_u.detach(), f_e.detach())
