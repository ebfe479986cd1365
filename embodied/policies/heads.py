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

import torch
import torch.nn.functional as F
from torch import distributions as D
from torch import nn

from embodied.data.spec import DataSpec
from embodied.policies.config import (
    HEADS,
    ChunkHeadConfig,
    DeterministicHeadConfig,
    GMMHeadConfig,
    HeadConfig,
)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, K) over the entries where ``mask`` (B, K) is True."""
    # where, not a product: a NaN in padding would survive NaN * 0. The clamp makes a batch of
    # padding only give 0 rather than 0 / 0.
    return torch.where(mask, values, 0.0).sum() / mask.sum().clamp_min(1)


# --------------------------------------------------------------------------- regression
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
