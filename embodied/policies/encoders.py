"""Observation encoders and instruction conditioning, shared by every trunk.

One encoder per observation key, their outputs concatenated (robomimic's ``ObservationEncoder``):

- low-dim keys (d,): already normalised by the policy, then a two-layer MLP;
- image keys (3, H, W) uint8: random crop (training) or centre crop (evaluation), a small
  ResNet-style conv net trained from scratch, spatial-softmax keypoints, a linear map.

Time is folded into the batch for the per-key encoders: (B, T, ...) -> (B*T, ...) -> (B, T, D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def module_name(key: str) -> str:
    """A ModuleDict key for an observation key (module names cannot hold dots)."""
    return key.replace(".", "_").replace("/", "_")


class LowDimEncoder(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (..., d) -> (..., D)


def _group_norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: batch statistics are noisy at small batches and interact badly
    # with EMA weights; Diffusion Policy (Chi et al. 2023, section 4.2) makes the same swap.
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with a skip connection (He et al. 2016), optionally downsampling."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _group_norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = _group_norm(out_ch)
        self.skip = (
            nn.Identity()
            if stride == 1 and in_ch == out_ch
            else nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), _group_norm(out_ch))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.skip(x))


class SpatialSoftmax(nn.Module):
    """Expected 2-D image position of each of ``keypoints`` learned feature maps.

    Levine et al. 2016 (arXiv:1504.00702); robomimic's ``SpatialSoftmax``. Coordinates are in
    [-1, 1], so the output does not depend on the image size.
    """

    def __init__(self, in_ch: int, keypoints: int) -> None:
        super().__init__()
        self.keypoints = keypoints
        self.to_maps = nn.Conv2d(in_ch, keypoints, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.to_maps(x)  # (N, K, h, w)
        n, k, h, w = maps.shape
        attention = maps.flatten(2).softmax(dim=-1)  # (N, K, h*w), sums to 1 over positions
        ys, xs = torch.meshgrid(
            torch.linspace(-1.0, 1.0, h, device=x.device),
            torch.linspace(-1.0, 1.0, w, device=x.device),
            indexing="ij",
        )
        grid = torch.stack([xs.flatten(), ys.flatten()], dim=-1)  # (h*w, 2)
        points = attention @ grid  # (N, K, h*w) @ (h*w, 2) -> (N, K, 2)
        return points.flatten(1)  # (N, K, 2) -> (N, 2K)


def crop(images: torch.Tensor, fraction: float, random: bool) -> torch.Tensor:
    """Crop (N, C, H, W) to round(fraction * side): at a random place per image, or centred.

    robomimic's ``CropRandomizer``: random crops in training as augmentation, the centre crop
    in evaluation so that the network sees the same image size in both.
    """
    n, c, h, w = images.shape
    ch, cw = max(1, round(fraction * h)), max(1, round(fraction * w))
    if ch == h and cw == w:
        return images
    if not random:
        top, left = (h - ch) // 2, (w - cw) // 2
        return images[:, :, top : top + ch, left : left + cw]
    top = torch.randint(0, h - ch + 1, (n,), device=images.device)  # (N,)
    left = torch.randint(0, w - cw + 1, (n,), device=images.device)  # (N,)
    # Every ch x cw window as a view, then one window per image: a plain gather, several times
    # faster than indexing each pixel with broadcast (N, C, ch, cw) index tensors. Contiguous, as
    # that indexing returned even from a channels-last batch, so the convolutions run as before.
    windows = images.unfold(2, ch, 1).unfold(3, cw, 1)  # (N, C, H - ch + 1, W - cw + 1, ch, cw)
    return windows[torch.arange(n, device=images.device), :, top, left].contiguous()  # (N, C, ch, cw)


class ImageEncoder(nn.Module):
    """uint8 (N, 3, H, W) -> (N, out_dim): crop, a conv stem and two residual blocks, keypoints, linear."""

    def __init__(self, out_dim: int, channels: int, keypoints: int, crop_fraction: float) -> None:
        super().__init__()
        self.crop_fraction = crop_fraction
        self.backbone = nn.Sequential(
            nn.Conv2d(3, channels, 3, stride=2, padding=1, bias=False),  # (N, c, H/2, W/2)
            _group_norm(channels),
            nn.ReLU(),
            ResidualBlock(channels, channels, stride=1),  # (N, c, H/2, W/2)
            ResidualBlock(channels, 2 * channels, stride=2),  # (N, 2c, H/4, W/4)
        )
        self.keypoints = SpatialSoftmax(2 * channels, keypoints)
        self.out = nn.Linear(2 * keypoints, out_dim)
        self.out_dim = out_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = crop(images, self.crop_fraction, random=self.training)
        x = images.float() / 255.0  # uint8 -> [0, 1], as robomimic
        return self.out(self.keypoints(self.backbone(x)))  # (N, out_dim)


class ObsEncoder(nn.Module):
    """Every observation key through its own encoder; outputs concatenated in key order."""

    def __init__(
        self,
        shapes: dict[str, list[int]],
        low_dim_embed: int,
        image_embed: int,
        image_channels: int,
        image_keypoints: int,
        crop_fraction: float,
    ) -> None:
        super().__init__()
        self.keys = list(shapes)
        self.encoders = nn.ModuleDict()
        for key, shape in shapes.items():
            if len(shape) == 1:
                encoder = LowDimEncoder(shape[0], low_dim_embed)
            else:
                encoder = ImageEncoder(image_embed, image_channels, image_keypoints, crop_fraction)
            self.encoders[module_name(key)] = encoder
        self.out_dim = sum(e.out_dim for e in self.encoders.values())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """obs[key]: (B, T, d) float or (B, T, 3, H, W) uint8 -> (B, T, out_dim)."""
        parts = []
        for key in self.keys:
            x = obs[key]
            b, t = x.shape[:2]
            y = self.encoders[module_name(key)](x.flatten(0, 1))  # (B, T, ...) -> (B*T, ...) -> (B*T, D)
            parts.append(y.unflatten(0, (b, t)))  # (B*T, D) -> (B, T, D)
        return torch.cat(parts, dim=-1)  # (B, T, sum D)


class InstructionConditioning(nn.Module):
    """Inject a learned embedding of the instruction id into the per-step features.

    ``concat``: append the embedding to each step's features (out_dim = in_dim + embed_dim).
    ``film``: scale and shift each step's features by the embedding (Perez et al. 2018,
    arXiv:1709.07871): x * (1 + gamma) + beta. gamma and beta start at zero, so an untrained
    FiLM layer is the identity and does not disturb the observation features.
    ``none``: ignore the instruction.
    """

    def __init__(self, mode: str, in_dim: int, num_instructions: int, embed_dim: int) -> None:
        super().__init__()
        self.mode = mode
        self.out_dim = in_dim
        if mode == "none":
            return
        self.embedding = nn.Embedding(num_instructions, embed_dim)
        if mode == "concat":
            self.out_dim = in_dim + embed_dim
        elif mode == "film":
            self.film = nn.Linear(embed_dim, 2 * in_dim)
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        else:
            raise ValueError(f"unknown conditioning {mode!r}")

    def forward(self, x: torch.Tensor, instruction: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, D), instruction (B,) int64 -> (B, T, out_dim)."""
        if self.mode == "none":
            return x
        if instruction is None:
            raise ValueError(f"conditioning {self.mode!r} needs the instruction id")
        e = self.embedding(instruction)[:, None]  # (B, E) -> (B, 1, E), the same at every step
        if self.mode == "concat":
            return torch.cat([x, e.expand(-1, x.shape[1], -1)], dim=-1)  # (B, T, D + E)
        gamma, beta = self.film(e).chunk(2, dim=-1)  # (B, 1, 2D) -> 2 x (B, 1, D)
        return x * (1.0 + gamma) + beta
