"""The training config: one typed dataclass for every objective, loaded from YAML with dotted overrides.

    cfg = load_config(TrainConfig, "configs/joint_quick.yaml", ["optim.lr=3e-4", "steps=500"])

``mode`` names a registered training objective (:mod:`embodied.train.objectives`: policy,
recognizer, joint, probe and the controls); the objective says which sections the config needs
and checks them (:meth:`~embodied.train.objective.Objective.check_config`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from embodied.errors import UserError
from embodied.limits import (
    MAX_BATCH,
    MAX_CLIP_LEN,
    MAX_HORIZON_STEPS,
    MAX_SEED,
    MAX_STEPS,
    MAX_STRIDE,
    MAX_THREADS,
    MAX_WORKERS,
    check_range,
)
from embodied.mirror import MirrorConfig
from embodied.policies import PolicyConfig
from embodied.recognizers import RecognizerConfig

if TYPE_CHECKING:
    from embodied.train.objective import Objective

# The objectives (torch, the models) are imported when a config is checked, not with this module:
# embodied-train --help lists every setting without them.


@dataclass
class DataConfig:
    """What a run asks of its data: which files, which streams, how batches are cut. What was
    read (shapes, vocabularies, and these lengths as read) is the models'
    :class:`~embodied.models.common.DataSpec`, kept in every checkpoint."""

    paths: list[str] = field(default_factory=lambda: ["datasets/quick"])
    """Demonstration files, or folders of *.hdf5 files (the train split trains, the valid split validates)."""
    obs_keys: list[str] | None = None
    """Low-dim/image streams an execution window holds; None: the keys the policy reads (policy.obs_keys)."""
    obs_horizon: int | None = None
    """To: observation steps in an execution window. Derived, not set: the policy's window
    (policy.history for sequence policies, else 1), a probe's from its policy's checkpoint, as
    LeRobot derives its dataset window from the policy. A value given must agree (older configs
    set it)."""
    action_horizon: int = 1
    """Ta: actions in an execution window's chunk (1 to 256)."""
    clip_len: int = 8
    """T: frames in an observation clip (1 to 256)."""
    clip_stride: int = 2
    """Steps between the frames of a clip (1 to 64)."""
    camera: str | None = None
    """Observer camera of the clips; None: the dataset's first camera."""
    batch_size: int = 64
    """Samples per step and per process (1 to 65536; with torchrun the global batch is this times
    the processes)."""
    num_workers: int = 0
    """DataLoader worker processes (0 to 256); 0 loads in the training process."""
    image_cache_bytes: int = 4 << 30
    """Hold image streams in memory when they fit under this many bytes (0: never); else read spans
    from HDF5."""
    max_demos: int = 0
    """Training demos per file (task): the first N of the train split, for low-data studies; 0: all.
    Validation always uses the whole valid split."""
    action_demos: int = 0
    """Learning by watching: the policy learns the actions of only the first N successful training
    demos per file; the others (failed attempts included) serve the recognizer and the alignment
    action-free (no behaviour cloning on them); 0: every demo's actions."""
    watch_all: bool = True
    """With ``action_demos``: also serve the episodes whose actions are withheld (the watching);
    false: serve the action demos only, so that every row of a batch carries actions (the control
    that watches nothing more than it imitates)."""
    action_rows: int = 0
    """With ``action_demos``: rows of each batch drawn from the action demos' windows, the rest from
    every sample (co-training's fixed mixture, so that every method learns behaviour cloning from
    as many rows a step); 0: every row drawn from all the samples alike (about
    ``action_demos`` / demos of a batch carries actions). Moot with ``watch_all`` false."""

    def __post_init__(self) -> None:
        if not self.paths:
            raise ValueError("paths must name at least one file or folder")
        check_range("action_horizon", self.action_horizon, 1, MAX_HORIZON_STEPS)
        check_range("clip_len", self.clip_len, 1, MAX_CLIP_LEN)
        check_range("clip_stride", self.clip_stride, 1, MAX_STRIDE)
        check_range("batch_size", self.batch_size, 1, MAX_BATCH)
        if self.obs_horizon is not None:
            check_range("obs_horizon", self.obs_horizon, 1, MAX_HORIZON_STEPS)
        check_range("num_workers", self.num_workers, 0, MAX_WORKERS)
        if self.image_cache_bytes < 0:
            raise ValueError(f"image_cache_bytes must be >= 0 (0: never held), got {self.image_cache_bytes}")
        if self.max_demos < 0:
            raise ValueError(f"max_demos must be >= 0, got {self.max_demos}")
        if self.action_demos < 0:
            raise ValueError(f"action_demos must be >= 0, got {self.action_demos}")
        if self.action_rows and not (self.action_demos and 0 < self.action_rows < self.batch_size):
            raise ValueError(
                f"action_rows={self.action_rows} needs action_demos > 0 and must be below batch_size"
                f" ({self.batch_size})"
            )
        if not self.watch_all and not self.action_demos:
            raise ValueError("watch_all: false keeps only the action demos, so it needs action_demos > 0")


