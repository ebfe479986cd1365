"""``joint``: the paper's method. E and U train together on paired batches, each on its own loss
plus the alignment of their features through the mirror head:
``L = L_AU + mirror.lambda_ee * L_EE + mirror.weight * L_align`` (paper: 1 and 0.5)."""

from __future__ import annotations

from embodied import keys as K
from embodied.train.objective import Objective, prefixed, register
from embodied.train.objectives.parts import fresh_policy, fresh_recognizer, mirror_head


@register
class JointObjective(Objective):
    name = "joint"
    summary = "E and U together with the mirror head: L_AU + lambda_EE L_EE + lambda_align L_align"
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
        out_u = models["recognizer"](batch[K.VIDEO], with_features=True)
        loss_u, part_u = models["recognizer"].loss(batch, outputs=out_u)
        loss_e, part_e, f_e = models["policy"].loss_and_features(batch)  # (B, D_e)
        f_u = out_u["features"]  # (B, D_u)
        mirror = models["mirror"]
        loss_a, part_a = mirror(
            f_u.float(), f_e.float(), batch[K.EPISODE], batch[K.INSTRUCTION], batch[K.LABEL]
        )
        metrics = prefixed("recognizer", part_u) | prefixed("policy", part_e) | prefixed("mirror", part_a)
        weights = mirror.config  # L = L_AU + lambda_EE * L_EE + lambda_align * L_align
        loss = loss_u + weights.lambda_ee * loss_e + weights.weight * loss_a
        return loss, metrics, (f_u.detach(), f_e.detach())
