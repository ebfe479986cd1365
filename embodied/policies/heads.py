"""Action heads: map the trunk's embedding (B, D) to actions. Shared by every trunk.

A head predicts ``horizon`` actions per call: 1 for the single-step heads (``deterministic``,
``gmm``), Ta for ``chunk``. It is picked by name in the config (``policy.head.name``), so a
trunk never knows which head it feeds: N trunks + M heads cost N + M code.

Every head has the same three methods:

- ``forward(z)``: the raw output (a tensor, or the mixture's parameters);
- ``loss(z, actions, mask)``: actions (B, K, A) in [-1, 1], mask (B, K) bool (False = padding
  past the episode's end, left out of the loss) -> (loss, metrics);
- ``predict(z)``: (B, K, A) actions in [-1, 1], deterministic unless the config says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from embodied.config import Registry
from embodied.data.spec import DataSpec

HEADS = Registry("head")


@dataclass
class HeadConfig:
    registry: ClassVar[Registry] = HEADS

    name: str
    """Registered head: deterministic, gmm, chunk or diffusion."""

    def execute_steps_for(self, action_horizon: int) -> int:
        """Actions executed from each prediction before the policy predicts again."""
        return 1

    @property
    def temporal_ensemble_coeff(self) -> float | None:
        """ACT's m when predictions are temporally ensembled, else None."""
        return None


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, K) over the entries where ``mask`` (B, K) is True."""
    # where, not a product: a NaN in padding would survive NaN * 0. The clamp makes a batch of
    # padding only give 0 rather than 0 / 0.
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1)


# --------------------------------------------------------------------------- regression
@dataclass
class DeterministicHeadConfig(HeadConfig):
    name: str = "deterministic"
    """Registered head: deterministic, gmm, chunk or diffusion."""
    loss: Literal["mse", "l1"] = "mse"
    """Regression loss; robomimic's BC uses the L2 (mse) loss."""

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "l1"):
            raise ValueError(f"loss must be 'mse' or 'l1', got {self.loss!r}")


@dataclass
class ChunkHeadConfig(DeterministicHeadConfig):
    """Action chunking as in ACT (Zhao et al. 2023, arXiv:2304.13705): predict Ta actions."""

    name: str = "chunk"
    """Registered head: deterministic, gmm, chunk or diffusion."""
    loss: Literal["mse", "l1"] = "l1"
    """Regression loss over the chunk; ACT uses L1."""
    execute_steps: int | None = None
    """Actions executed from each chunk before predicting again (None: all Ta, as ACT)."""
    temporal_ensemble: bool = False
    """Predict every step and average all predictions for the current step (ACT, section 3.3)."""
    ensemble_coeff: float = 0.01
    """ACT's m in w_i = exp(-m * i), i = 0 the oldest prediction; larger m favours old ones."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.execute_steps is not None and self.execute_steps < 1:
            raise ValueError(f"execute_steps must be at least 1 (or null for all), got {self.execute_steps}")
        if self.temporal_ensemble and self.execute_steps not in (None, 1):
            raise ValueError(
                "temporal_ensemble predicts at every step, so execute_steps must be 1 or null, "
                f"got {self.execute_steps}"
            )
        if not math.isfinite(self.ensemble_coeff):
            raise ValueError(f"ensemble_coeff must be a finite number, got {self.ensemble_coeff}")

    def execute_steps_for(self, action_horizon: int) -> int:
        if self.temporal_ensemble:
            return 1
        return action_horizon if self.execute_steps is None else self.execute_steps

    @property
    def temporal_ensemble_coeff(self) -> float | None:
        return self.ensemble_coeff if self.temporal_ensemble else None


class RegressionHead(nn.Module):
    """A linear map to ``horizon`` actions, trained with MSE or L1.

    The output is left unbounded in training (a tanh would starve the gradient where scripted
    experts saturate at +-1) and clamped to [-1, 1] at prediction, as LeRobot's ACT does.
    """

    def __init__(self, config: DeterministicHeadConfig, in_dim: int, action_dim: int, horizon: int) -> None:
        super().__init__()
        self.config = config
        self.horizon = horizon
        self.action_dim = action_dim
        self.out = nn.Linear(in_dim, horizon * action_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z).unflatten(-1, (self.horizon, self.action_dim))  # (B, K*A) -> (B, K, A)

    def loss(self, z: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor):
        pred = self(z)  # (B, K, A)
        l1 = (pred - actions).abs().mean(dim=-1)  # (B, K)
        mse = (pred - actions).square().mean(dim=-1)  # (B, K)
        l1, mse = masked_mean(l1, mask), masked_mean(mse, mask)
        loss = l1 if self.config.loss == "l1" else mse
        return loss, {"loss": loss.item(), "l1": l1.item(), "mse": mse.item()}

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        return self(z).clamp(-1.0, 1.0)  # (B, K, A)


@HEADS.register("deterministic", DeterministicHeadConfig)
def _build_deterministic(config: DeterministicHeadConfig, in_dim: int, spec: DataSpec) -> RegressionHead:
    return RegressionHead(config, in_dim, spec.action_dim, horizon=1)


@HEADS.register("chunk", ChunkHeadConfig)
def _build_chunk(config: ChunkHeadConfig, in_dim: int, spec: DataSpec) -> RegressionHead:
    return RegressionHead(config, in_dim, spec.action_dim, horizon=spec.action_horizon)


# --------------------------------------------------------------------------- mixture
@dataclass
class GMMHeadConfig(HeadConfig):
    """robomimic's GMM action head (``GMMActorNetwork``), its defaults included."""

    name: str = "gmm"
    """Registered head: deterministic, gmm, chunk or diffusion."""
    modes: int = 5
    """Mixture components."""
    min_std: float = 1e-4
    """Floor added to every component's std (after a softplus), so the likelihood stays finite."""
    tanh_squash: bool = False
    """True: the mixture lives before a tanh (robomimic use_tanh); False: only the means are tanh-bounded."""
    predict: Literal["mode", "sample"] = "mode"
    """At prediction, take the most likely component ("mode") or draw one ("sample"); either way its mean."""

    def __post_init__(self) -> None:
        if self.modes < 1:
            raise ValueError(f"modes must be at least 1, got {self.modes}")
        if not self.min_std > 0:
            raise ValueError(f"min_std must be positive, got {self.min_std}")
        if self.predict not in ("mode", "sample"):
            raise ValueError(f"predict must be 'mode' or 'sample', got {self.predict!r}")