@dataclass
class WandbConfig:
    mode: Literal["off", "online", "offline"] = "off"
    """Weights & Biases logging beside metrics.jsonl and TensorBoard (``pip install
    'embodied[wandb]'``): off; online; or offline, written under the run's ``wandb/`` folder
    without a network (``wandb sync`` uploads it later)."""
    project: str = "embodied"
    """W&B project."""
    entity: str | None = None
    """W&B entity (user or team); None: W&B's default."""
    name: str | None = None
    """Run name; None: the run folder's name."""


@dataclass
class OptimConfig:
    lr: float = 1e-3
    """Peak learning rate of the policy and the recognizer (AdamW); the mirror head uses mirror.lr."""
    weight_decay: float = 1e-4
    """AdamW weight decay, on weight matrices and kernels only (not on biases, norms, embeddings' scales)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW's beta1, beta2."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Learning rate after the warm-up: cosine decay to 0 at the last step, or constant."""
    warmup_steps: int = 100
    """Steps of linear warm-up from 0 to the peak learning rate."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this; 0 = no clipping."""
    ema: float = 0.0
    """Decay of an exponential moving average of the weights, used to validate and save; 0 = off."""

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        check_range("warmup_steps", self.warmup_steps, 0, MAX_STEPS)
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0, got {self.grad_clip}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")


@dataclass
class ProbeConfig:
    """Where an objective's frozen models come from (probe: both; frozen_u: the recognizer); the
    objective says which it needs."""

    policy_ckpt: str = ""
    """Checkpoint (.pt, or a run folder) holding the frozen policy: a policy or joint run."""
    recognizer_ckpt: str = ""
    """Checkpoint (.pt, or a run folder) holding the frozen recognizer: a recognizer or joint run."""
    init: Literal["checkpoint", "random"] = "checkpoint"
    """Weights of the frozen models: the trained ones, or random (the control: same architectures)."""


