"""Diffusion Policy (Chi et al. 2023, RSS, arXiv:2303.04137), the CNN variant.

The policy is today's observation encoder (so the mirror's feature tap, e.g. ``encoder`` or
``encoder.encoders.corner_image``, is read before anything else enters), a trunk that
concatenates the features of the last To steps (the paper's observation conditioning, Sec.
III-B), and the ``diffusion`` head: a 1-D temporal U-Net (:mod:`.unet1d`) predicting the noise
of a chunk of Tp actions, FiLM-conditioned on that vector. The head is registered like the
others, so any trunk can feed it; ``diffusion`` is the paper's combination.

Timeline (the paper's Fig. 3, with this package's windows, see :mod:`.base`)::

    obs (To = history):  o[t-1] o[t]
    predicted (Tp):             a[t] a[t+1] ... a[t+Tp-1]
    executed (Ta):              a[t] ... a[t+Ta-1], then predict again

The paper's chunk starts at the first observation step (To-1 past actions, already executed,
are predicted and dropped); the windows here hold actions from the current step on, so the
chunk starts at t.

Training (DDPM, Ho et al. 2020): a chunk a0, noise eps ~ N(0, I) and a step k ~ U{0..K-1}
drawn from torch's global generator (the checkpoint saves it: exact resume); the U-Net learns
eps from sqrt(abar_k) a0 + sqrt(1 - abar_k) eps, MSE over the real (unpadded) actions.
Sampling: DDIM (Song et al. 2021) with fewer steps than training, the paper's Sec. IV-E
(100 training and 10 inference steps), or DDPM. The noise schedules are ``diffusers``'
schedulers, as the paper's code and LeRobot use them.
"""

from __future__ import annotations

import torch
from torch import nn

from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.policies.base import Policy
from embodied.policies.config import HEADS, POLICIES, DiffusionConfig, DiffusionHeadConfig
from embodied.policies.heads import masked_mean
from embodied.policies.unet1d import ConditionalUnet1D


def edge_padded(actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """actions (B, K, A), mask (B, K) -> padding replaced by the last real action before it.

    The paper's sampler pads a window past the episode's end by repeating the last action, so
    the denoiser's input is a chunk that holds still, not one that jumps to zero; the padded
    steps stay out of the loss as everywhere here (an action-free window teaches nothing).
    """
    k = actions.shape[1]
    steps = torch.arange(k, device=actions.device).expand_as(mask)  # (B, K)
    last = torch.where(mask, steps, 0).cummax(dim=1).values  # (B, K): index of the last real step so far
    return actions.gather(1, last[..., None].expand_as(actions))  # (B, K, A)


class DiffusionHead(nn.Module):
    """The denoiser of ``horizon`` actions conditioned on the trunk's (B, D); the head contract
    of :mod:`.heads` (``loss``, ``predict``, ``forward``)."""

    def __init__(self, config: DiffusionHeadConfig, cond_dim: int, action_dim: int) -> None:
        super().__init__()
        # Imported here: diffusers takes seconds to import, which commands that never build a
        # diffusion policy (embodied-train --help, the recognizer's runs) should not pay.
        from diffusers import DDIMScheduler, DDPMScheduler

        self.config = config
        self.horizon = config.horizon
        self.action_dim = action_dim
        self.unet = ConditionalUnet1D(
            action_dim, cond_dim, config.down_dims, config.kernel_size, config.n_groups, config.step_embed_dim
        )
        schedule = dict(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule,
            prediction_type=config.prediction_type,
            clip_sample=True,  # actions live in [-1, 1]; the paper clips the predicted chunk there
        )
        # Schedulers are plain objects (no weights): rebuilt from the config, never in a state dict.
        self.noise_scheduler = DDPMScheduler(**schedule)
        sampler = DDIMScheduler if config.sampler == "ddim" else DDPMScheduler
        self.sampler = sampler(**schedule)
        self.sampler.set_timesteps(config.num_inference_steps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """One deterministic pass through every layer (what ``features`` and the tap probe run):
        the noise predicted for an all-zero chunk at the last diffusion step. (B, D) -> (B, Tp, A)."""
        b = z.shape[0]
        chunk = z.new_zeros(b, self.horizon, self.action_dim)  # (B, Tp, A)
        step = torch.full((b,), self.config.num_train_timesteps - 1, device=z.device, dtype=torch.long)
        return self.unet(chunk, step, z)

    def loss(self, z: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor):
        """Denoising loss (Ho et al. 2020's simple loss): z (B, D), actions (B, Tp, A), mask (B, Tp)."""
        actions = edge_padded(actions, mask)  # (B, Tp, A)
        b = actions.shape[0]
        # Training draws from torch's global generator (saved by checkpoints). Validation runs in
        # eval mode and draws the same noise and steps every time, so its losses compare.
        gen = None if self.training else torch.Generator(actions.device).manual_seed(0)
        noise = torch.randn(actions.shape, generator=gen, device=actions.device, dtype=actions.dtype)
        steps = torch.randint(
            0, self.config.num_train_timesteps, (b,), generator=gen, device=actions.device
        )  # (B,)
        noisy = self.noise_scheduler.add_noise(actions, noise, steps)  # (B, Tp, A)
        pred = self.unet(noisy, steps, z)  # (B, Tp, A)
        target = noise if self.config.prediction_type == "epsilon" else actions
        mse = masked_mean((pred.float() - target).square().mean(dim=-1), mask)  # (B, Tp) -> ()
        return mse, {"loss": mse.item(), "mse": mse.item()}

    def predict(self, z: torch.Tensor) -> torch.Tensor:
        """Sample a chunk: z (B, D) -> (B, Tp, A) in [-1, 1]. The initial noise (and DDPM's step
        noise) come from torch's global generator."""
        b = z.shape[0]
        x = torch.randn(b, self.horizon, self.action_dim, device=z.device, dtype=z.dtype)  # (B, Tp, A)
        for k in self.sampler.timesteps:
            step = torch.full((b,), int(k), device=z.device, dtype=torch.long)  # (B,)
            x = self.sampler.step(self.unet(x, step, z), int(k), x).prev_sample  # (B, Tp, A)
        return x.clamp(-1.0, 1.0)


@HEADS.register("diffusion", DiffusionHeadConfig)
def _build_diffusion(config: DiffusionHeadConfig, in_dim: int, spec: DataSpec) -> DiffusionHead:
    if spec.action_horizon < config.horizon:
        raise UserError(
            f"the diffusion head predicts horizon={config.horizon} actions but the data's windows hold "
            f"{spec.action_horizon}; set data.action_horizon to {config.horizon}"
        )
    return DiffusionHead(config, in_dim, spec.action_dim)


# --------------------------------------------------------------------------- the policy
class WindowTrunk(nn.Module):
    """(B, To, D) -> (B, To * D): every step's features side by side, the paper's global condition."""

    def __init__(self, in_dim: int, steps: int) -> None:
        super().__init__()
        self.out_dim = in_dim * steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)  # (B, To, D) -> (B, To * D)


@POLICIES.register("diffusion", DiffusionConfig)
class DiffusionPolicy(Policy):
    def build_trunk(self, in_dim: int) -> nn.Module:
        return WindowTrunk(in_dim, self.obs_steps)
