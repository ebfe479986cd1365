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
from embodied.train.objective import Objective, prefixed, register
from embodied.train.objectives.parts import as_trained, frozen_model, mirror_head, read_sources


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
        """Windows and clips as the probed models were trained on them."""
        sources = read_sources(cfg, ("policy", "recognizer"))
        return dataclasses.replace(cfg, data=as_trained(cfg.data, sources)), sources

    def vocabulary(self, sources):
        return DataSpec.from_json(json.loads(sources["policy"]["spec"]))

    def build_models(self, cfg, spec, stats, sources):
        models, made_with = {}, {}
        pretrained = cfg.probe.init == "checkpoint"
        for name, entry in sources.items():
            model = frozen_model(name, entry, pretrained, models, made_with)
            if name == "policy":
                mcfg, mspec = made_with[name]
                ckpt.check_spec(
                    mspec,
                    spec,
                    f"the probed policy ({cfg.probe.policy_ckpt})",
                    keys=mcfg.obs_keys,
                    fields=("action_dim", "obs_horizon", "action_horizon"),
                )
                if not pretrained:
                    model.fit_normalization(stats)
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
