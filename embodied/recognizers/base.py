"""The recognizer contract (U, action understanding) and what every recognizer shares.

A recognizer watches an observation clip ``video`` (B, T, 3, H, W) uint8 from the observer
camera and says which task class and which instruction it shows. Each registered model
only supplies a *backbone* that maps the prepared clip (B, T, 3, S, S) float to one
embedding (B, D); this class adds the input preparation and augmentation, the two linear
heads, the loss, and the feature tap used by the mirror head:

    video (B, T, 3, H, W) uint8
      -> prepare: float, crop (random in training, centre in eval), colour jitter in training
      -> backbone -> (B, D)                       <- default feature tap ("backbone")
      -> dropout -> class_head (B, C), instruction_head (B, I)

Both heads are always there (a config flag that switches one off would only pick a branch):
``instruction_loss_weight = 0`` keeps the instruction head out of the loss, and a dataset
with one instruction per task makes it a copy of the class head at negligible cost.

Clip length: every backbone pools over time, so a clip whose T differs from
``spec.clip_len`` still works (the transformer interpolates its temporal positions); the
accuracy is what the model learned for ``spec.clip_len`` frames at the training stride, so
for long videos prefer :func:`embodied.recognizers.inference.classify_video`, which averages
over several clips of the trained length.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from embodied import keys
from embodied.config import from_dict, to_dict
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.models.common import FeatureTap
from embodied.recognizers.augment import prepare_video
from embodied.recognizers.config import RECOGNIZERS, RecognizerConfig


class Recognizer(nn.Module):
    """Base class of every recognizer; subclasses implement :meth:`build_backbone`."""

    channels_last: ClassVar[bool] = False
    """Layout of the backbone's inner activations, for pooling a tapped layer (see FeatureTap)."""

    def __init__(self, config: RecognizerConfig, spec: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        self.input_size = self.working_size(config, spec)
        self.backbone, dim = self.build_backbone(config, spec)
        self.embed_dim = dim
        self.dropout = nn.Dropout(config.dropout)
        self.class_head = nn.Linear(dim, spec.num_classes)
        self.instruction_head = nn.Linear(dim, spec.num_instructions)
        self.tap_name = config.feature_tap or "backbone"
        FeatureTap(self, self.tap_name, self.channels_last).remove()  # an unknown layer fails here
        self._feature_dim: int | None = None

    # ------------------------------------------------------------------ for subclasses
    def build_backbone(self, config: RecognizerConfig, spec: DataSpec) -> tuple[nn.Module, int]:
        """Return a module (B, T, 3, S, S) float -> (B, D) and D; S is ``self.input_size``."""
        raise NotImplementedError

    @classmethod
    def working_size(cls, config: RecognizerConfig, spec: DataSpec) -> int:
        """Side S of the frames the backbone reads; the clip is resampled to it."""
        return config.input_size or spec.image_size

    # ------------------------------------------------------------------ the contract
    def prepare(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) uint8 -> (B, T, 3, S, S) float; augmented only in training mode."""
        c = self.config
        return prepare_video(video, self.input_size, c.crop_fraction, c.color_jitter, self.training)

    def forward(self, video: torch.Tensor, with_features: bool = False) -> dict[str, torch.Tensor]:
        """``class_logits`` (B, C), ``instruction_logits`` (B, I), and ``features`` (B, D_u) if asked.

        Asking for the features here rather than calling :meth:`features` separately gives the
        logits and the tapped feature from one forward pass (what joint alignment training needs).
        """
        tap = FeatureTap(self, self.tap_name, self.channels_last) if with_features else None
        try:
            emb = self.dropout(self.backbone(self.prepare(video)))  # (B, D)
            out = {
                "class_logits": self.class_head(emb),  # (B, C)
                "instruction_logits": self.instruction_head(emb),  # (B, I)
            }
            if tap is not None:
                if tap.value is None:  # e.g. a container that is never called itself
                    raise UserError(f"feature tap {self.tap_name!r} is a layer the forward pass never calls")
                feats = tap.pooled()  # (B, D_u)
                if feats.dim() != 2 or feats.shape[0] != video.shape[0]:
                    raise ValueError(
                        f"feature tap {self.tap_name!r} gives shape {tuple(tap.value.shape)}, "
                        f"which does not start with the batch dimension {video.shape[0]}"
                    )
                out["features"] = feats
        finally:
            if tap is not None:
                tap.remove()
        return out

    def loss(
        self, batch: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Class cross-entropy + ``instruction_loss_weight`` x instruction cross-entropy.

        ``batch`` holds ``video``, ``label`` and (unless the weight is 0) ``instruction_id``.
        ``outputs`` may be passed when the forward pass has already been run (with features).
        """
        out = outputs if outputs is not None else self(batch[keys.VIDEO])
        label = batch[keys.LABEL]
        class_loss = F.cross_entropy(out["class_logits"], label)
        loss = class_loss
        metrics = {
            "class_loss": class_loss.item(),
            "class_acc": (out["class_logits"].argmax(-1) == label).float().mean().item(),
        }
        weight = self.config.instruction_loss_weight
        if weight > 0 and keys.INSTRUCTION not in batch:
            raise KeyError(f"instruction_loss_weight is {weight} but the batch has no {keys.INSTRUCTION!r}")
        if keys.INSTRUCTION in batch:
            instruction = batch[keys.INSTRUCTION]
            instruction_loss = F.cross_entropy(out["instruction_logits"], instruction)
            if weight > 0:
                loss = loss + weight * instruction_loss
            metrics["instruction_loss"] = instruction_loss.item()
            metrics["instruction_acc"] = (
                (out["instruction_logits"].argmax(-1) == instruction).float().mean().item()
            )
        metrics["loss"] = loss.item()
        return loss, metrics

    @torch.no_grad()
    def predict(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) uint8 -> (B, num_classes) class logits; no gradients. Call ``.eval()`` first."""
        return self(video)["class_logits"]

    def features(self, video: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, H, W) uint8 -> (B, feature_dim): the configured layer's output, pooled.

        Gradients flow (alignment trains through it); augmentation follows the module's mode.
        """
        return self(video, with_features=True)["features"]

    @property
    def feature_dim(self) -> int:
        """D_u, the size of :meth:`features`; found once by a one-clip dry run in eval mode."""
        if self._feature_dim is None:
            was_training = self.training
            param = next(self.parameters())
            dummy = torch.zeros(
                1,
                self.spec.clip_len,
                3,
                self.input_size,
                self.input_size,
                dtype=torch.uint8,
                device=param.device,
            )
            try:
                self.eval()  # eval so the dry run leaves batch-norm statistics alone
                with torch.no_grad():
                    self._feature_dim = int(self.features(dummy).shape[1])
            finally:
                self.train(was_training)
        return self._feature_dim


def build_recognizer(config: RecognizerConfig, spec: DataSpec) -> Recognizer:
    """The registered recognizer ``config.name``, built for ``spec``.

    A base :class:`RecognizerConfig` is accepted too and completed with the named model's
    defaults, so ``RecognizerConfig(name="conv3d")`` works.
    """
    config_cls = RECOGNIZERS.config_class(config.name)  # UserError listing the names if unknown
    if not isinstance(config, config_cls):
        config = from_dict(config_cls, to_dict(config))
    return RECOGNIZERS.build(config, spec)
