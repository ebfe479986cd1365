"""Training: policy (E), recognizer (U), both with the mirror head, or a probe of frozen models.

- :mod:`.config`: :class:`TrainConfig` (every field documented; ``embodied-train --help``);
- :mod:`.loop`: :func:`train`, the one :func:`update_step` and the thin loop around it;
- :mod:`.checkpoint`: plain-data checkpoints, exact resume, :func:`load_model` for evaluation;
- :mod:`.sampling`: the reproducible, sharded, resumable batch order;
- :mod:`.optim`: parameter groups, the learning-rate schedule, EMA;
- :mod:`.distributed`: one process per device under torchrun;
- :mod:`.rollouts`: the seam to simulator rollouts (``embodied.eval``, when installed).
"""

from embodied.train.checkpoint import load_model
from embodied.train.config import DataConfig, OptimConfig, ProbeConfig, TrainConfig
from embodied.train.loop import train, update_step

__all__ = ["DataConfig", "OptimConfig", "ProbeConfig", "TrainConfig", "load_model", "train", "update_step"]