@dataclass
class TrainConfig:
    mode: str = "policy"
    """The training objective: what trains, on which batches, with which loss (embodied-train --help
    lists them: policy, recognizer, joint, probe and the controls of the mirror comparison)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The demonstrations and how batches are cut from them."""
    policy: PolicyConfig | None = None
    """The policy E (modes policy, joint), picked by policy.name."""
    recognizer: RecognizerConfig | None = None
    """The recognizer U (modes recognizer, joint), picked by recognizer.name."""
    mirror: MirrorConfig | None = None
    """The mirror head and alignment loss (modes joint, probe)."""
    probe: ProbeConfig | None = None
    """Where the frozen models come from (probe, frozen_u); the data window/clip settings they were
    trained with come from them too."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser, learning-rate schedule, gradient clipping and EMA."""
    steps: int = 1000
    """Optimiser steps in all (1 to 10**9; the intervals below too)."""
    log_every: int = 50
    """Steps between training-metric lines (metrics.jsonl, TensorBoard)."""
    val_every: int = 250
    """Steps between validations on the valid split (and at the end); 0 = never."""
    val_batches: int = 20
    """Batches of the valid split per validation (a fixed subset, the same every time)."""
    ckpt_every: int = 250
    """Steps between checkpoints (checkpoints/last.pt; also at the end); 0 = only at the end."""
    rollout_every: int = 0
    """Steps between policy rollouts in the simulator (needs embodied.eval); 0 = never."""
    rollout_episodes: int = 10
    """Rollout episodes per task at each rollout."""
    rollout_videos: int = 1
    """Episodes per task written as captioned GIF videos at each rollout (videos/step_<N>/) and shown
    in TensorBoard and W&B (rollout/video/<task>_seed<S>); 0: none."""
    seed: int = 0
    """Seed of the weights, the data order and every random draw of training (0 to 2**32 - 1)."""
    out: str = "runs/train"
    """Output folder: config.yaml, metrics.jsonl, TensorBoard events, checkpoints/, summary.json."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when present, else CPU."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Arithmetic of the training steps and validation. auto: mixed precision on CUDA (bf16
    autocast, or fp16 with loss scaling where bf16 is missing), fp32 on a CPU; fp32: fp32
    everywhere; bf16: bf16 autocast on CUDA and on a CPU (it pays only on a CPU with native bf16,
    AVX512-BF16 or AMX; elsewhere it is emulated and several times slower: tools/bench_train.py
    --peak measures it). Rollouts and embodied-eval always run in fp32."""
    channels_last: bool = False
    """Hold the convolution weights, and so the activations, in channels-last memory (NHWC; NDHWC
    for video): the same outputs up to rounding. Whether it pays depends on the CPU (GroupNorm's
    channels-last kernel can be slower): measure with tools/bench_train.py --peak (docs/speed.md)."""
    compile: bool = False
    """torch.compile the convolutional backbones (each image encoder's, the recognizer's) for the
    training steps, unless a feature tap lies inside one; weights and checkpoints stay the same.
    The first step compiles (tens of seconds on a CPU; whether the steps are faster after:
    docs/speed.md). CPU only: refused on CUDA, where the compiled backward of the recognizer
    failed (torch 2.11)."""
    threads: int = 0
    """CPU threads per operation while training (torch.set_num_threads; 0 to 1024); 0: torch's
    default, one per core. Runs sharing the cores should take cores / runs each: threads competing
    for busy cores slow a small step down many times over (measured in docs/speed.md)."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """Optional Weights & Biases logging (off by default)."""

    @staticmethod
    def upgrade_raw(raw: dict, where: str) -> dict:
        """A config written before ``lambda_ee`` moved into the mirror section (one kept in an
        older checkpoint or bench marker, or an old YAML): the top-level key moves there. A run
        without a mirror head never used it, so there it is dropped."""
        if "lambda_ee" not in raw:
            return raw
        raw = dict(raw)
        value = raw.pop("lambda_ee")
        mirror = raw.get("mirror")
        if isinstance(mirror, dict):
            if mirror.get("lambda_ee", value) != value:
                raise UserError(f"{where}: lambda_ee is now mirror.lambda_ee; set that one only")
            raw["mirror"] = {**mirror, "lambda_ee": value}
        return raw

    def __post_init__(self) -> None:
        self.objective.check_config(self)  # an unknown mode: get_objective's error, naming the known ones
        window = self.policy.obs_steps if self.policy is not None else 1
        if self.policy is not None and self.data.obs_horizon not in (None, window):
            raise ValueError(
                f"data.obs_horizon {self.data.obs_horizon} disagrees with the policy's window of {window} "
                "observations; leave data.obs_horizon out: it is derived from the policy (policy.history)"
            )
        if self.data.obs_horizon is None:
            self.data = dataclasses.replace(self.data, obs_horizon=window)
        check_range("steps", self.steps, 1, MAX_STEPS)
        check_range("log_every", self.log_every, 1, MAX_STEPS)
        for key in ("val_every", "ckpt_every", "rollout_every"):
            check_range(key, getattr(self, key), 0, MAX_STEPS)
        if self.val_batches < 1 or self.rollout_episodes < 1:
            raise ValueError("val_batches and rollout_episodes must be at least 1")
        if self.rollout_videos < 0:
            raise ValueError(f"rollout_videos must be >= 0, got {self.rollout_videos}")
        check_range("threads", self.threads, 0, MAX_THREADS)  # 0: torch's default
        check_range("seed", self.seed, 0, MAX_SEED)

    @property
    def objective(self) -> Objective:
        """The registered objective ``mode`` names."""
        from embodied.train.objective import get_objective

        return get_objective(self.mode)


RESUME_FREE_KEYS = (
    "steps",
    "log_every",
    "val_every",
    "val_batches",
    "ckpt_every",
    "rollout_every",
    "rollout_episodes",
    "rollout_videos",
    "out",
    "device",
    "channels_last",
    "compile",
    "threads",
    "data.paths",
    "data.num_workers",
    "data.image_cache_bytes",
    "wandb",
)
"""Settings a resumed run may change: they change neither the weights so far nor the data order
(moved data is checked against the checkpoint's data spec and sample count instead). The execution
settings among them (device, channels_last, compile, threads) may change the rounding of the steps
after the resume, so a resumed run is bit-exact only with the same ones."""
