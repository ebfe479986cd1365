"""BC-MLP: behaviour cloning from the current observation only (robomimic's ``BC``)."""

from __future__ import annotations

import torch
from torch import nn

from embodied.policies.base import Policy
from embodied.policies.config import POLICIES, BCMLPConfig


class MLPTrunk(nn.Module):
    """The last step of the window through ``layers`` x (Linear, ReLU, Dropout)."""

    def __init__(self, in_dim: int, hidden_dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        for i in range(layers):
            modules += [
                nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim),
                nn.ReLU(),
                nn.Dropout(dropout),
            ]
        self.net = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x[:, -1])  # (B, T, D) -> (B, D): the current observation -> (B, hidden)


@POLICIES.register("bc_mlp", BCMLPConfig)
class BCMLP(Policy):
    def build_trunk(self, in_dim: int) -> nn.Module:
        c = self.config
        return MLPTrunk(in_dim, c.hidden_dim, c.num_layers, c.dropout)
