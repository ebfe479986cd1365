"""BC-Transformer: a causal transformer over the observation history (robomimic's ``BC_Transformer``).

Each step's features become one token; a causal mask lets a token attend to the past only, and
the last token (the current step) feeds the head.
"""

from __future__ import annotations

import torch
from torch import nn

from embodied.policies.base import Policy
from embodied.policies.config import POLICIES, BCTransformerConfig


class TransformerTrunk(nn.Module):
    def __init__(
        self, in_dim: int, hidden_dim: int, layers: int, heads: int, dropout: float, steps: int
    ) -> None:
        super().__init__()
        self.project = nn.Linear(in_dim, hidden_dim)
        self.position = nn.Parameter(torch.randn(1, steps, hidden_dim) * 0.02)  # learned, as GPT-2
        block = nn.TransformerEncoderLayer(
            hidden_dim,
            heads,
            dim_feedforward=4 * hidden_dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,  # pre-norm trains more stably without warm-up tricks
        )
        # enable_nested_tensor only applies to post-norm blocks; off to keep torch quiet.
        self.encoder = nn.TransformerEncoder(
            block, layers, norm=nn.LayerNorm(hidden_dim), enable_nested_tensor=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        h = self.project(x) + self.position[:, :t]  # (B, T, D) -> (B, T, hidden)
        causal = nn.Transformer.generate_square_subsequent_mask(
            t, device=x.device
        )  # (T, T), -inf above the diagonal
        h = self.encoder(h, mask=causal, is_causal=True)  # (B, T, hidden)
        return h[:, -1]  # (B, hidden): the current step's token


@POLICIES.register("bc_transformer", BCTransformerConfig)
class BCTransformer(Policy):
    def build_trunk(self, in_dim: int) -> nn.Module:
        c = self.config
        return TransformerTrunk(in_dim, c.hidden_dim, c.num_layers, c.num_heads, c.dropout, self.obs_steps)
