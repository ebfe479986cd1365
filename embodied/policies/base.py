"""The policy contract (E in design.md); its config and registry are in :mod:`.config`.

A policy is ``encoder -> conditioning -> trunk -> head``; only the trunk differs between the
registered policies, and the head is picked by name in the config (heads.py), so N trunks and
M heads cost N + M code. A policy whose action model is tied to its trunk names the heads it
takes (``PolicyConfig.heads``): ``diffusion`` the diffusion head (diffusion.py), ``act`` the
chunk head's execution over its own decoder's tokens (act.py).

Timeline of one training window (Diffusion Policy's notation; t = the current step)::

    obs:      o[t-To+1] ... o[t-1] o[t]          batch[OBS][key]  (B, To, ...)
    actions:                       a[t] a[t+1] ... a[t+Ta-1]   batch[ACTIONS]  (B, Ta, A)
    mask:                          True ...  True False ...    batch[ACTION_MASK] (B, Ta)

The trunk reads the last ``config.obs_steps`` observations (1 for ``bc_mlp``); a single-step
head learns a[t], the ``chunk`` head all Ta actions; masked (padding) actions are left out.

At rollout, ``predict_action`` takes ONE observation per call, keeps the history and the
action queue itself, and returns a[t] in [-1, 1]; ``reset()`` at every episode start. Call
``.eval()`` first: in training mode, images are randomly cropped and dropout is on.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.keys import ACTION_MASK, ACTIONS, INSTRUCTION, OBS
from embodied.models.common import FeatureTap, Normalizer
from embodied.policies.config import POLICIES, PolicyConfig
from embodied.policies.encoders import InstructionConditioning, ObsEncoder
from embodied.policies.execution import ActionQueue, ObsHistory, TemporalEnsembler
from embodied.policies.heads import build_head


class Policy(nn.Module):
    """Base of every policy; a subclass only builds its trunk (see :meth:`build_trunk`)."""

    def __init__(self, config: PolicyConfig, spec: DataSpec) -> None:
        super().__init__()
        if config.obs_keys is None:
            config = dataclasses.replace(config, obs_keys=low_dim_keys(spec))
        _check_against_spec(config, spec)
        self.config = config
        self.spec = spec
        self.obs_steps = config.obs_steps
        shapes = {key: list(spec.obs_shapes[key]) for key in config.obs_keys}

        # Low-dim observations are standardised with statistics of the training split; images
        # are scaled in their encoder. Buffers, so the statistics are saved with the weights.
        self.normalizer = Normalizer({k: s for k, s in shapes.items() if len(s) == 1})
        self.encoder = ObsEncoder(
            shapes,
            low_dim_embed=config.low_dim_embed,
            image_embed=config.image_embed,
            image_channels=config.image_channels,
            image_keypoints=config.image_keypoints,
            crop_fraction=config.crop_fraction,
        )
        self.conditioning = InstructionConditioning(
            config.conditioning, self.encoder.out_dim, spec.num_instructions, config.instruction_dim
        )
        self.trunk = self.build_trunk(self.conditioning.out_dim)
        # A trunk may say its output size (Diffusion Policy's window of To steps); else hidden_dim.
        self.trunk_dim = getattr(self.trunk, "out_dim", config.hidden_dim)
        self.head = self.build_action_head(self.trunk_dim)

        # Rollout state (not parameters): the observation window and the actions still to run.
        self.history = ObsHistory(self.obs_steps)
        coeff = config.head.temporal_ensemble_coeff
        self.ensembler = TemporalEnsembler(coeff, self.head.horizon) if coeff is not None else None
        execute = config.head.execute_steps_for(self.head.horizon)
        if execute > self.head.horizon:
            raise UserError(
                f"policy.head.execute_steps={execute} is more than the {self.head.horizon} actions predicted"
            )
        self.queue = ActionQueue(execute)

        self.tap_name = config.feature_tap or "trunk"
        self._tap_channels_last = True
        self._feature_dim = self.trunk_dim
        if config.feature_tap:
            self._tap_channels_last, self._feature_dim = self._probe_tap()

    # ----------------------------------------------------------------- for subclasses
    def build_trunk(self, in_dim: int) -> nn.Module:
        """A module (B, obs_steps, in_dim) -> (B, config.hidden_dim), or (B, out_dim) where the
        module has an ``out_dim`` attribute."""
        raise NotImplementedError

    def build_action_head(self, in_dim: int) -> nn.Module:
        """The head reading the trunk's output: the registered head ``config.head`` names."""
        return build_head(self.config.head, in_dim, self.spec)

    # ----------------------------------------------------------------- forward
    def encode(self, obs: dict[str, torch.Tensor], instruction: torch.Tensor | None) -> torch.Tensor:
        """obs[key] (B, T>=obs_steps, ...) and instruction (B,) -> the trunk's input (B, obs_steps, D_in)."""
        window = {}
        for key in self.config.obs_keys:
            x = obs[key][:, -self.obs_steps :]  # (B, T, ...) -> (B, obs_steps, ...): the most recent steps
            window[key] = self.normalizer.normalize(key, x) if key in self.normalizer.keys else x
        h = self.encoder(window)  # (B, obs_steps, D_obs)
        return self.conditioning(h, instruction)  # (B, obs_steps, D_in)

    def embed(self, obs: dict[str, torch.Tensor], instruction: torch.Tensor | None) -> torch.Tensor:
        """obs[key] (B, T>=obs_steps, ...) and instruction (B,) -> the head's input (B, trunk_dim)."""
        return self.trunk(self.encode(obs, instruction))  # (B, trunk_dim)

    def forward(self, obs: dict[str, torch.Tensor], instruction: torch.Tensor | None = None):
        """The head's raw output; the whole network runs, so any layer can be tapped."""
        return self.head(self.embed(obs, instruction))

    # ----------------------------------------------------------------- training
    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Behaviour-cloning loss of a window batch (see the timeline above) and its metrics."""
        z = self.embed(batch[OBS], batch.get(INSTRUCTION))  # (B, hidden_dim)
        return self.head.loss(z, *self._targets(batch))

    def loss_and_features(self, batch: dict) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        """``loss(batch)`` and ``features(batch)`` from one forward pass (same crops, half the work)."""
        tap = self._tap()
        try:
            loss, metrics = self.loss(batch)
            feats = self._pooled(tap, batch_size=_batch_size(batch))
        finally:
            tap.remove()
        return loss, metrics, feats

    def _targets(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        actions = batch[ACTIONS]  # (B, Ta, A)
        k = self.head.horizon
        if actions.shape[1] < k:
            raise ValueError(f"the head predicts {k} actions but the batch holds {actions.shape[1]}")
        mask = batch.get(ACTION_MASK)
        if mask is None:
            mask = torch.ones(actions.shape[:2], dtype=torch.bool, device=actions.device)
        actions, mask = actions[:, :k], mask[:, :k].bool()  # (B, K, A), (B, K)
        # Padding can hold anything (NaN included); zero it so no head ever sees it.
        return torch.where(mask[..., None], actions, 0.0), mask

    def fit_normalization(self, stats: dict[str, dict]) -> None:
        """Set the observation statistics, ``{key: {"mean": array, "std": array}}`` of the training split."""
        missing = [key for key in self.normalizer.keys if key not in stats]
        if missing:
            raise ValueError(f"normalisation statistics lack {', '.join(missing)}; got {', '.join(stats)}")
        self.normalizer.fit(stats)

    # ----------------------------------------------------------------- features
    @property
    def feature_dim(self) -> int:
        """D_e: size of ``features`` at the configured tap."""
        return self._feature_dim

    def features(self, batch: dict) -> torch.Tensor:
        """(B, feature_dim) output of the tapped layer (``config.feature_tap``), with gradients."""
        tap = self._tap()
        try:
            self(batch[OBS], batch.get(INSTRUCTION))
            return self._pooled(tap, batch_size=_batch_size(batch))
        finally:
            tap.remove()

    def _tap(self) -> FeatureTap:
        return FeatureTap(self, self.tap_name, channels_last=self._tap_channels_last)

    def _pooled(self, tap: FeatureTap, batch_size: int) -> torch.Tensor:
        if tap.value is None:
            raise UserError(
                f"feature tap {self.tap_name!r} is not reached by a forward pass of {type(self).__name__}"
            )
        f = tap.pooled()  # (N, D)
        if f.shape[0] != batch_size:
            # Per-key encoders fold time into the batch: (B*T, D) -> (B, T, D) -> mean over T.
            f = f.unflatten(0, (batch_size, -1)).mean(dim=1)
        return f

    def _probe_tap(self) -> tuple[bool, int]:
        """Run a dummy batch to learn the tapped layer's layout and pooled size."""
        obs = {}
        for key in self.config.obs_keys:
            shape = self.spec.obs_shapes[key]
            dtype = torch.uint8 if len(shape) == 3 else torch.float32
            obs[key] = torch.zeros(2, self.obs_steps, *shape, dtype=dtype)  # (2, T, ...)
        tap = FeatureTap(self, self.tap_name)
        was_training = self.training
        try:
            self.eval()  # no random crop: the probe must not consume random numbers
            with torch.no_grad():
                self(obs, torch.zeros(2, dtype=torch.long))
            if tap.value is None:
                raise UserError(
                    f"feature tap {self.tap_name!r} is not reached by a forward pass of {type(self).__name__}"
                )
            # The only 4-D outputs here are conv feature maps (N, C, h, w): pool over h, w.
            channels_last = tap.value.dim() != 4
            tap.channels_last = channels_last
            dim = self._pooled(tap, batch_size=2).shape[-1]
        finally:
            tap.remove()
            self.train(was_training)
        return channels_last, dim

    # ----------------------------------------------------------------- rollout
    def reset(self) -> None:
        """Forget the observation history and queued actions; call at every episode start."""
        self.history.reset()
        self.queue.reset()
        if self.ensembler is not None:
            self.ensembler.reset()

    @torch.no_grad()
    def predict_chunk(
        self, obs: dict[str, torch.Tensor], instruction: torch.Tensor | None = None
    ) -> torch.Tensor:
        """obs[key] (B, T>=obs_steps, ...) -> the head's (B, K, A) actions in [-1, 1]; no rollout state."""
        return self.head.predict(self.embed(obs, instruction))

    @torch.no_grad()
    def predict_action(
        self, obs: dict[str, torch.Tensor], instruction_id: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One step: obs[key] (B, d) float32 or (B, 3, H, W) uint8, instruction_id (B,) -> (B, A) in [-1, 1].

        Keeps the last ``obs_steps`` observations and the queued (or ensembled) actions itself.
        """
        missing = [key for key in self.config.obs_keys if key not in obs]
        if missing:
            raise KeyError(f"predict_action needs observation keys {missing}; got {sorted(obs)}")
        window = self.history.push(
            {key: obs[key] for key in self.config.obs_keys}
        )  # key -> (B, obs_steps, ...)
        if self.ensembler is not None:
            return self.ensembler.update(self.predict_chunk(window, instruction_id))
        if len(self.queue) == 0:
            self.queue.push(self.predict_chunk(window, instruction_id))
        return self.queue.pop()


def _batch_size(batch: dict) -> int:
    return next(iter(batch[OBS].values())).shape[0]


def low_dim_keys(spec: DataSpec) -> list[str]:
    """What ``obs_keys: null`` reads: every low-dim stream of the data, sorted."""
    keys = sorted(k for k, shape in spec.obs_shapes.items() if len(shape) == 1)
    if not keys:
        raise UserError("policy.obs_keys: the data holds no low-dim stream; name the keys to read")
    return keys


def _check_against_spec(config: PolicyConfig, spec: DataSpec) -> None:
    """Config/data mismatches are the user's to fix: one clear line each."""
    missing = [key for key in config.obs_keys if key not in spec.obs_shapes]
    if missing:
        raise UserError(
            f"policy.obs_keys: {', '.join(missing)} not in the data; available: {', '.join(spec.obs_shapes)}"
        )
    for key in config.obs_keys:
        if len(spec.obs_shapes[key]) not in (1, 3):
            raise UserError(
                f"observation {key!r} has shape {spec.obs_shapes[key]}; expected [d] or [3, H, W]"
            )
    if spec.action_dim < 1:
        raise UserError(f"the data's action_dim must be at least 1, got {spec.action_dim}")
    if config.obs_steps > spec.obs_horizon:
        raise UserError(
            f"policy {config.name} reads {config.obs_steps} observations but the data's obs_horizon is "
            f"{spec.obs_horizon}; raise the data's obs_horizon or lower policy.history"
        )
    if config.conditioning != "none" and spec.num_instructions < 1:
        raise UserError(f"conditioning {config.conditioning!r} needs at least one instruction in the data")


def build_policy(config: PolicyConfig, spec: DataSpec) -> Policy:
    """The registered policy ``config.name`` for data described by ``spec``."""
    expected = POLICIES.config_class(config.name)
    if not isinstance(config, expected):
        raise UserError(f"policy {config.name!r} needs a {expected.__name__}, got a {type(config).__name__}")
    return POLICIES.build(config, spec)
