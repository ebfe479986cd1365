"""The policies' settings: :class:`PolicyConfig` and one dataclass per registered policy, the
action heads' (:class:`HeadConfig` and one per head), and the config halves of the two
registries, :data:`POLICIES` and :data:`HEADS` (the models register their builders beside them:
:mod:`.base`, :mod:`.heads` and one module per policy).

No torch here: a training config is read, and ``embodied-train --help`` lists every policy's and
head's settings, without the models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from embodied.config import Registry
from embodied.limits import MAX_DEPTH, MAX_HORIZON_STEPS, MAX_WIDTH, check_range

POLICIES = Registry("policy")
HEADS = Registry("head")

CONDITIONINGS = ("none", "concat", "film")


# --------------------------------------------------------------------------- heads
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


@HEADS.config("deterministic")
@dataclass
class DeterministicHeadConfig(HeadConfig):
    name: str = "deterministic"
    """Registered head: deterministic, gmm, chunk or diffusion."""
    loss: Literal["mse", "l1"] = "mse"
    """Regression loss; robomimic's BC uses the L2 (mse) loss."""

    def __post_init__(self) -> None:
        if self.loss not in ("mse", "l1"):
            raise ValueError(f"loss must be 'mse' or 'l1', got {self.loss!r}")


@HEADS.config("chunk")
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


@HEADS.config("gmm")
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


