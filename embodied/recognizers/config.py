"""The recognizers' settings: :class:`RecognizerConfig`, one dataclass per registered model, and
the registry's config half (:data:`RECOGNIZERS`; the models register their builders beside them).

No torch here: a training config is read, and ``embodied-train --help`` lists every recognizer's
settings, without the models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from embodied.config import Registry
from embodied.limits import (
    MAX_CLIP_LEN,
    MAX_CONV3D_DEPTH,
    MAX_DEPTH,
    MAX_IMAGE_SIDE,
    MAX_WIDTH,
    check_image_side,
    check_range,
)

RECOGNIZERS = Registry("recognizer")


@dataclass
class RecognizerConfig:
    registry: ClassVar[Registry] = RECOGNIZERS

    name: str
    """Registered recognizer: conv3d or video_transformer."""
    feature_tap: str = ""
    """Layer whose output is the feature for alignment; empty = the embedding before the heads."""
    dropout: float = 0.1
    """Dropout on the embedding before the two heads (training only)."""
    crop_fraction: float = 0.9
    """Side of the crop as a fraction of the frame: random in training, centred at eval; 1 = none."""
    color_jitter: float = 0.1
    """Brightness and contrast factors drawn from [1 - x, 1 + x] per clip in training; 0 = none."""
    instruction_loss_weight: float = 0.5
    """Weight of the instruction cross-entropy beside the class cross-entropy; 0 = head not trained."""
    input_size: int = 0
    """Side of the frames the backbone reads (8 to 1024), resampled from the data's (after the
    crop); 0 = the data's own size. Smaller frames cost less and leave less detail for the scene
    to give away."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1), got {self.color_jitter}")
        if self.instruction_loss_weight < 0.0:
            raise ValueError(f"instruction_loss_weight must be >= 0, got {self.instruction_loss_weight}")
        check_image_side("input_size (0: the data's size)", self.input_size, zero_ok=True)


@RECOGNIZERS.config("conv3d")
@dataclass
class Conv3DConfig(RecognizerConfig):
    name: str = "conv3d"
    """Registered recognizer: conv3d or video_transformer."""
    width: int = 16
    """Channels of the first stage (1 to 8192); each later stage doubles them."""
    depth: int = 4
    """Stages (1 to 8); each halves space, and each after the first halves time too."""
    blocks: int = 2
    """Residual blocks per stage (1 to 64)."""
    kernel_size: int = 3
    """Side k of the 1 x k x k spatial convolutions (odd)."""
    temporal_kernel: int = 3
    """Length k_t of the k_t x 1 x 1 temporal convolutions (odd)."""
    stem_kernel: int = 5
    """Side of the stem's spatial convolution, which strides 2 (odd)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("width", self.width, 1, MAX_WIDTH)
        check_range("depth", self.depth, 1, MAX_CONV3D_DEPTH)
        check_range("blocks", self.blocks, 1, MAX_DEPTH)
        for key in ("kernel_size", "temporal_kernel", "stem_kernel"):
            value = getattr(self, key)
            if value < 1 or value % 2 == 0:
                raise ValueError(f"{key} must be a positive odd number, got {value}")


@RECOGNIZERS.config("video_transformer")
@dataclass
class VideoTransformerConfig(RecognizerConfig):
    name: str = "video_transformer"
    """Registered recognizer: conv3d or video_transformer."""
    width: int = 96
    """Token dimension D (1 to 8192)."""
    depth: int = 4
    """Divided space-time blocks (1 to 64)."""
    heads: int = 4
    """Attention heads; must divide width."""
    mlp_ratio: float = 2.0
    """Hidden size of each block's MLP as a multiple of width."""
    patch_size: int = 8
    """Side p of a tubelet in pixels (1 to 1024); the frame side is rounded to a multiple of it."""
    tubelet_frames: int = 2
    """Frames pt in a tubelet (1 to 256)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("width", self.width, 1, MAX_WIDTH)
        check_range("depth", self.depth, 1, MAX_DEPTH)
        check_range("heads", self.heads, 1, self.width)
        check_range("patch_size", self.patch_size, 1, MAX_IMAGE_SIDE)
        check_range("tubelet_frames", self.tubelet_frames, 1, MAX_CLIP_LEN)
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        if self.mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {self.mlp_ratio}")
