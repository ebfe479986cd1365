"""Training objectives as registered entries, and :class:`TrainModule`, the models of a run and
its loss.

An objective (robomimic's algorithm factory, LeRobot's registered policy configs) is one class
in :mod:`embodied.train.objectives`, registered under the name a config's ``mode`` gives it. It
declares what the rest of training asks of it:

- ``sections``: the config sections it needs (of ``policy``, ``recognizer``, ``mirror``,
  ``probe``); the others must be absent;
- ``data``: the batches it trains on: execution ``window`` s, observation ``clip`` s, or
  ``paired`` batches holding both, row i of each from one episode;
- ``trains``: the models it trains (a policy is rolled out, a recognizer evaluated);
  ``frozen``: the models it loads from other runs' checkpoints and leaves alone;
  ``provides``: the trained models its checkpoints hold for a probe;
- ``contrastive``: its loss compares the rows of a batch (InfoNCE), so a batch needs two;
- :meth:`Objective.resolve`, :meth:`Objective.build_models` and :meth:`Objective.loss`: the
  data settings made explicit, the models, and the loss of one batch.

Config checking (:meth:`Objective.check_config`), set-up, the step, checkpoints and the bench
ask the entry; nothing outside the entries matches an objective's name. Adding one is a module
in :mod:`embodied.train.objectives` and its line in that package's ``__init__``.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import nn

from embodied.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from embodied.data.spec import DataSpec
    from embodied.train.config import TrainConfig

SECTIONS = ("policy", "recognizer", "mirror", "probe")
"""The optional config sections an objective may need."""

Features = tuple[torch.Tensor, torch.Tensor] | None
"""(f_u (B, D_u), f_e (B, D_e)) of a batch, for the alignment metrics; None without a mirror head."""


class Objective:
    """One training objective; subclasses set the class attributes and override the hooks."""

    name: ClassVar[str]
    """The ``mode`` of a config that picks it; ``kind`` in its checkpoints."""
    summary: ClassVar[str]
    """One line for ``embodied-train --help``."""
    sections: ClassVar[tuple[str, ...]]
    data: ClassVar[Literal["window", "clip", "paired"]]
    trains: ClassVar[frozenset[str]]
    frozen: ClassVar[frozenset[str]] = frozenset()
    provides: ClassVar[frozenset[str]] = frozenset()
    contrastive: ClassVar[bool] = False

    # ----------------------------------------------------------------- declarations, derived
    @property
    def probes(self) -> bool:
        """Only the mirror head trains, between frozen models: its alignment is the measurement."""
        return not self.trains - {"mirror"}

    def check_config(self, cfg: TrainConfig) -> None:
        """Raise ValueError where ``cfg`` does not fit this objective (TrainConfig's own check)."""
        for section in SECTIONS:
            present = getattr(cfg, section) is not None
            if section in self.sections and not present:
                raise ValueError(f"mode {self.name} needs a {section} section")
            if section not in self.sections and present:
                hint = " (its frozen models come from probe.*_ckpt)" if self.frozen else ""
                raise ValueError(f"mode {self.name} does not use the {section} section; remove it{hint}")
        for name in ("policy", "recognizer") if cfg.probe is not None else ():
            given = bool(getattr(cfg.probe, f"{name}_ckpt"))
            if name in self.frozen and not given:
                raise ValueError(f"mode {self.name} needs probe.{name}_ckpt (its frozen {name})")
            if given and name not in self.frozen:
                raise ValueError(f"mode {self.name} does not freeze a {name}; remove probe.{name}_ckpt")
        if self.contrastive and cfg.data.batch_size < 2:
            raise ValueError(
                f"InfoNCE needs a batch of at least 2 pairs, got data.batch_size={cfg.data.batch_size}"
            )
        if cfg.rollout_every and "policy" not in self.trains:
            raise ValueError(
                f"rollouts need a trained policy; mode {self.name} has none (set rollout_every=0)"
            )

    # ----------------------------------------------------------------- hooks
    def resolve(self, cfg: TrainConfig) -> tuple[TrainConfig, dict[str, dict]]:
        """The config with its data settings made explicit, and the checkpoint entries of the
        frozen models it reads (``{name: entry}``, with the source run's config under ``run``)."""
        if cfg.data.obs_keys is None:
            # a policy's keys; None (a policy that reads every low-dim stream): the reader's default
            keys = cfg.policy.obs_keys if cfg.policy else []
            data = dataclasses.replace(cfg.data, obs_keys=None if keys is None else list(keys))
            cfg = dataclasses.replace(cfg, data=data)
        return cfg, {}

    def vocabulary(self, sources: dict[str, dict]) -> DataSpec | None:
        """The classes and instructions the data must be read with (a frozen model's); None: the data's."""
        return None

    def build_models(
        self, cfg: TrainConfig, spec: DataSpec, stats: dict, sources: dict[str, dict]
    ) -> tuple[dict[str, nn.Module], dict[str, tuple]]:
        """``{name: model}`` and ``{name: (config, spec)}`` each model is saved with."""
        raise NotImplementedError

    def prepare(self, cfg: TrainConfig, models: dict[str, nn.Module], train_ds) -> None:
        """Anything the built models need from the train split before the first step (a random
        control's normalisation statistics); by default nothing."""

    def learning_rates(self, cfg: TrainConfig) -> dict[str, float]:
        """Models trained at their own learning rate (the others at ``optim.lr``)."""
        return {"mirror": cfg.mirror.lr} if cfg.mirror is not None else {}

    def loss(self, models: nn.ModuleDict, batch: dict) -> tuple[torch.Tensor, dict[str, float], Features]:
        """(total loss, metrics, features) of one batch."""
        raise NotImplementedError


OBJECTIVES: dict[str, Objective] = {}
"""Every objective registered so far by name, in registration order; :func:`registered` is all of them."""


def registered() -> dict[str, Objective]:
    """Every registered objective by name, in registration order. The entries register themselves
    when :mod:`embodied.train.objectives` is imported, here on first use, so that reading a
    training config imports none of them (``embodied-train --help``)."""
    from embodied.train import objectives  # noqa: F401  (registers every objective)

    return OBJECTIVES


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator: add an objective to :data:`OBJECTIVES` under its ``name``."""
    if cls.name in OBJECTIVES:
        raise ValueError(f"objective {cls.name!r} is registered twice")
    OBJECTIVES[cls.name] = cls()
    return cls


def get_objective(name: str) -> Objective:
    """The registered objective ``name``; another name is a ValueError listing the known ones."""
    try:
        return registered()[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; {did_you_mean(name, OBJECTIVES)}") from None


def checkpoint_objective(kind: str, where: str) -> Objective:
    """The objective of a checkpoint's ``kind``; an unknown one is a UserError naming the file."""
    try:
        return get_objective(kind)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None


def prefixed(name: str, metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` under ``name/``: each model's own metrics in the run's log."""
    return {f"{name}/{k}": v for k, v in metrics.items()}


# --------------------------------------------------------------------------- the module
class TrainModule(nn.Module):
    """Every model of a run and its objective's loss of one batch; what DDP wraps.

    The models expose ``loss()``, not ``forward()``; DDP synchronises gradients only through
    its wrapped module's forward, so the total loss is computed here.
    """

    def __init__(self, objective: Objective, models: dict[str, nn.Module]) -> None:
        super().__init__()
        self.objective = objective
        self.models = nn.ModuleDict(models)

    def train(self, mode: bool = True) -> TrainModule:
        super().train(mode)
        for name in self.objective.frozen:  # frozen models stay in eval: no dropout, no augmentation
            self.models[name].eval()
        return self

    def use_channels_last(self) -> None:
        """Hold every 2-D/3-D convolution's weight in channels-last memory (NHWC, NDHWC).

        oneDNN (and cuDNN) then run the convolution in that layout and return channels-last
        activations, which the following layers keep; the values are the same, the rounding of the
        convolutions may differ. State dicts and checkpoints do not change.
        """
        for m in self.modules():
            if isinstance(m, nn.modules.conv._ConvNd) and m.weight.dim() in (4, 5):
                fmt = torch.channels_last if m.weight.dim() == 4 else torch.channels_last_3d
                m.weight.data = m.weight.data.contiguous(memory_format=fmt)

    def compile_backbones(self, **options) -> list[str]:
        """``torch.compile`` each trained convolutional backbone for the training steps; their names.

        The backbones: each image encoder's conv stack (policy) and the recognizer's backbone,
        except a frozen model's (nothing trains through it) and one holding a feature tap
        strictly inside it (a hook added per call would make every call recompile). Only the
        module's ``forward`` is replaced, so the parameters, state dicts and checkpoints stay the
        same, forward hooks on the backbone itself still run, and evaluation (eval mode or no
        gradients: validation, rollouts) runs the eager code, so a batch of another size never
        recompiles. ``options`` go to ``torch.compile``.
        """
        from embodied.policies.encoders import ImageEncoder

        targets: list[tuple[str, nn.Module, str]] = []  # (name, module, the model's tap)
        if "policy" in self.models and "policy" not in self.objective.frozen:
            policy = self.models["policy"]
            for name, m in policy.named_modules():
                if isinstance(m, ImageEncoder):
                    targets.append((f"policy.{name}.backbone", m.backbone, f"policy.{policy.tap_name}"))
        if "recognizer" in self.models and "recognizer" not in self.objective.frozen:
            recognizer = self.models["recognizer"]
            targets.append(("recognizer.backbone", recognizer.backbone, f"recognizer.{recognizer.tap_name}"))
        done = []
        for name, module, tap in targets:
            if tap.startswith(name + "."):
                continue
            module.forward = _CompiledForTraining(module, **options)
            done.append(name)
        return done

    def compute(self, batch: dict) -> tuple[torch.Tensor, dict[str, float], Features]:
        """(total loss, metrics, (f_u, f_e) features or None) of one batch."""
        loss, metrics, features = self.objective.loss(self.models, batch)
        metrics["loss"] = loss.item()
        return loss, metrics, features

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics, _ = self.compute(batch)
        return loss, metrics


class _CompiledForTraining:
    """A module's ``forward``, compiled for training (training mode with gradients), eager otherwise.

    Pickles (and deep-copies) as the eager forward, so a policy sent to rollout workers carries
    no compiled code.
    """

    def __init__(self, module: nn.Module, **options) -> None:
        self.module = module
        self.compiled = torch.compile(type(module).forward.__get__(module), **options)

    def __call__(self, *args, **kwargs):
        if self.module.training and torch.is_grad_enabled():
            return self.compiled(*args, **kwargs)
        return type(self.module).forward(self.module, *args, **kwargs)

    def __reduce__(self):
        return getattr, (self.module, "forward")
