"""The training objective of every mode: :class:`TrainModule`, the models of a run and the loss
that combines them (policy, recognizer, ``L_AU + mirror.lambda_ee * L_EE + mirror.weight * L_align``
for joint, the alignment alone for a probe)."""

from __future__ import annotations

import torch
from torch import nn

from embodied import keys as K


# --------------------------------------------------------------------------- the loss
class TrainModule(nn.Module):
    """Every model of a run and the total loss of one batch; what DDP wraps.

    The models expose ``loss()``, not ``forward()``; DDP synchronises gradients only through
    its wrapped module's forward, so the total loss is computed here.
    """

    def __init__(self, mode: str, models: dict[str, nn.Module]) -> None:
        super().__init__()
        self.mode = mode
        self.models = nn.ModuleDict(models)

    def train(self, mode: bool = True) -> TrainModule:
        super().train(mode)
        if self.mode == "probe":  # frozen models stay in eval: no dropout, no augmentation, fixed BN
            self.models["policy"].eval()
            self.models["recognizer"].eval()
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
        """``torch.compile`` each convolutional backbone for the training steps; their names.

        The backbones: each image encoder's conv stack (policy) and the recognizer's backbone,
        except one holding a feature tap strictly inside it (a hook added per call would make
        every call recompile). Only the module's ``forward`` is replaced, so the parameters, state
        dicts and checkpoints stay the same, forward hooks on the backbone itself still run, and
        evaluation (eval mode or no gradients: validation, rollouts) runs the eager code, so a
        batch of another size never recompiles. ``options`` go to ``torch.compile``.
        """
        from embodied.policies.encoders import ImageEncoder

        if self.mode == "probe":  # frozen models: nothing trains through them
            return []
        targets: list[tuple[str, nn.Module, str]] = []  # (name, module, the model's tap)
        if "policy" in self.models:
            policy = self.models["policy"]
            for name, m in policy.named_modules():
                if isinstance(m, ImageEncoder):
                    targets.append((f"policy.{name}.backbone", m.backbone, f"policy.{policy.tap_name}"))
        if "recognizer" in self.models:
            recognizer = self.models["recognizer"]
            targets.append(("recognizer.backbone", recognizer.backbone, f"recognizer.{recognizer.tap_name}"))
        done = []
        for name, module, tap in targets:
            if tap.startswith(name + "."):
                continue
            module.forward = _CompiledForTraining(module, **options)
            done.append(name)
        return done

    def compute(self, batch: dict) -> tuple[torch.Tensor, dict[str, float], tuple | None]:
        """(total loss, metrics, (f_u, f_e) features or None) of one batch."""
        m = self.models
        metrics: dict[str, float] = {}
        features = None
        if self.mode == "policy":
            loss, part = m["policy"].loss(batch)
            metrics |= _prefixed("policy", part)
        elif self.mode == "recognizer":
            loss, part = m["recognizer"].loss(batch)
            metrics |= _prefixed("recognizer", part)
        else:
            if self.mode == "joint":
                out_u = m["recognizer"](batch[K.VIDEO], with_features=True)
                loss_u, part_u = m["recognizer"].loss(batch, outputs=out_u)
                loss_e, part_e, f_e = m["policy"].loss_and_features(batch)  # (B, D_e)
                f_u = out_u["features"]  # (B, D_u)
                metrics |= _prefixed("recognizer", part_u) | _prefixed("policy", part_e)
            else:  # probe: frozen models, only T_u and T_e learn
                with torch.no_grad():
                    f_u = m["recognizer"].features(batch[K.VIDEO])  # (B, D_u)
                    f_e = m["policy"].features(batch)  # (B, D_e)
            loss_a, part_a = m["mirror"](
                f_u.float(), f_e.float(), batch[K.EPISODE], batch[K.INSTRUCTION], batch[K.LABEL]
            )
            metrics |= _prefixed("mirror", part_a)
            if self.mode == "joint":  # L = L_AU + lambda_EE * L_EE + lambda_align * L_align
                weights = m["mirror"].config
                loss = loss_u + weights.lambda_ee * loss_e + weights.weight * loss_a
            else:
                loss = loss_a
            features = (f_u.detach(), f_e.detach())
        metrics["loss"] = loss.item()
        return loss, metrics, features

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        loss, metrics, _ = self.compute(batch)
        return loss, metrics


def _prefixed(name: str, metrics: dict[str, float]) -> dict[str, float]:
    return {f"{name}/{k}": v for k, v in metrics.items()}


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
