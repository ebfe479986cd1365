"""``recognizer``: the recognizer U alone, on observation clips, with its own loss L_AU."""

from __future__ import annotations

from embodied.train.objective import Objective, prefixed, register
from embodied.train.objectives.parts import fresh_recognizer


@register
class RecognizerObjective(Objective):
    name = "recognizer"
    summary = "the recognizer U alone, on observation clips"
    sections = ("recognizer",)
    data = "clip"
    trains = frozenset({"recognizer"})
    provides = frozenset({"recognizer"})

    def build_models(self, cfg, spec, stats, sources):
        models, made_with = {}, {}
        fresh_recognizer(cfg, spec, models, made_with)
        return models, made_with

    def loss(self, models, batch):
        loss, part = models["recognizer"].loss(batch)
        return loss, prefixed("recognizer", part), None
