"""Training: policy (E), recognizer (U), both with the mirror head, a probe of frozen models, and
the controls of the mirror comparison.

- :mod:`.config`: :class:`TrainConfig` (every field documented; ``embodied-train --help``);
- :mod:`.objective`, :mod:`.objectives`: the registered training objectives (what trains, on
  which batches, with which loss) and :class:`~.objective.TrainModule`;
- :mod:`.models`: the one model factory (every part, fresh or from a checkpoint);
- :mod:`.loop`: :func:`train`, the run: the thin loop around the one :func:`update_step`
  (:mod:`.step`), with its set-up (:mod:`.setup`), hooks (:mod:`.hooks`: validation, rollouts,
  checkpoints) and output folder and log (:mod:`.runlog`);
- :mod:`.checkpoint`: plain-data checkpoints, exact resume, :func:`load_model` for evaluation;
- :mod:`.sampling`: the reproducible, sharded, resumable batch order;
- :mod:`.optim`: parameter groups, the learning-rate schedule, EMA;
- :mod:`.distributed`: one process per device under torchrun;
- :mod:`.rollouts`: the seam to simulator rollouts (``embodied.eval``, when installed).
"""

from embodied.train.config import DataConfig, OptimConfig, ProbeConfig, TrainConfig

_TORCH = ("load_model", "train", "update_step")
"""Imported on first use (torch, the models, the objectives): the config above is read, and
``embodied-train --help`` written, without them."""


def __getattr__(name: str):
    if name not in _TORCH:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from embodied.train import checkpoint, loop, step

    return {"load_model": checkpoint.load_model, "train": loop.train, "update_step": step.update_step}[name]


__all__ = ["DataConfig", "OptimConfig", "ProbeConfig", "TrainConfig", "load_model", "train", "update_step"]
