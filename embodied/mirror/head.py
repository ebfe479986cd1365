"""The mirror head: two linear maps into a shared space and the alignment loss over it.

    head = MirrorHead(MirrorConfig(), dim_u=recognizer_dim, dim_e=policy_dim)
    loss, metrics = head(f_u, f_e, batch["episode_id"], batch["instruction_id"], batch["label"])
    total = loss_u + loss_e + head.config.weight * loss  # L_AU + L_EE + lambda_align * L_align

``f_u`` (B, D_u) are the recognizer's features of the observation clips and ``f_e`` (B, D_e)
the policy's features of the execution windows, row i of each from the same episode.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from embodied.mirror.config import TEMPERATURE_MAX, TEMPERATURE_MIN, MirrorConfig
from embodied.mirror.loss import contrastive_rows, info_nce, positive_mask
from embodied.mirror.metrics import positive_negative_cosine, recall_at_k


class MirrorHead(nn.Module):
    """``T_u: D_u -> dim``, ``T_e: D_e -> dim`` and the symmetric InfoNCE between them."""

    def __init__(self, config: MirrorConfig, dim_u: int, dim_e: int) -> None:
        super().__init__()
        if dim_u < 1 or dim_e < 1:
            raise ValueError(f"feature widths must be positive, got dim_u={dim_u}, dim_e={dim_e}")
        self.config = config
        self.dim_u = dim_u
        self.dim_e = dim_e
        self.T_u = nn.Linear(dim_u, config.dim)
        self.T_e = nn.Linear(dim_e, config.dim)
        if config.learnable_temperature:
            self.log_temperature = nn.Parameter(torch.tensor(math.log(config.temperature)))

    @property
    def temperature(self) -> torch.Tensor | float:
        """tau: the config's constant, or the clamped learned value (a scalar tensor)."""
        if not self.config.learnable_temperature:
            return self.config.temperature
        # Clamped in the forward pass (CLIP clamps the parameter after each step instead); out
        # of range the gradient is zero, so tau rests at the bound.
        log_tau = self.log_temperature.clamp(math.log(TEMPERATURE_MIN), math.log(TEMPERATURE_MAX))
        return log_tau.exp()

    def embed(self, f_u: torch.Tensor, f_e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D_u), (B, D_e) -> z_u, z_e (B, dim), before L2 normalisation (as CLIP's encoders).

        The loss and every function of :mod:`embodied.mirror.metrics` normalise themselves.
        """
        if f_u.dim() != 2 or f_u.shape[1] != self.dim_u:
            raise ValueError(f"f_u must be (B, {self.dim_u}), got {tuple(f_u.shape)}")
        if f_e.dim() != 2 or f_e.shape[1] != self.dim_e:
            raise ValueError(f"f_e must be (B, {self.dim_e}), got {tuple(f_e.shape)}")
        return self.T_u(f_u), self.T_e(f_e)

    def forward(
        self,
        f_u: torch.Tensor,
        f_e: torch.Tensor,
        episode_id: torch.Tensor | None,
        instruction_id: torch.Tensor | None,
        label: torch.Tensor | None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The unweighted alignment loss and metrics; the caller multiplies by ``config.weight``.

        Metrics: ``loss``; ``temperature``; ``recall@1_u2e`` and ``recall@1_e2u`` (logged as
        ``mirror/recall@1_*``, batch Recall@1), retrieval of the partner of the same row among
        the batch (the paper's alignment measure);
        ``cos_pos`` and ``cos_neg``, mean cosine of positive and negative pairs at the configured
        level (NaN when the batch has no negative pair); ``no_negatives``, 1.0 when no row had a
        negative so the loss is 0 and teaches nothing (e.g. one task at the class level).
        """
        z_u, z_e = self.embed(f_u, f_e)  # (B, dim) each
        positives = positive_mask(self.config.positives, episode_id, instruction_id, label)  # (B, B)
        positives = positives.to(z_u.device)
        tau = self.temperature
        loss = info_nce(z_u, z_e, positives, tau)
        with torch.no_grad():
            recall = recall_at_k(z_u, z_e, ks=(1,))
            cos = positive_negative_cosine(z_u, z_e, positives)
            metrics = {
                "loss": loss.item(),
                "temperature": float(tau.item() if isinstance(tau, torch.Tensor) else tau),
                "recall@1_u2e": recall["u2e@1"],
                "recall@1_e2u": recall["e2u@1"],
                "cos_pos": cos["pos"],
                "cos_neg": cos["neg"],
                "no_negatives": float(not contrastive_rows(positives).any()),
            }
        return loss, metrics
