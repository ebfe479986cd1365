"""Training: policy (E), recognizer (U), both with the mirror head, or a probe of frozen models.

- :mod:`.config`: :class:`TrainConfig` (every field documented; ``embodied-train --help``);
- :mod:`.loop`: :func:`train`, the run: the thin loop around the one :func:`update_step`
  (:mod:`.step`), with its set-up (:mod:`.setup`), objective (:mod:`.objective`), validation
  (:mod:`.validation`) and output folder and log (:mod:`.runlog`);
- :mod:`.checkpoint`: plain-data checkpoints, exact resume, :func:`load_model` for evaluation;
- :mod:`.sampling`: the reproducible, sharded, resumable batch order;
- :mod:`.optim`: parameter groups, the learning-rate schedule, EMA;
- :mod:`.distributed`: one process per device under torchrun;
- :mod:`.rollouts`: the seam to simulator rollouts (``embodied.eval``, when installed).
"""

from embodied.train.checkpoint import load_model
from embodied.train.config import DataConfig, OptimConfig, ProbeConfig, TrainConfig
from embodied.train.loop import train
from embodied.train.step import update_step

__all__ = ["DataConfig", "OptimConfig", "ProbeConfig", "TrainConfig", "load_model", "train", "update_step"]
