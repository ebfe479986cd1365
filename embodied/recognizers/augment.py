"""Turning a uint8 clip into the float tensor a recognizer reads, with training augmentation.

Everything is batched tensor arithmetic (one ``grid_sample`` for the crop of every clip), so
the same code runs on CPU and GPU and costs no Python loop over samples. One random crop
and one colour change per clip, shared by all its frames: a crop that moved between frames
would add motion that the robot did not make.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

# Fixed input standardisation: the frames are rendered, not photographed, so ImageNet
# statistics mean nothing here; this just centres [0, 1] pixels around 0 with unit-ish range.
PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


def crop_and_resize(x: torch.Tensor, size: int, fraction: float, random: bool) -> torch.Tensor:
    """Crop a square of side ``fraction`` of each clip and resample it to ``size`` x ``size``.

    ``x``: (B, T, C, H, W) float. A random crop position per clip when ``random``, else the
    centre. Bilinear resampling; it does not antialias, so frames should already be near
    ``size`` (classify_video resizes with antialiasing first).
    """
    b, t, c, h, w = x.shape
    if fraction == 1.0 and h == size and w == size:
        return x  # identity: skip the resampling (exact anyway, but not free)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)  # (B, 2, 3) affine maps
    theta[:, 0, 0] = fraction
    theta[:, 1, 1] = fraction
    if random and fraction < 1.0:
        # grid coordinates run over [-1, 1]; a crop of half-width `fraction` fits when its
        # centre lies within 1 - fraction of the image centre
        theta[:, :, 2] = (torch.rand(b, 2, device=x.device, dtype=x.dtype) * 2 - 1) * (1 - fraction)
    grid = F.affine_grid(theta, [b, 1, size, size], align_corners=False)  # (B, size, size, 2)
    frames = rearrange(x, "b t c h w -> b (t c) h w")  # one grid for all frames of a clip
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return rearrange(out, "b (t c) h w -> b t c h w", t=t)  # (B, T, C, size, size)


def color_jitter(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Random brightness and contrast factors in [1 - strength, 1 + strength], one pair per clip.

    ``x``: (B, T, C, H, W) float in [0, 1]; returns the same shape, clamped to [0, 1].
    Hue and saturation are left alone: object colour can be what tells two tasks apart.
    """
    if strength == 0.0:
        return x
    b = x.shape[0]
    factors = 1 + (torch.rand(2, b, 1, 1, 1, 1, device=x.device, dtype=x.dtype) * 2 - 1) * strength
    brightness, contrast = factors  # each (B, 1, 1, 1, 1)
    x = x * brightness
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)  # (B, 1, 1, 1, 1) grey level of the clip
    return ((x - mean) * contrast + mean).clamp(0.0, 1.0)


def prepare_video(
    video: torch.Tensor, size: int, crop_fraction: float, jitter: float, training: bool
) -> torch.Tensor:
    """(B, T, 3, H, W) uint8 -> (B, T, 3, size, size) float, standardised.

    Training: random crop of ``crop_fraction`` of the side plus colour jitter. Evaluation:
    the centre crop of the same fraction, so that objects appear at the same scale in both.
    """
    if video.dim() != 5 or video.shape[2] != 3 or video.dtype != torch.uint8:
        raise ValueError(f"video must be (B, T, 3, H, W) uint8, got {tuple(video.shape)} {video.dtype}")
    x = video.to(torch.float32) / 255.0  # (B, T, 3, H, W) in [0, 1]
    x = crop_and_resize(x, size, crop_fraction, random=training)
    if training:
        x = color_jitter(x, jitter)
    return (x - PIXEL_MEAN) / PIXEL_STD