@HEADS.config("diffusion")
@dataclass
class DiffusionHeadConfig(HeadConfig):
    """The denoiser and its noise schedule; defaults are the paper's CNN-based policy."""

    name: str = "diffusion"
    """Registered head: deterministic, gmm, chunk or diffusion."""
    horizon: int = 16
    """Tp: actions per predicted chunk (the paper's 16); data.action_horizon must be at least this."""
    n_action_steps: int = 8
    """Ta: actions executed from each chunk before predicting again (the paper's 8)."""
    num_train_timesteps: int = 100
    """K: DDPM noise steps in training (the paper's 100)."""
    num_inference_steps: int = 10
    """Denoising steps when sampling at evaluation (the paper's Sec. IV-E: 10 with DDIM)."""
    sampler: Literal["ddim", "ddpm"] = "ddim"
    """Sampling scheduler: DDIM (deterministic given the initial noise, fewer steps) or DDPM."""
    beta_schedule: Literal["squaredcos_cap_v2", "linear"] = "squaredcos_cap_v2"
    """Noise schedule (diffusers' names): the cosine schedule of Nichol & Dhariwal 2021, as the paper."""
    prediction_type: Literal["epsilon", "sample"] = "epsilon"
    """What the U-Net predicts: the noise (the paper) or the clean chunk."""
    down_dims: list[int] = field(default_factory=lambda: [256, 512, 1024])
    """Channels of the U-Net's levels (the paper's 256, 512, 1024; far smaller suits a CPU)."""
    kernel_size: int = 5
    """Temporal convolution kernel (the paper's 5)."""
    n_groups: int = 8
    """GroupNorm groups in every block (the paper's 8); must divide each of down_dims."""
    step_embed_dim: int = 256
    """Size of the diffusion-step embedding (the paper's code: 256)."""

    def __post_init__(self) -> None:
        for key in ("horizon", "n_action_steps", "num_train_timesteps", "num_inference_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.n_action_steps > self.horizon:
            raise ValueError(f"n_action_steps ({self.n_action_steps}) must be at most horizon {self.horizon}")
        if self.num_inference_steps > self.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps ({self.num_inference_steps}) must be at most "
                f"num_train_timesteps ({self.num_train_timesteps})"
            )
        if not self.down_dims or min(self.down_dims) < 1:
            raise ValueError(f"down_dims must be positive widths, got {self.down_dims}")
        if self.n_groups < 1 or any(d % self.n_groups for d in self.down_dims):
            raise ValueError(f"n_groups ({self.n_groups}) must divide each of down_dims {self.down_dims}")
        levels = 2 ** (len(self.down_dims) - 1)  # every level but the last halves the length
        if self.horizon % levels:
            raise ValueError(
                f"horizon ({self.horizon}) must be divisible by {levels}: "
                f"a U-Net of {len(self.down_dims)} levels halves it {len(self.down_dims) - 1} times"
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (it keeps the length), got {self.kernel_size}")
        if self.step_embed_dim < 2:
            raise ValueError(f"step_embed_dim must be at least 2, got {self.step_embed_dim}")

    def execute_steps_for(self, action_horizon: int) -> int:
        return self.n_action_steps


# --------------------------------------------------------------------------- policies
@dataclass
class PolicyConfig:
    registry: ClassVar[Registry] = POLICIES
    # The registered heads (``head.name``) this policy takes; None: every one. A policy whose
    # action model is tied to its trunk (ACT's decoder, Diffusion Policy's denoiser) names its own.
    heads: ClassVar[tuple[str, ...] | None] = None

    name: str
    """Registered policy: bc_mlp, bc_rnn, bc_transformer, diffusion or act."""
    obs_keys: list[str] | None = None
    """Observation keys read by the policy; ``<camera>_image`` keys go through the image encoder.
    None: every low-dim stream the data holds, in sorted order (whatever the suite calls them);
    a training run writes the keys it read into its config."""
    head: HeadConfig = field(default_factory=DeterministicHeadConfig)
    """Action head, picked by head.name."""
    hidden_dim: int = 256
    """Width of the trunk; its output (B, hidden_dim) is what the head reads. Widths here and below:
    1 to 8192."""
    num_layers: int = 2
    """Depth of the trunk: MLP layers, LSTM layers or transformer blocks (1 to 64)."""
    dropout: float = 0.0
    """Dropout inside the trunk."""
    conditioning: Literal["none", "concat", "film"] = "concat"
    """How the instruction id enters: not at all, concatenated to, or FiLM on the observation features."""
    instruction_dim: int = 32
    """Size of the learned embedding of each instruction id."""
    low_dim_embed: int = 64
    """Output size of each low-dim key's MLP encoder."""
    image_embed: int = 64
    """Output size of each image key's conv encoder."""
    image_channels: int = 32
    """Channels of the conv encoder's first stage (doubled in the second)."""
    image_keypoints: int = 32
    """Spatial-softmax keypoints per image (robomimic: 32)."""
    crop_fraction: float = 0.9
    """Side of the image crop as a fraction of the image: random in training, centred at evaluation."""
    feature_tap: str = ""
    """Module name of the layer ``features`` reads (e.g. ``encoder``); empty: the trunk's output."""

    @property
    def obs_steps(self) -> int:
        """Observations the policy reads; the data's obs_horizon must be at least this."""
        return 1

    def __post_init__(self) -> None:
        if self.obs_keys is not None and not self.obs_keys:
            raise ValueError("obs_keys must name at least one key (or be null: every low-dim key)")
        if self.obs_keys is not None and len(set(self.obs_keys)) != len(self.obs_keys):
            raise ValueError(f"obs_keys has duplicates: {self.obs_keys}")
        if not isinstance(self.head, HeadConfig):
            raise ValueError(f"head must be a head config, got {self.head!r}")
        if self.heads is not None and self.head.name not in self.heads:
            raise ValueError(
                f"policy {self.name} takes head {' or '.join(self.heads)}, got {self.head.name!r}"
            )
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(
                f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {self.conditioning!r}"
            )
        for key in (
            "hidden_dim",
            "instruction_dim",
            "low_dim_embed",
            "image_embed",
            "image_channels",
            "image_keypoints",
        ):
            check_range(key, getattr(self, key), 1, MAX_WIDTH)
        check_range("num_layers", self.num_layers, 1, MAX_DEPTH)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}")


