"""``joint_selfsup``: the joint run without the recognizer's own loss. U learns only through the
alignment, so no label reaches E through U: ``L = mirror.lambda_ee * L_EE + mirror.weight *
L_align``. With episode positives (the bench's ``episode_selfsup`` control) no instruction or
class label enters the alignment at all."""

from __future__ import annotations

from embodied import keys as K
from embodied.train.objective import register
from embodied.train.objectives.joint import JointObjective
from embodied.train.objectives.parts import policy_aligned_to


@register
class JointSelfSupervisedObjective(JointObjective):
    """The joint run's models, batches and checkpoints; only the loss differs."""

    name = "joint_selfsup"
    summary = "control: E and U with the mirror head, U without its own (label) loss"

    def loss(self, models, batch):
        f_u = models["recognizer"].features(batch[K.VIDEO])  # (B, D_u), with gradients: U learns here
        return policy_aligned_to(models, batch, f_u)
