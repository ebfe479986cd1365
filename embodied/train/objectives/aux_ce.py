"""``aux_ce``: a control of the mirror comparison. E's alignment tap feeds a linear instruction
classifier trained with cross-entropy, weighted as the alignment is:
``L = mirror.lambda_ee * L_EE + mirror.weight * CE(W f_e, instruction)``. No recognizer: if this
matches the joint run, an auxiliary loss carrying the instruction label explains the mirror's
gain, not what a recognizer learned from watching.

The ``mirror`` section gives the weights (``weight``, ``lambda_ee``) and the classifier's
learning rate (``lr``, as the mirror head's maps train), so that the two differ in the partner
only; its ``dim``, ``temperature`` and ``positives`` are not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from embodied import keys as K
from embodied.mirror import MirrorConfig
from embodied.train.models import Part, build_model, register_part
from embodied.train.objective import Objective, prefixed, register
from embodied.train.objectives.parts import fresh_policy


class InstructionClassifier(nn.Module):
    """``W: D_e -> num_instructions``, holding the config section that weights its loss."""

    def __init__(self, config: MirrorConfig, dim_e: int, num_instructions: int) -> None:
        super().__init__()
        self.config = config
        self.linear = nn.Linear(dim_e, num_instructions)

    def forward(self, f_e: torch.Tensor) -> torch.Tensor:
        return self.linear(f_e)  # (B, D_e) -> (B, num_instructions)


register_part(
    "classifier",
    Part(
        MirrorConfig,  # the section it was weighted and trained with, kept in its checkpoint entry
        lambda config, spec, dims: InstructionClassifier(config, *dims),
        lambda model: [model.linear.in_features, model.linear.out_features],
    ),
)


@register
class AuxCEObjective(Objective):
    name = "aux_ce"
    summary = "control: E's tap with a linear instruction classifier (cross-entropy), no recognizer"
    sections = ("policy", "mirror")
    data = "window"
    trains = frozenset({"policy", "classifier"})
    provides = frozenset({"policy"})

    def build_models(self, cfg, spec, stats, sources):
        models, made_with = {}, {}
        fresh_policy(cfg, spec, stats, models, made_with)
        dims = [models["policy"].feature_dim, spec.num_instructions]
        models["classifier"] = build_model("classifier", cfg.mirror, spec, dims)
        made_with["classifier"] = (cfg.mirror, spec)
        return models, made_with

    def learning_rates(self, cfg):
        return {"classifier": cfg.mirror.lr}

    def loss(self, models, batch):
        loss_e, part_e, f_e = models["policy"].loss_and_features(batch)  # (B, D_e)
        classifier = models["classifier"]
        logits = classifier(f_e.float())  # (B, num_instructions)
        target = batch[K.INSTRUCTION]  # (B,)
        ce = F.cross_entropy(logits, target)
        accuracy = (logits.argmax(-1) == target).float().mean()
        weights = classifier.config  # as the joint run weights L_EE and L_align
        loss = weights.lambda_ee * loss_e + weights.weight * ce
        metrics = prefixed("policy", part_e) | {"aux/ce": ce.item(), "aux/accuracy": accuracy.item()}
        return loss, metrics, None
