"""``joint_selfsup``: the joint run without the recognizer's own loss. U learns only through the
alignment, so no label reaches E through U: ``L = mirror.lambda_ee * L_EE + mirror.weight *
L_align``. With episode positives (the bench's ``episode_selfsup`` control) no instruction or
class label enters the alignment at all."""

from __future__ import annotations

from embodied import keys as K
from embodied.train.objective import Objective, prefixed, register
from embodied.train.objectives.parts import fresh_policy, fresh_recognizer, mirror_head


@register
class JointSelfSupervisedObjective(Objective):
    name = "joint_selfsup"
    summary = "control: E and U with the mirror head, U without its own (label) loss"
    sections = ("policy", "recognizer", "mirror")
    data = "paired"
    trains = frozenset({"policy", "recognizer", "mirror"})
    provides = frozenset({"policy", "recognizer"})
    contrastive = True

    def build_models(self, cfg, spec, stats, sources):
        models, made_with = {}, {}
        fresh_policy(cfg, spec, stats, models, made_with)
        fresh_recognizer(cfg, spec, models, made_with)
        dims = (models["recognizer"].feature_dim, models["policy"].feature_dim)
        mirror_head(cfg, spec, *dims, models, made_with)
        return models, made_with

    def loss(self, models, batch):
        f_u = models["recognizer"].features(batch[K.VIDEO])  # (B, D_u), with gradients
        loss_e, part_e, f_e = models["policy"].loss_and_features(batch)  # (B, D_e)
        mirror = models["mirror"]
        loss_a, part_a = mirror(
            f_u.float(), f_e.float(), batch[K.EPISODE], batch[K.INSTRUCTION], batch[K.LABEL]
        )
        weights = mirror.config
        loss = weights.lambda_ee * loss_e + weights.weight * loss_a
        return loss, prefixed("policy", part_e) | prefixed("mirror", part_a), (f_u.detach(), f_e.detach())
