"""Pieces shared by policies (E), recognizers (U) and the mirror head.

- :class:`~embodied.data.spec.DataSpec` (made by the reader, in :mod:`embodied.data.spec`):
  what a model must know about its data to be built; saved in checkpoints as JSON.
- :class:`Normalizer`: per-key affine normalisation whose statistics are buffers, so they
  travel with the state dict.
- :class:`FeatureTap`: read the output of any named submodule, pooled to (B, D), so that
  where features are tapped is a setting, not code.
"""

from __future__ import annotations

import torch
from torch import nn


class Normalizer(nn.Module):
    """x -> (x - shift) / scale per key; statistics live in buffers (saved with the weights).

    Low-dim observations are standardised (mean/std); actions are already in [-1, 1] and are
    left as they are unless statistics are given for them.
    """

    def __init__(self, shapes: dict[str, list[int]]) -> None:
        super().__init__()
        self.keys = list(shapes)
        for key, shape in shapes.items():
            self.register_buffer(self._name(key, "shift"), torch.zeros(shape))
            self.register_buffer(self._name(key, "scale"), torch.ones(shape))

    @staticmethod
    def _name(key: str, what: str) -> str:
        return f"{key.replace('.', '_').replace('/', '_')}__{what}"

    def fit(self, stats: dict[str, dict[str, torch.Tensor]], eps: float = 1e-6) -> None:
        """Set from ``{key: {"mean": ..., "std": ...}}`` (as the dataset reader computes them)."""
        for key in self.keys:
            if key in stats:
                getattr(self, self._name(key, "shift")).copy_(torch.as_tensor(stats[key]["mean"]))
                std = torch.as_tensor(stats[key]["std"]).clamp_min(eps)
                getattr(self, self._name(key, "scale")).copy_(std)

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return (x - getattr(self, self._name(key, "shift"))) / getattr(self, self._name(key, "scale"))

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        return x * getattr(self, self._name(key, "scale")) + getattr(self, self._name(key, "shift"))


class FeatureTap:
    """Capture the output of submodule ``name`` of ``model`` during a forward pass.

    The captured tensor is pooled to (B, D): a (B, ..., D) sequence or token tensor is
    averaged over its middle dimensions, a (B, C, ...) feature map over its spatial ones.
    ``channels_last`` says which layout the tapped module produces.
    """

    def __init__(self, model: nn.Module, name: str, channels_last: bool = True) -> None:
        modules = dict(model.named_modules())
        if name not in modules:
            from embodied.errors import UserError

            valid = ", ".join(n for n in modules if n)
            raise UserError(f"feature tap {name!r} is not a layer of {type(model).__name__}; layers: {valid}")
        self.name = name
        self.channels_last = channels_last
        self.value: torch.Tensor | None = None
        self._handle = modules[name].register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        if isinstance(output, tuple):  # e.g. nn.LSTM returns (output, state)
            output = output[0]
        self.value = output

    def pooled(self) -> torch.Tensor:
        x = self.value
        assert x is not None, "the model's forward pass did not reach the tapped layer"
        if x.dim() == 2:
            return x  # (B, D)
        if self.channels_last:
            return x.flatten(1, -2).mean(dim=1)  # (B, ..., D) -> (B, D)
        return x.flatten(2).mean(dim=2)  # (B, C, ...) -> (B, C)

    def remove(self) -> None:
        self._handle.remove()