class GMMHead(nn.Module):
    """A Gaussian mixture over one action, trained by negative log-likelihood.

    Prediction follows robomimic's low-noise evaluation (std -> ~0), which makes the action
    the mean of one component; ``predict="mode"`` (default) takes the component with the
    largest weight, so evaluation is deterministic and repeatable, ``"sample"`` draws it as
    robomimic does.
    """

    horizon = 1
    _TANH_EPS = 1e-6  # robomimic's TanhWrappedDistribution epsilon

    def __init__(self, config: GMMHeadConfig, in_dim: int, action_dim: int) -> None:
        super().__init__()
        self.config = config
        self.action_dim = action_dim
        k, a = config.modes, action_dim
        self.means = nn.Linear(in_dim, k * a)
        self.scales = nn.Linear(in_dim, k * a)
        self.logits = nn.Linear(in_dim, k)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k, a = self.config.modes, self.action_dim
        means = self.means(z).unflatten(-1, (k, a))  # (B, K*A) -> (B, K, A)
        if not self.config.tanh_squash:
            means = torch.tanh(means)  # robomimic bounds the means when the mixture is not squashed
        scales = F.softplus(self.scales(z)).unflatten(-1, (k, a)) + self.config.min_std  # (B, K, A)
        return means, scales, self.logits(z)  # logits (B, K)

    def distribution(self, z: torch.Tensor) -> D.Distribution:
        means, scales, logits = self(z)
        components = D.Independent(D.Normal(means, scales), 1)  # event: one action (A,)
        return D.MixtureSameFamily(D.Categorical(logits=logits), components)

    def loss(self, z: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor):
        target = actions[:, 0]  # (B, 1, A) -> (B, A)
        dist = self.distribution(z)
        if self.config.tanh_squash:
            # log p(y) for y = tanh(x): log p(x) - sum log(1 - y^2), x = atanh(y) (change of variables)
            y = target.clamp(-1.0 + self._TANH_EPS, 1.0 - self._TANH_EPS)
            log_prob = dist.log_prob(torch.atanh(y)) - torch.log1p(-y.square() + self._TANH_EPS).sum(-1)
        else:
            log_prob = dist.log_prob(target)  # (B,)
        nll = masked_mean(-log_prob[:, None], mask[:, :1])
        return nll, {"loss": nll.item(), "nll": nll.item()}

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        means, _, logits = self(z)  # (B, K, A), (B, K)
        if self.config.predict == "mode":
            pick = logits.argmax(dim=-1)  # (B,)
        else:
            pick = D.Categorical(logits=logits).sample()  # (B,)
        action = means[torch.arange(means.shape[0], device=means.device), pick]  # (B, A)
        if self.config.tanh_squash:
            action = torch.tanh(action)
        return action.clamp(-1.0, 1.0)[:, None]  # (B, A) -> (B, 1, A)


@HEADS.register("gmm", GMMHeadConfig)
def _build_gmm(config: GMMHeadConfig, in_dim: int, spec: DataSpec) -> GMMHead:
    return GMMHead(config, in_dim, spec.action_dim)


def build_head(config: HeadConfig, in_dim: int, spec: DataSpec) -> nn.Module:
    return HEADS.build(config, in_dim, spec)
