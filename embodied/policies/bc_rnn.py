"""BC-RNN: an LSTM over the observation history (robomimic's ``BC_RNN``, Mandlekar et al. 2021).

robomimic carries the LSTM state through a rollout and restarts it every ``horizon`` steps;
here the LSTM re-reads the sliding window of the last ``history`` observations at every step,
which is exactly what it was trained on.
"""

from __future__ import annotations

import torch
from torch import nn

from embodied.policies.base import Policy
from embodied.policies.config import POLICIES, BCRNNConfig


class LSTMTrunk(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int, layers: int, dropout: float) -> None:
        super().__init__()
        # nn.LSTM applies dropout between layers only, so it has none to apply with one layer.
        self.lstm = nn.LSTM(
            in_dim, hidden_dim, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (B, T, D) -> (B, T, hidden)
        return out[:, -1]  # (B, hidden): the state after the current observation


@POLICIES.register("bc_rnn", BCRNNConfig)
class BCRNN(Policy):
    def build_trunk(self, in_dim: int) -> nn.Module:
        c = self.config
        return LSTMTrunk(in_dim, c.hidden_dim, c.num_layers, c.dropout)
