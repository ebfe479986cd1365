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


def _dense(t: torch.Tensor) -> bool:
    """Whether ``t`` fills its numel elements without gaps in one of the layouts a parameter has."""
    formats = [torch.contiguous_format]
    formats += [torch.channels_last] if t.dim() == 4 else [torch.channels_last_3d] if t.dim() == 5 else []
    return any(t.is_contiguous(memory_format=f) for f in formats)


class FlatAdamW(torch.optim.AdamW):
    """AdamW over one flat buffer per parameter group: the same update, a few kernels per group.

    Why: on a CPU torch's ``foreach`` kernels still launch one kernel per tensor, so AdamW's ~8
    operations, the gradient-norm clip and ``zero_grad`` cost ~10 small kernels per parameter
    tensor, and the visual models have many small tensors (151 in the joint visual step; what
    that cost is in docs/speed.md). Here each group's parameters become views of one buffer (each with
    its own strides, so channels-last kernels stay so) and their gradients views of another,
    which autograd accumulates into in place; the group holds one flat parameter, so AdamW,
    the clip and ``zero_grad`` (which zeroes the buffer) run a few kernels per group.

    Build it after the module is on its device and in its memory format: a later ``.to()`` or
    ``p.data = ...`` would detach a parameter from the buffer. ``state_dict()`` and
    ``load_state_dict()`` speak torch's per-parameter format, so checkpoints are interchangeable
    with ``torch.optim.AdamW``'s. With :meth:`clip_grad_norm_` the step is bit for bit that of
    ``torch.optim.AdamW(foreach=True)`` after ``torch.nn.utils.clip_grad_norm_`` (tested).

    A parameter that gets no gradient is left as AdamW leaves it (no decay, no moments): hooks
    watch the parameters not yet seen with a gradient, and those the step restores. One that
    had gradients and then gets none in some step is stepped with a zero gradient (its moments
    decay, weight decay applies), as flat optimisers (DeepSpeed's, Apex's) do, and one whose
    first gradient comes late takes its group's step count for Adam's bias correction.
    """

    def __init__(self, groups: list[dict], **kwargs) -> None:
        super().__init__(groups, **kwargs)
        self.members: list[list[nn.Parameter]] = []  # each flat group's parameters, in order
        self.grad_views: list[list[torch.Tensor]] = []  # each parameter's view of its group's grads
        flat_groups = []
        for group in self.param_groups:
            params = group["params"]
            p0 = params[0]
            if any(p.dtype != p0.dtype or p.device != p0.device or not _dense(p) for p in params):
                raise ValueError("FlatAdamW needs a group's parameters dense and of one dtype and device")
            n = sum(p.numel() for p in params)
            flat = torch.empty(n, dtype=p0.dtype, device=p0.device)
            grad = torch.zeros(n, dtype=p0.dtype, device=p0.device)
            views, offset = [], 0
            for p in params:
                view = flat.as_strided(p.shape, p.stride(), offset)
                view.copy_(p.detach())
                p.data = view
                views.append(grad.as_strided(p.shape, p.stride(), offset))
                p.grad = views[-1]
                offset += p.numel()
            flat_param = nn.Parameter(flat)
            flat_param.grad = grad
            self.members.append(list(params))
            self.grad_views.append(views)
            flat_groups.append({**group, "params": [flat_param]})
        self.param_groups = flat_groups
        # the parameters not yet seen with a gradient: a hook marks each when one arrives
        self.unseen: dict[nn.Parameter, object] = {
            p: p.register_post_accumulate_grad_hook(self._seen) for ps in self.members for p in ps
        }

    def _seen(self, p: nn.Parameter) -> None:
        self.unseen.pop(p).remove()

    def _attach_grads(self) -> None:
        # Someone may have replaced a gradient (module.zero_grad() sets them to None): put it
        # back into the buffer, so the flat step sees it.
        for params, views in zip(self.members, self.grad_views, strict=True):
            for p, view in zip(params, views, strict=True):
                if p.grad is not view:
                    if p.grad is None:
                        view.zero_()
                    else:
                        view.copy_(p.grad)
                    p.grad = view

    @torch.no_grad()
    def step(self, closure=None):
        self._attach_grads()
        kept = {p: p.detach().clone() for p in self.unseen}  # never had a gradient: left alone
        loss = super().step(closure)
        for p, value in kept.items():
            p.copy_(value)
        return loss

    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` over the parameters (foreach), bit for bit: the norm
        from each parameter's gradient as torch sums it, the scaling once per buffer."""
        self._attach_grads()
        views = [v for vs in self.grad_views for v in vs]
        total = torch.nn.utils.get_total_norm(views, foreach=True)
        flat = [group["params"][0] for group in self.param_groups]
        torch.nn.utils.clip_grads_with_norm_(flat, max_norm, total, foreach=True)
        return total

    def zero_grad(self, set_to_none: bool = True) -> None:
        # the buffers stay: autograd accumulates into their views
        for group in self.param_groups:
            group["params"][0].grad.zero_()

    @staticmethod
    def _part(buffer: torch.Tensor, p: nn.Parameter) -> torch.Tensor:
        """``p``'s part of a buffer laid out as its group's (``p`` is a view of the group's)."""
        return buffer.as_strided(p.shape, p.stride(), p.storage_offset())

    def state_dict(self) -> dict:
        """torch.optim.AdamW's format: state per parameter (those that have been stepped)."""
        flat = super().state_dict()
        state, groups, index = {}, [], 0
        for i, params in enumerate(self.members):
            packed = {k: v for k, v in flat["param_groups"][i].items() if k != "params"}
            packed["params"] = list(range(index, index + len(params)))
            groups.append(packed)
            s = flat["state"].get(i)
            for p in params:
                if s and p not in self.unseen:
                    state[index] = {
                        key: self._part(v, p).clone() if key != "step" else v.clone() for key, v in s.items()
                    }
                index += 1
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load torch.optim.AdamW's per-parameter format (as :meth:`state_dict` writes it)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.members) or any(
            len(g["params"]) != len(ps) for g, ps in zip(saved_groups, self.members, strict=True)
        ):
            raise ValueError("the optimizer state's parameter groups do not match the model's")
        state, groups = {}, []
        for i, params in enumerate(self.members):
            saved = [state_dict["state"].get(k) for k in saved_groups[i]["params"]]
            groups.append({**saved_groups[i], "params": [i]})
            present = [s for s in saved if s]
            if not present:
                continue
            flat = self.param_groups[i]["params"][0]
            merged = {"step": max((s["step"] for s in present), key=float).clone()}
            for key in present[0]:
                if key == "step":
                    continue
                buffer = torch.zeros_like(flat)
                for p, s in zip(params, saved, strict=True):
                    if s:
                        self._part(buffer, p).copy_(s[key])
                merged[key] = buffer
            state[i] = merged
            for p, s in zip(params, saved, strict=True):
                if s and p in self.unseen:  # stepped before: no longer left alone
                    self._seen(p)
        super().load_state_dict({"state": state, "param_groups": groups})


def make_optimizer(groups: list[dict], optim: OptimConfig) -> FlatAdamW:
    """The optimiser of a run over ``param_groups(...)``: :class:`FlatAdamW` at ``optim``'s settings."""
    return FlatAdamW(groups, lr=optim.lr, betas=tuple(optim.betas), foreach=True)


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
