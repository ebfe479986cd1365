"""ACT: Action Chunking with Transformers (Zhao et al. 2023, RSS, arXiv:2304.13705).

A CVAE whose decoder is the policy (the paper's Fig. 4, Sec. 3.2):

- encoder (training only): [CLS] + the current observation + the K actions of the chunk, a
  transformer encoder; CLS's output gives the mean and log-variance of a latent style z (32-D);
- decoder (the policy): z and the observation as tokens through a transformer encoder, then K
  learned queries through a transformer decoder reading it, one action per query.

Training: L1 on the chunk (the chunk head's loss, padding left out) + beta * KL(q(z|a, o) || N(0, I)),
beta = 10 (the paper's Table 7). At inference z = 0, the prior's mean, and the CVAE encoder is
not run. Execution follows the chunk head: the whole chunk (or ``head.execute_steps``) from a
queue, or temporal ensembling (the paper's Sec. 3.3: ``head.temporal_ensemble``).

Observations enter through the same per-key encoders as every policy here (so the mirror's
feature tap, e.g. ``encoder.encoders.corner_image``, sits before anything else enters); each
key's features become one token per step (the paper's per-camera ResNet feature maps give a
token per map position; the keypoint encoder here gives one per camera), and a concatenated
instruction embedding one more. The chunk length K is data.action_horizon (the paper's 100 at
50 Hz). Transformer layers are post-norm with ReLU, as DETR's that ACT builds on.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from embodied.keys import INSTRUCTION, OBS
from embodied.policies.base import Policy
from embodied.policies.config import POLICIES, ACTConfig, ChunkHeadConfig
from embodied.policies.heads import RegressionHead, masked_mean


def _encoder(c: ACTConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        c.hidden_dim, c.num_heads, c.feedforward_dim, c.dropout, activation="relu", batch_first=True
    )
    # enable_nested_tensor off: the nested fast path changes results with a padding mask.
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    """(n, dim) fixed position encodings (Vaswani et al. 2017), ACT's for the CVAE encoder."""
    pos = torch.arange(n, dtype=torch.float32)[:, None]  # (n, 1)
    even = torch.arange(0, dim, 2, dtype=torch.float32)  # (ceil(dim / 2),)
    freqs = torch.exp(-math.log(10000.0) * even / dim)  # (ceil(dim / 2),)
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * freqs)
    table[:, 1::2] = torch.cos(pos * freqs[: dim // 2])
    return table


class ObsTokens(nn.Module):
    """(B, T, D_in) conditioned features -> (B, T * S, hidden): one token per segment and step.

    The segments are the per-key encoders' outputs (and a concatenated instruction embedding),
    in the order the encoder concatenates them; each has its own projection, as ACT projects
    joints and each camera's features separately.
    """

    def __init__(self, segments: list[int], hidden: int) -> None:
        super().__init__()
        self.segments = segments
        self.project = nn.ModuleList(nn.Linear(d, hidden) for d in segments)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        parts = h.split(self.segments, dim=-1)  # S x (B, T, d_s)
        tokens = [proj(x) for proj, x in zip(self.project, parts, strict=True)]  # S x (B, T, hidden)
        return torch.stack(tokens, dim=2).flatten(1, 2)  # (B, T, S, hidden) -> (B, T * S, hidden)


class ACTDecoder(nn.Module):
    """The CVAE's decoder, i.e. the policy: (B, T, D_in) observations and a latent (B, L) or None
    (the prior's mean, zero) -> (B, K, hidden), one token per action of the chunk."""

    def __init__(self, c: ACTConfig, segments: list[int], steps: int, chunk: int) -> None:
        super().__init__()
        self.latent_dim = c.latent_dim
        self.obs = ObsTokens(segments, c.hidden_dim)
        self.latent = nn.Linear(c.latent_dim, c.hidden_dim)
        n_tokens = 1 + steps * len(segments)  # z, then the observation tokens
        self.position = nn.Parameter(torch.randn(1, n_tokens, c.hidden_dim) * 0.02)  # learned, as ACT
        self.encoder = _encoder(c, c.num_layers)
        self.queries = nn.Parameter(torch.randn(1, chunk, c.hidden_dim) * 0.02)  # DETR's object queries
        layer = nn.TransformerDecoderLayer(
            c.hidden_dim, c.num_heads, c.feedforward_dim, c.dropout, activation="relu", batch_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, c.decoder_layers, norm=nn.LayerNorm(c.hidden_dim))

    def forward(self, h: torch.Tensor, latent: torch.Tensor | None = None) -> torch.Tensor:
        b = h.shape[0]
        if latent is None:
            latent = h.new_zeros(b, self.latent_dim)  # inference: z = 0, the prior's mean
        tokens = torch.cat([self.latent(latent)[:, None], self.obs(h)], dim=1)  # (B, 1 + T*S, hidden)
        memory = self.encoder(tokens + self.position)  # (B, 1 + T*S, hidden)
        queries = self.queries.expand(b, -1, -1)  # (1, K, hidden) -> (B, K, hidden)
        return self.decoder(queries, memory)  # (B, K, hidden): all K at once, no causal mask


class CVAEEncoder(nn.Module):
    """q(z | actions, observation): [CLS, obs, a_1..a_K] -> (mu, logvar), each (B, L)."""

    def __init__(self, c: ACTConfig, obs_dim: int, action_dim: int, chunk: int) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, c.hidden_dim) * 0.02)
        self.obs = nn.Linear(obs_dim, c.hidden_dim)
        self.actions = nn.Linear(action_dim, c.hidden_dim)
        # Not saved: a constant rebuilt with the module.
        self.register_buffer("position", sinusoid_table(2 + chunk, c.hidden_dim)[None], persistent=False)
        self.encoder = _encoder(c, c.vae_layers)
        self.out = nn.Linear(c.hidden_dim, 2 * c.latent_dim)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor):
        """obs (B, D_in) the current step, actions (B, K, A), mask (B, K) -> mu, logvar (B, L)."""
        b = obs.shape[0]
        tokens = torch.cat(
            [self.cls.expand(b, -1, -1), self.obs(obs)[:, None], self.actions(actions)], dim=1
        )  # (B, 2 + K, hidden)
        # Padded actions are hidden from attention (CLS and the observation never are, so a row of
        # padding only still has keys to attend to).
        hidden = torch.cat([mask.new_zeros(b, 2), ~mask], dim=1)  # (B, 2 + K), True = ignore
        out = self.encoder(tokens + self.position, src_key_padding_mask=hidden)  # (B, 2 + K, hidden)
        return self.out(out[:, 0]).chunk(2, dim=-1)  # (B, 2L) -> 2 x (B, L)


