"""One optimisation step (:func:`update_step`) and what it runs under: seeds, the precision
(autocast and gradient scaling), moving a batch to the device."""

from __future__ import annotations

import contextlib
import math
import random

import numpy as np
import torch
from torch import nn

from embodied.train.optim import EMA, FlatAdamW


# --------------------------------------------------------------------------- one step
def update_step(
    model: nn.Module,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_clip: float = 0.0,
    autocast=contextlib.nullcontext,
    scaler: torch.amp.GradScaler | None = None,
    ema: EMA | None = None,
) -> dict[str, float]:
    """One optimiser step on one batch: forward, backward, clip, step, schedule, EMA; its metrics."""
    model.train()
    with autocast():
        loss, metrics = model(batch)
    if scaler is not None:  # fp16: scale the loss so small gradients do not underflow
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    max_norm = grad_clip if grad_clip > 0 else math.inf
    if isinstance(optimizer, FlatAdamW):
        grad_norm = optimizer.clip_grad_norm_(max_norm)
    else:  # foreach: one batched norm over all the gradients (the same result as one norm per tensor)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    if ema is not None:
        ema.update()
    metrics["grad_norm"] = float(grad_norm)
    metrics["lr"] = optimizer.param_groups[0]["lr"]
    return metrics


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (code that draws from numpy's global generator)
    torch.manual_seed(seed)


def precision(device: torch.device, mode: str = "auto"):
    """(autocast context factory, grad scaler or None) for ``TrainConfig.precision`` ``mode``.

    auto: bf16 autocast (or fp16 with loss scaling) on CUDA, fp32 on a CPU; fp32: no autocast;
    bf16: bf16 autocast on CUDA or a CPU.
    """
    dtype = autocast_dtype(device, mode)
    if dtype is None:
        return contextlib.nullcontext, None
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def autocast_dtype(device: torch.device, mode: str = "auto") -> torch.dtype | None:
    """The dtype ``precision(device, mode)`` autocasts to; None: fp32, no autocast."""
    if mode not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {mode!r}")
    if mode == "fp32" or (mode == "auto" and device.type != "cuda"):
        return None
    return torch.bfloat16 if mode == "bf16" or torch.cuda.is_bf16_supported() else torch.float16


def precision_name(device: torch.device, mode: str = "auto") -> str:
    """What the steps of ``precision(device, mode)`` compute in: fp32, bf16 or fp16 (auto resolved)."""
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype(device, mode)]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (a CPU: AVX512-BF16 or AMX), not emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: to_device(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True)
        for k, v in batch.items()
    }
