"""Diffusion Policy's noise predictor: a 1-D temporal convolutional U-Net with FiLM conditioning.

Chi et al. 2023 (Diffusion Policy, RSS, arXiv:2303.04137), Sec. III-B "CNN-based Diffusion
Policy", after Janner et al. 2022 (Diffuser): the action chunk is a 1-D signal over time with
the action dimensions as channels; every residual block is FiLM-modulated (Perez et al. 2018)
by one conditioning vector, the observation features concatenated with an embedding of the
diffusion step. The layout follows the authors' ``ConditionalUnet1D`` (also LeRobot's):

    (B, Tp, A) -> (B, A, Tp)
    down:  [res, res, downsample] per width of down_dims (no downsample after the last)
    mid:   res, res
    up:    [cat skip, res, res, upsample] per width but the first, back to Tp
    out:   conv block, 1x1 conv to A channels -> (B, Tp, A)

Tp must be divisible by 2 ** (len(down_dims) - 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class StepEmbedding(nn.Module):
    """Diffusion step k -> sinusoidal features (Vaswani et al. 2017) -> MLP, as the authors' code."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.Mish(), nn.Linear(4 * dim, dim))

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=k.device, dtype=torch.float32) / max(1, half - 1)
        )  # (half,)
        angles = k.float()[:, None] * freqs[None]  # (B, 1) * (1, half) -> (B, half)
        emb = torch.cat([angles.sin(), angles.cos()], dim=-1)  # (B, 2 * half)
        if emb.shape[-1] < self.dim:  # an odd dim: pad one zero column
            emb = nn.functional.pad(emb, (0, 1))  # (B, dim)
        return self.mlp(emb)  # (B, dim)


class ConvBlock(nn.Module):
    """Conv1d -> GroupNorm -> Mish, length kept (padding k // 2)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2), nn.GroupNorm(groups, out_ch), nn.Mish()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C_in, T) -> (B, C_out, T)


class FiLMResidualBlock(nn.Module):
    """Two conv blocks; the first's output scaled and shifted per channel by the condition.

    The paper's FiLM (Sec. III-B): the condition predicts a scale and a bias for every channel,
    ``scale * h + bias``, applied after the first convolution of each block.
    """

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.out_ch = out_ch
        self.block1 = ConvBlock(in_ch, out_ch, kernel, groups)
        self.block2 = ConvBlock(out_ch, out_ch, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.skip = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.block1(x)  # (B, C_out, T)
        scale, bias = self.film(cond)[..., None].chunk(2, dim=1)  # (B, 2 C_out, 1) -> 2 x (B, C_out, 1)
        h = self.block2(scale * h + bias)  # (B, C_out, T)
        return h + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """eps_theta(noisy chunk, step k, condition): (B, Tp, A), (B,), (B, cond_dim) -> (B, Tp, A)."""

    def __init__(
        self,
        action_dim: int,
        cond_dim: int,
        down_dims: list[int],
        kernel: int,
        groups: int,
        step_embed_dim: int,
    ) -> None:
        super().__init__()
        self.step_embedding = StepEmbedding(step_embed_dim)
        cond = step_embed_dim + cond_dim  # the FiLM input: step embedding and observation features
        widths = [action_dim, *down_dims]
        pairs = list(zip(widths[:-1], widths[1:], strict=True))  # (in, out) per resolution

        self.down = nn.ModuleList()
        for i, (c_in, c_out) in enumerate(pairs):
            last = i == len(pairs) - 1
            self.down.append(
                nn.ModuleList(
                    [
                        FiLMResidualBlock(c_in, c_out, cond, kernel, groups),
                        FiLMResidualBlock(c_out, c_out, cond, kernel, groups),
                        # T -> T/2, but at the coarsest level
                        nn.Identity() if last else nn.Conv1d(c_out, c_out, 3, stride=2, padding=1),
                    ]
                )
            )
        top = down_dims[-1]
        self.mid = nn.ModuleList(FiLMResidualBlock(top, top, cond, kernel, groups) for _ in range(2))
        self.up = nn.ModuleList()
        for c_in, c_out in reversed(pairs[1:]):
            self.up.append(
                nn.ModuleList(
                    [
                        # 2 c_out in: the skip of the same resolution is concatenated
                        FiLMResidualBlock(2 * c_out, c_in, cond, kernel, groups),
                        FiLMResidualBlock(c_in, c_in, cond, kernel, groups),
                        nn.ConvTranspose1d(c_in, c_in, 4, stride=2, padding=1),  # T -> 2T
                    ]
                )
            )
        self.out = nn.Sequential(
            ConvBlock(down_dims[0], down_dims[0], kernel, groups), nn.Conv1d(down_dims[0], action_dim, 1)
        )

    def forward(self, sample: torch.Tensor, step: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        x = sample.transpose(1, 2)  # (B, Tp, A) -> (B, A, Tp): actions as channels, time as length
        c = torch.cat([self.step_embedding(step), cond], dim=-1)  # (B, step_dim + cond_dim)
        skips = []
        for res1, res2, downsample in self.down:
            x = res2(res1(x, c), c)  # (B, C, T)
            skips.append(x)
            x = downsample(x)  # (B, C, T/2), the last level keeps T
        for block in self.mid:
            x = block(x, c)
        # As the authors' code: the up path consumes the skips of the coarser levels; the finest
        # level's skip (skips[0]) is not read.
        for res1, res2, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)  # (B, 2C, T)
            x = upsample(res2(res1(x, c), c))  # (B, C', 2T)
        return self.out(x).transpose(1, 2)  # (B, A, Tp) -> (B, Tp, A)
