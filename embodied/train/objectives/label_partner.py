"""``label_partner``: a control of the mirror comparison. E's tap is aligned through the same
mirror head and InfoNCE as in ``joint``, but its partner is a learned embedding of the
instruction id instead of a recognizer's feature of the clip:
``L = mirror.lambda_ee * L_EE + mirror.weight * InfoNCE(T_u(emb[instruction]), T_e(f_e))``.
If this matches the joint run, alignment with what a recognizer learned is not what helps;
the instruction label carried by the loss is."""

from __future__ import annotations

from torch import nn

from embodied import keys as K
from embodied.mirror import MirrorConfig
from embodied.train.models import Part, build_model, register_part
from embodied.train.objective import Objective, register
from embodied.train.objectives.parts import fresh_policy, mirror_head, policy_aligned_to

register_part(
    "label_embedding",
    Part(
        MirrorConfig,  # the section it trains with, kept in its checkpoint entry
        lambda config, spec, dims: nn.Embedding(*dims),
        lambda model: [model.num_embeddings, model.embedding_dim],
    ),
)


@register
class LabelPartnerObjective(Objective):
    name = "label_partner"
    summary = "control: E aligned through the mirror head to a learned embedding of the instruction id"
    sections = ("policy", "mirror")
    data = "window"
    trains = frozenset({"policy", "label_embedding", "mirror"})
    provides = frozenset({"policy"})
    contrastive = True

    def build_models(self, cfg, spec, stats, sources):
        models, made_with = {}, {}
        fresh_policy(cfg, spec, stats, models, made_with)
        # one row per instruction, as wide as the shared space: T_u maps it as it maps U's feature
        dims = [spec.num_instructions, cfg.mirror.dim]
        models["label_embedding"] = build_model("label_embedding", cfg.mirror, spec, dims)
        made_with["label_embedding"] = (cfg.mirror, spec)
        mirror_head(cfg, spec, cfg.mirror.dim, models["policy"].feature_dim, models, made_with)
        return models, made_with

    def learning_rates(self, cfg):
        return {"mirror": cfg.mirror.lr, "label_embedding": cfg.mirror.lr}

    def loss(self, models, batch):
        f_u = models["label_embedding"](batch[K.INSTRUCTION])  # (B,) -> (B, mirror.dim)
        return policy_aligned_to(models, batch, f_u)