class TokenChunkHead(RegressionHead):
    """The chunk head's loss and clamp, one action per decoder token: (B, K, hidden) -> (B, K, A)."""

    def __init__(self, config: ChunkHeadConfig, in_dim: int, action_dim: int, horizon: int) -> None:
        nn.Module.__init__(self)  # not RegressionHead's: its (in, K * A) map is not wanted here
        self.config = config
        self.horizon = horizon
        self.action_dim = action_dim
        self.out = nn.Linear(in_dim, action_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z)  # (B, K, hidden) -> (B, K, A)


@POLICIES.register("act", ACTConfig)
class ACT(Policy):
    def __init__(self, config: ACTConfig, spec) -> None:
        super().__init__(config, spec)
        self.cvae = CVAEEncoder(config, self.conditioning.out_dim, spec.action_dim, spec.action_horizon)

    def build_trunk(self, in_dim: int) -> nn.Module:
        segments = [e.out_dim for e in self.encoder.encoders.values()]
        if in_dim > sum(segments):  # a concatenated instruction embedding: a token of its own
            segments.append(in_dim - sum(segments))
        return ACTDecoder(self.config, segments, self.obs_steps, self.spec.action_horizon)

    def build_action_head(self, in_dim: int) -> nn.Module:
        return TokenChunkHead(self.config.head, in_dim, self.spec.action_dim, self.spec.action_horizon)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """L1 of the chunk + kl_weight * KL. In training z is drawn from q(z | a, o) (torch's
        global generator); in eval mode (validation) the chunk is decoded from z = 0, as at
        inference, and the KL of q is still reported and added."""
        h = self.encode(batch[OBS], batch.get(INSTRUCTION))  # (B, To, D_in)
        actions, mask = self._targets(batch)  # (B, K, A), (B, K)
        mu, logvar = self.cvae(h[:, -1], actions, mask)  # (B, L) each
        # training: a reparameterised sample of q; eval: the prior's mean, as inference uses
        latent = mu + (0.5 * logvar).exp() * torch.randn_like(mu) if self.training else torch.zeros_like(mu)
        recon, metrics = self.head.loss(self.trunk(h, latent), actions, mask)
        kl = -0.5 * (1.0 + logvar - mu.square() - logvar.exp()).sum(dim=-1)  # (B,): KL to N(0, I)
        kl = masked_mean(kl[:, None], mask.any(dim=1, keepdim=True))  # rows with no real action teach nothing
        loss = recon + self.config.kl_weight * kl
        return loss, {**metrics, "loss": loss.item(), "recon": recon.item(), "kl": kl.item()}
