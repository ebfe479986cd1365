"""``frozen_u``: a control of the mirror comparison, learning from an observer that already
understands. The recognizer is a finished recognizer run's (``probe.recognizer_ckpt``), frozen;
the policy trains on its own loss plus the alignment of its features with the frozen
recognizer's: ``L = mirror.lambda_ee * L_EE + mirror.weight * L_align``. Against ``joint``: does
the gain need the two to learn together, or only a recognizer to align with?"""

from __future__ import annotations

import dataclasses
import json

import torch

from embodied import keys as K
from embodied.data.spec import DataSpec
from embodied.train.objective import Objective, register
from embodied.train.objectives.parts import (
    as_trained,
    fresh_policy,
    frozen_model,
    mirror_head,
    policy_aligned_to,
    read_sources,
)


@register
class FrozenUObjective(Objective):
    name = "frozen_u"
    summary = "control: E aligned to a recognizer trained alone before (probe.recognizer_ckpt), frozen"
    sections = ("policy", "mirror", "probe")
    data = "paired"
    trains = frozenset({"policy", "mirror"})
    frozen = frozenset({"recognizer"})
    provides = frozenset({"policy"})
    contrastive = True

    def resolve(self, cfg):
        """Clips as the frozen recognizer was trained on them; the policy's window is its own."""
        cfg, _ = super().resolve(cfg)
        sources = read_sources(cfg, ("recognizer",))
        return dataclasses.replace(cfg, data=as_trained(cfg.data, sources)), sources

    def vocabulary(self, sources):
        """The recognizer's classes and instructions: its heads index them."""
        return DataSpec.from_json(json.loads(sources["recognizer"]["spec"]))

    def build_models(self, cfg, spec, stats, sources):
        models, made_with = {}, {}
        fresh_policy(cfg, spec, stats, models, made_with)
        frozen_model("recognizer", sources["recognizer"], cfg.probe.init == "checkpoint", models, made_with)
        dims = (models["recognizer"].feature_dim, models["policy"].feature_dim)
        mirror_head(cfg, spec, *dims, models, made_with)
        return models, made_with

    def loss(self, models, batch):
        with torch.no_grad():
            f_u = models["recognizer"].features(batch[K.VIDEO])  # (B, D_u)
        return policy_aligned_to(models, batch, f_u)