@dataclass
class SequencePolicyConfig(PolicyConfig):
    """A policy whose trunk reads a window of past observations (bc_rnn, bc_transformer)."""

    history: int = 10
    """Observation steps the trunk reads, the current one included (1 to 256; robomimic's sequence
    length is 10)."""

    @property
    def obs_steps(self) -> int:
        return self.history

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("history", self.history, 1, MAX_HORIZON_STEPS)


@POLICIES.config("bc_mlp")
@dataclass
class BCMLPConfig(PolicyConfig):
    name: str = "bc_mlp"
    """Registered policy: bc_mlp, bc_rnn or bc_transformer."""


@POLICIES.config("bc_rnn")
@dataclass
class BCRNNConfig(SequencePolicyConfig):
    name: str = "bc_rnn"
    """Registered policy: bc_mlp, bc_rnn or bc_transformer."""


@POLICIES.config("bc_transformer")
@dataclass
class BCTransformerConfig(SequencePolicyConfig):
    name: str = "bc_transformer"
    """Registered policy: bc_mlp, bc_rnn or bc_transformer."""
    dropout: float = 0.1
    """Dropout inside the transformer blocks."""
    num_heads: int = 4
    """Attention heads per block; must divide hidden_dim."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_heads < 1 or self.hidden_dim % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide hidden_dim ({self.hidden_dim})")


@POLICIES.config("diffusion")
@dataclass
class DiffusionConfig(SequencePolicyConfig):
    """Diffusion Policy: the observation encoder, the last ``history`` (To) steps' features
    concatenated, the ``diffusion`` head. hidden_dim, num_layers and dropout are not used (the
    U-Net's widths are head.down_dims)."""

    heads: ClassVar[tuple[str, ...] | None] = ("diffusion",)

    name: str = "diffusion"
    """Registered policy: bc_mlp, bc_rnn, bc_transformer, diffusion or act."""
    history: int = 2
    """To: observation steps the denoiser is conditioned on (the paper's 2)."""
    head: HeadConfig = field(default_factory=DiffusionHeadConfig)
    """The denoiser, its noise schedule and the chunk's horizon and execution (head.name: diffusion)."""


@POLICIES.config("act")
@dataclass
class ACTConfig(SequencePolicyConfig):
    """ACT; defaults are the paper's (Table 7) unless said otherwise."""

    heads: ClassVar[tuple[str, ...] | None] = ("chunk",)

    name: str = "act"
    """Registered policy: bc_mlp, bc_rnn, bc_transformer, diffusion or act."""
    history: int = 1
    """Observation steps read; ACT reads the current one."""
    head: HeadConfig = field(default_factory=ChunkHeadConfig)
    """The chunk's loss (l1) and execution (execute_steps, temporal_ensemble); K = data.action_horizon."""
    hidden_dim: int = 512
    """Width of every transformer layer (the paper's 512)."""
    num_layers: int = 4
    """Layers of the policy's transformer encoder (the paper's 4)."""
    dropout: float = 0.1
    """Dropout in every transformer layer (the paper's 0.1)."""
    num_heads: int = 8
    """Attention heads per layer (the paper's 8); must divide hidden_dim."""
    decoder_layers: int = 1
    """Layers of the transformer decoder. The paper says 7, but its code reads only the first
    one's output (LeRobot's note on ACT), so 1 is the model the paper measured."""
    feedforward_dim: int = 3200
    """Feed-forward width inside each layer (the paper's 3200)."""
    vae_layers: int = 4
    """Layers of the CVAE encoder (the paper's 4)."""
    latent_dim: int = 32
    """Size of the style variable z (the paper's 32)."""
    kl_weight: float = 10.0
    """beta, the weight of the KL term (the paper's 10)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_heads < 1 or self.hidden_dim % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide hidden_dim ({self.hidden_dim})")
        for key in ("decoder_layers", "feedforward_dim", "vae_layers", "latent_dim"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if not (self.kl_weight >= 0 and math.isfinite(self.kl_weight)):
            raise ValueError(f"kl_weight must be a finite number >= 0, got {self.kl_weight}")
