"""Pieces shared by policies (E), recognizers (U) and the mirror head.

- :class:`DataSpec`: what a model must know about its data to be built; saved in checkpoints
  as JSON so a model can be rebuilt without the dataset.
- :class:`Normalizer`: per-key affine normalisation whose statistics are buffers, so they
  travel with the state dict.
- :class:`FeatureTap`: read the output of any named submodule, pooled to (B, D), so that
  where features are tapped is a setting, not code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class DataSpec:
    """What a model is built for, read off the data: shapes, vocabularies, and the window and clip
    lengths the batches had. The reader makes it; a checkpoint keeps it, so a model is rebuilt
    and checked without the data. Not a setting: the training config's ``data`` section
    (:class:`~embodied.train.config.DataConfig`) asks for windows and clips, and the spec
    records what was read, including the three lengths both name."""

    obs_shapes: dict[str, list[int]] = field(default_factory=dict)
    """Low-dim keys -> [d]; image keys (``<camera>_image``) -> [3, H, W]."""
    action_dim: int = 0
    """Size of one action."""
    num_classes: int = 1
    """Classes in the dataset (``label`` runs over 0..num_classes-1)."""
    num_instructions: int = 1
    """Distinct instructions in the dataset (``instruction_id``)."""
    obs_horizon: int = 1
    """To: observation steps in an execution window."""
    action_horizon: int = 1
    """Ta: actions in a chunk."""
    clip_len: int = 8
    """T: frames in an observation clip."""
    image_size: int = 84
    """Side of the observer camera's square frames."""
    classes: list[str] = field(default_factory=list)
    """Name of each class label: the demos' ``class`` (``drawer``), or their task where the files
    have no class (format_version 1, robomimic's own files)."""
    instructions: list[str] = field(default_factory=list)
    """Text of each instruction id."""
    tasks: list[str] = field(default_factory=list)
    """Task names in the order the data first shows them. Empty in specs saved before the task
    hierarchy, whose ``classes`` were the tasks: use :attr:`task_names`."""
    task_labels: list[int] = field(default_factory=list)
    """Class label (index into ``classes``) of each task of ``tasks``."""
    task_instructions: list[int] = field(default_factory=list)
    """Instruction id (index into ``instructions``) of each task of ``tasks`` (its first demo's)."""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> DataSpec:
        return cls(**raw)  # JSON saved before a field was added takes that field's default

    @property
    def task_names(self) -> list[str]:
        """The tasks of the data: ``tasks``, or, for a spec saved before it existed, ``classes``."""
        return list(self.tasks) if self.tasks else list(self.classes)

    def task_label(self, task: str) -> int:
        """The class label of ``task`` (old specs: its position in ``classes``)."""
        if self.tasks and len(self.task_labels) == len(self.tasks):
            return self.task_labels[self.tasks.index(task)]
        return self.classes.index(task)

    @property
    def low_dim_keys(self) -> list[str]:
        return [k for k, s in self.obs_shapes.items() if len(s) == 1]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, s in self.obs_shapes.items() if len(s) == 3]


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
