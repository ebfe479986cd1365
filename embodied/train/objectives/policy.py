"""``policy``: the policy E alone, on execution windows, with its own loss L_EE."""

from __future__ import annotations

from embodied.train.objective import Objective, prefixed, register
from embodied.train.objectives.parts import fresh_policy


@register
class PolicyObjective(Objective):
    name = "policy"
    summary = "the policy E alone, on execution windows"
    sections = ("policy",)
    data = "window"
    trains = frozenset({"policy"})
    provides = frozenset({"policy"})

    def build_models(self, cfg, spec, stats, sources):
        models, made_with = {}, {}
        fresh_policy(cfg, spec, stats, models, made_with)
        return models, made_with

    def loss(self, models, batch):
        loss, part = models["policy"].loss(batch)
        return loss, prefixed("policy", part), None
