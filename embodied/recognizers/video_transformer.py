"""``video_transformer``: tubelet tokens with divided space-time attention.

- Tubelet embedding (ViViT, Arnab et al. 2021, https://arxiv.org/abs/2103.15691): the clip is
  cut into non-overlapping ``tubelet_frames`` x ``patch_size`` x ``patch_size`` tubes, each
  flattened and linearly projected to one token. Written as rearrange + Linear (the same map
  as a strided Conv3d) so every activation stays channels-last and batch-first.
- Divided attention (TimeSformer, Bertasius et al. 2021, https://arxiv.org/abs/2102.05095;
  ViViT's factorised self-attention, model 3): each block attends over time for every
  spatial position, then over space for every time step, then an MLP; pre-norm residuals.
- Learned positional embeddings, factorised into a spatial table (n positions) and a
  temporal one (t positions), so a clip of another length only needs the temporal table
  interpolated.
- Mean pooling over all tokens: divided attention has no natural slot for a CLS token
  (TimeSformer special-cases it in every block), and the mean is as good at this scale.

    (B, T, 3, S, S) -> tubelets (B, t, n, pt*p*p*3) -> tokens (B, t, n, D) + positions
                    -> depth x [time attn, space attn, MLP] -> LayerNorm -> mean (B, D)

with t = ceil(T / pt) (a clip is padded by repeating its last frame to a multiple of pt) and
n = (S / p)**2. Every inner activation is (B, t, n, D), so any layer can be tapped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.recognizers.base import Recognizer
from embodied.recognizers.config import RECOGNIZERS, VideoTransformerConfig


class AxisAttention(nn.Module):
    """Multi-head self-attention along one axis of (B, t, n, D): ``time`` or ``space``."""

    def __init__(self, dim: int, heads: int, axis: str) -> None:
        super().__init__()
        assert axis in ("time", "space")
        self.heads, self.axis = heads, axis
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, t, n, D) -> (B, t, n, D)
        b, t, n, _ = x.shape
        qkv = self.qkv(x)  # (B, t, n, 3D)
        if self.axis == "time":  # sequences of length t, one per (clip, spatial position)
            q, k, v = rearrange(qkv, "b t n (three h d) -> three (b n) h t d", three=3, h=self.heads)
        else:  # sequences of length n, one per (clip, time step)
            q, k, v = rearrange(qkv, "b t n (three h d) -> three (b t) h n d", three=3, h=self.heads)
        y = F.scaled_dot_product_attention(q, k, v)  # (B*n, h, t, d) or (B*t, h, n, d)
        if self.axis == "time":
            y = rearrange(y, "(b n) h t d -> b t n (h d)", b=b)  # (B, t, n, D)
        else:
            y = rearrange(y, "(b t) h n d -> b t n (h d)", b=b)  # (B, t, n, D)
        return self.proj(y)


class DividedBlock(nn.Module):
    """TimeSformer's divided space-time block: x += attn_t(LN x); x += attn_s(LN x); x += MLP(LN x)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm_t = nn.LayerNorm(dim)
        self.attn_t = AxisAttention(dim, heads, "time")
        self.norm_s = nn.LayerNorm(dim)
        self.attn_s = AxisAttention(dim, heads, "space")
        self.norm_m = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, t, n, D) -> (B, t, n, D)
        x = x + self.attn_t(self.norm_t(x))
        x = x + self.attn_s(self.norm_s(x))
        return x + self.mlp(self.norm_m(x))


class VideoTransformerBackbone(nn.Module):
    def __init__(self, config: VideoTransformerConfig, clip_len: int, size: int) -> None:
        super().__init__()
        c = config
        self.pt, self.p = c.tubelet_frames, c.patch_size
        t = -(-clip_len // self.pt)  # tubelets along time for the training clip length
        n = (size // self.p) ** 2  # tubelets per frame
        self.embed = nn.Linear(self.pt * self.p * self.p * 3, c.width)
        self.pos_time = nn.Parameter(torch.zeros(1, t, 1, c.width))  # (1, t, 1, D)
        self.pos_space = nn.Parameter(torch.zeros(1, 1, n, c.width))  # (1, 1, n, D)
        # Sequential rather than ModuleList: a ModuleList is never called, so it could not be tapped
        self.blocks = nn.Sequential(*(DividedBlock(c.width, c.heads, c.mlp_ratio) for _ in range(c.depth)))
        self.norm = nn.LayerNorm(c.width)
        self.out_dim = c.width
        nn.init.trunc_normal_(self.pos_time, std=0.02)
        nn.init.trunc_normal_(self.pos_space, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def time_positions(self, t: int) -> torch.Tensor:
        """(1, t, 1, D): the learned table, linearly interpolated when t differs from training."""
        if t == self.pos_time.shape[1]:
            return self.pos_time
        table = rearrange(self.pos_time, "1 t 1 d -> 1 d t")  # (1, D, t_train) for interpolate
        table = F.interpolate(table, size=t, mode="linear", align_corners=True)  # (1, D, t)
        return rearrange(table, "1 d t -> 1 t 1 d")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 3, S, S) -> (B, D)
        pad = -x.shape[1] % self.pt
        if pad:  # repeat the last frame so T is a whole number of tubelets
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)  # (B, T + pad, 3, S, S)
        tubes = rearrange(
            x, "b (t pt) c (h ph) (w pw) -> b t (h w) (pt ph pw c)", pt=self.pt, ph=self.p, pw=self.p
        )  # (B, t, n, pt*p*p*3)
        tokens = self.embed(tubes)  # (B, t, n, D)
        tokens = tokens + self.time_positions(tokens.shape[1]) + self.pos_space
        tokens = self.blocks(tokens)  # (B, t, n, D)
        return self.norm(tokens).mean(dim=(1, 2))  # (B, D)


@RECOGNIZERS.register("video_transformer", VideoTransformerConfig)
class VideoTransformerRecognizer(Recognizer):
    channels_last = True

    @classmethod
    def working_size(cls, config: VideoTransformerConfig, spec: DataSpec) -> int:
        # The frame side must be a whole number of patches: round it (84 px -> 80 px at p = 8).
        p, side = config.patch_size, config.input_size or spec.image_size
        if p > side:  # the frame would be enlarged to one patch: p * p times the pixels, no detail
            raise UserError(
                f"recognizer.patch_size {p} is larger than the {side} px frames it cuts "
                "(recognizer.input_size, else the data's); take at most the frame side"
            )
        return p * max(1, round(side / p))

    def build_backbone(self, config: VideoTransformerConfig, spec: DataSpec) -> tuple[nn.Module, int]:
        if config.tubelet_frames > spec.clip_len:  # every clip would be padded with its last frame
            raise UserError(
                f"recognizer.tubelet_frames {config.tubelet_frames} is longer than the clips "
                f"(data.clip_len {spec.clip_len}); take at most the clip length"
            )
        backbone = VideoTransformerBackbone(config, spec.clip_len, self.input_size)
        return backbone, backbone.out_dim
