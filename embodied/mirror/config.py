"""The mirror head's settings, :class:`MirrorConfig`, and the positive levels of its loss.

Apart from the head and the loss (torch), so that a training config is read, and
``embodied-train --help`` written, without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from embodied.limits import MAX_WIDTH, check_range

LEVELS = ("episode", "instruction", "class")
"""Positive levels of the alignment loss, finest first (:mod:`embodied.mirror.loss`)."""

TEMPERATURE_MIN = 0.01
"""Lower clamp of a learnable temperature: CLIP caps its logit scale 1/tau at 100."""
TEMPERATURE_MAX = 1.0
"""Upper clamp of a learnable temperature: above 1 the softmax over cosines is nearly flat."""


@dataclass
class MirrorConfig:
    dim: int = 1024
    """Width of the shared space Z that T_u and T_e map into (1 to 8192; paper: 1024)."""
    temperature: float = 0.1
    """Softmax temperature tau over cosine similarities (paper: 0.1); the initial value if learnable."""
    learnable_temperature: bool = False
    """Learn log(tau) as a parameter (CLIP-style), clamped to [0.01, 1]."""
    positives: Literal["episode", "instruction", "class"] = "instruction"
    """Which pairs are positives: same episode, same instruction (paper's default and best), same class."""
    weight: float = 0.5
    """lambda_align: weight of the alignment loss in the joint loss (paper: 0.5)."""
    lambda_ee: float = 1.0
    """lambda_EE: weight of the policy's loss L_EE in the joint loss (paper: 1). The joint loss
    is L = L_AU + lambda_ee * L_EE + weight * L_align; both weights live here."""
    lr: float = 1e-4
    """Learning rate of T_u, T_e (and the temperature) (paper: 1e-4)."""

    def __post_init__(self) -> None:
        check_range("dim", self.dim, 1, MAX_WIDTH)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.learnable_temperature and not TEMPERATURE_MIN <= self.temperature <= TEMPERATURE_MAX:
            raise ValueError(
                f"a learnable temperature is clamped to [{TEMPERATURE_MIN}, {TEMPERATURE_MAX}]; "
                f"its initial value {self.temperature} is outside"
            )
        if self.positives not in LEVELS:
            raise ValueError(f"positives must be one of {', '.join(LEVELS)}, got {self.positives!r}")
        if not self.weight >= 0:
            raise ValueError(f"weight must be >= 0, got {self.weight}")
        if not self.lambda_ee >= 0:
            raise ValueError(f"lambda_ee must be >= 0, got {self.lambda_ee}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
