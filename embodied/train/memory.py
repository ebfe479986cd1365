"""What a training run will hold in memory, estimated from its config before any weight is made,
and the refusal, in one line, of a run the machine cannot hold.

A run too large for the machine does not fail at once: a recognizer twelve stages deep allocated
24 GB while it was built and was killed by the kernel, without a word. So, before the models are
built, the estimate takes:

- **parameters**: the models built on PyTorch's ``meta`` device (shapes, no storage), each
  parameter costing its weight, its gradient and AdamW's two moments (and the EMA copy);
- **activations**: one pass of the objective's loss over a batch of ``meta`` tensors at the
  batch size, adding up every operation's output (what autograd keeps for the backward pass and
  the temporaries between: an upper bound), twice for their gradients;
- **data**: the demonstrations the reader holds in memory (image streams it caches, low-dim
  arrays), already read at this point.

The parameters and activations must fit in what the device has free now (for a CPU, the
machine's available memory shared by the processes of the run on it). An estimate that cannot
be made (an operation without a meta kernel) leaves out the activations and says so. It costs a
process about 1.3 s once (the first meta tensor imports PyTorch's meta kernels), then 0.02-0.3 s
for the configs in ``configs/`` (this 2-core CPU, loaded).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from embodied import keys as K
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.limits import available_memory

GIB = 1 << 30
STATE_PER_PARAMETER = 4
"""Tensors kept per parameter in training: the weight, its gradient, AdamW's two moments."""


@dataclass
class MemoryEstimate:
    parameters: int
    parameter_bytes: int
    """Weights, gradients and optimizer state."""
    activation_bytes: int | None
    """None where the pass over meta tensors could not be made."""
    data_bytes: int

    @property
    def model_bytes(self) -> int:
        """What must still fit: parameters and activations (the data is in memory already)."""
        return self.parameter_bytes + (self.activation_bytes or 0)

    def describe(self, batch: int) -> str:
        acts = (
            f"activations at batch {batch} {self.activation_bytes / GIB:.2f} GiB"
            if self.activation_bytes is not None
            else "activations not estimated"
        )
        return (
            f"{self.parameters:,} parameters {self.parameter_bytes / GIB:.2f} GiB with gradients and "
            f"optimizer state, {acts}, data in memory {self.data_bytes / GIB:.2f} GiB"
        )


class _Outputs(TorchFunctionMode):
    """Adds up the bytes of every torch function's tensor outputs on meta tensors (a view shares
    its input's storage and is left out); a read of a value (``.item()``, ``if tensor``), which
    meta tensors cannot give, reads 0."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _READS and args and getattr(args[0], "is_meta", False):
            return _READS[func]
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_meta and t._base is None:
                self.bytes += t.numel() * t.element_size()
        return out


_READS = {
    torch.Tensor.item: 0,
    torch.Tensor.__bool__: False,
    torch.Tensor.__float__: 0.0,
    torch.Tensor.__int__: 0,
}
"""Methods that read a value out of a tensor, and what they read from a meta tensor here."""


def meta_batch(spec: DataSpec, mode: str, batch: int, clip_len: int) -> dict:
    """A batch of meta tensors with the shapes the reader gives (design.md, Batches)."""
    meta = dict(device="meta")
    out: dict = {
        K.LABEL: torch.zeros(batch, dtype=torch.long, **meta),
        K.INSTRUCTION: torch.zeros(batch, dtype=torch.long, **meta),
        K.EPISODE: torch.zeros(batch, dtype=torch.long, **meta),
    }
    if mode in ("window", "paired"):
        to, ta = spec.obs_horizon, spec.action_horizon
        out[K.OBS] = {
            k: torch.zeros(batch, to, *shape, dtype=torch.uint8 if len(shape) == 3 else torch.float32, **meta)
            for k, shape in spec.obs_shapes.items()
        }
        out[K.ACTIONS] = torch.zeros(batch, ta, spec.action_dim, **meta)
        out[K.ACTION_MASK] = torch.zeros(batch, ta, dtype=torch.bool, **meta)
    if mode in ("clip", "paired"):
        side = spec.image_size
        out[K.VIDEO] = torch.zeros(batch, clip_len, 3, side, side, dtype=torch.uint8, **meta)
    return out


def estimate(cfg, spec: DataSpec, stats: dict, sources: dict, datasets) -> MemoryEstimate:
    """The estimate of a run of ``cfg`` (module doc); ``datasets``: the readers built for it."""
    objective = cfg.objective
    with torch.device("meta"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a frozen part's checkpoint weights load into meta ones: a no-op
        models, _ = objective.build_models(cfg, spec, stats, sources)
    params = sum(p.numel() for m in models.values() for p in m.parameters())
    trained = sum(
        p.numel() for name, m in models.items() if name not in objective.frozen for p in m.parameters()
    )
    per = STATE_PER_PARAMETER + (1 if cfg.optim.ema > 0 else 0)
    parameter_bytes = 4 * (params + (per - 1) * trained)
    parts = nn.ModuleDict(models).train()
    for name in objective.frozen:  # as TrainModule.train(): frozen parts stay in eval mode
        parts[name].eval()
    counter = _Outputs()
    try:
        with counter:
            objective.loss(parts, meta_batch(spec, objective.data, cfg.data.batch_size, cfg.data.clip_len))
        activations: int | None = 2 * counter.bytes
    except (NotImplementedError, RuntimeError):  # an operation without a meta kernel
        activations = None
    data = sum(ds.memory_bytes() for ds in datasets if ds is not None)
    return MemoryEstimate(params, parameter_bytes, activations, data)


def check_fits(cfg, est: MemoryEstimate, device: torch.device) -> None:
    """Refuse, in one line, a run whose parameters and activations exceed what ``device`` has free."""
    if device.type == "cuda":
        free, where = torch.cuda.mem_get_info(device)[0], f"free on {device}"
    else:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # processes of this run on this machine
        free = available_memory() // max(1, local)
        where = "available here" + (f" per process ({local} processes)" if local > 1 else "")
    if free is not None and est.model_bytes > free:
        raise UserError(
            f"this run needs about {est.model_bytes / GIB:.1f} GiB ({est.describe(cfg.data.batch_size)}), "
            f"but {free / GIB:.1f} GiB are {where}; make the models smaller (recognizer.depth, width, "
            "input_size, policy.hidden_dim) or data.batch_size or data.clip_len"
        )
