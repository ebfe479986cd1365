"""Optimiser pieces: parameter groups, the learning-rate schedule, and an EMA of the weights."""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from torch import nn

from embodied.train.config import OptimConfig


def param_groups(models: dict[str, nn.Module], optim: OptimConfig, lrs: dict[str, float]) -> list[dict]:
    """AdamW groups per model: weight matrices and kernels decay, biases and norm scales do not
    (as nanoGPT and timm do); each model at its own learning rate (``lrs``, default ``optim.lr``)."""
    groups = []
    for name, model in models.items():
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        lr = lrs.get(name, optim.lr)
        for suffix, ps, wd in (("", decay, optim.weight_decay), ("/no_decay", no_decay, 0.0)):
            if ps:
                groups.append({"name": name + suffix, "params": ps, "lr": lr, "weight_decay": wd})
    return groups


def lr_factor(step: int, warmup: int, steps: int, schedule: str) -> float:
    """Learning-rate factor at step s: linear warm-up to 1, then cosine to 0 at ``steps`` or constant."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, steps: int):
    # A partial, not an object with attributes: LambdaLR saves (and on loading restores) the
    # attributes of a callable object, which would pin ``steps`` to the checkpoint's and keep a
    # resumed run from being extended. Its state is then only the step count.
    factor = functools.partial(lr_factor, warmup=optim.warmup_steps, steps=steps, schedule=optim.schedule)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EMA:
    """Exponential moving average of a module's parameters; buffers are copied as they are.

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after n updates (TensorFlow's
    ``ExponentialMovingAverage(num_updates=...)``), so a short run is not dominated by the
    initial weights.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.module = module
        self.decay = decay
        self.updates = 0
        self.params = {n for n, p in module.named_parameters() if p.requires_grad}
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in self.module.state_dict().items():
            if k in self.params:
                self.shadow[k].lerp_(v, 1.0 - d)
            else:
                self.shadow[k].copy_(v)

    @contextlib.contextmanager
    def applied(self):
        """Run the block with the averaged weights in the module, then put the trained ones back."""
        backup = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
        self.module.load_state_dict(self.shadow)
        try:
            yield self.module
        finally:
            self.module.load_state_dict(backup)

    def state_dict(self) -> dict:
        return {"updates": self.updates, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)
