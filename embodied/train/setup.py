"""What a run is built from, by one function: :func:`build_run` resolves the config, reads the
train and valid splits, asks the objective for its models, and makes the optimiser, schedule,
precision, EMA and batch order, restored from the checkpoint when resuming."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from embodied.config import from_dict, to_dict
from embodied.data.reader import DemoDataset
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.fileio import remove_stale_temporaries
from embodied.policies.base import low_dim_keys
from embodied.train import checkpoint as ckpt
from embodied.train import memory
from embodied.train.config import RESUME_FREE_KEYS, TrainConfig
from embodied.train.distributed import Processes
from embodied.train.objective import Objective, TrainModule
from embodied.train.optim import EMA, make_optimizer, make_scheduler, param_groups
from embodied.train.runlog import OUTPUTS, check_out, check_wandb
from embodied.train.sampling import MixedBatches, ShardedBatches
from embodied.train.step import precision, seed_everything


@dataclass
class TrainState:
    """What changes as a run trains: the step, the best validation so far and the latest metrics;
    last.pt keeps all three."""

    step: int = 0
    best: dict = field(default_factory=lambda: {"loss": math.inf, "step": 0})
    """The lowest validation loss and its step (best.pt)."""
    last: dict[str, dict] = field(default_factory=dict)
    """The latest ``train``, ``val`` and ``rollout`` metrics (the summary's)."""
    wall_before: float = 0.0
    """Seconds the processes before this one (a resumed run's) trained, up to the checkpoint this
    one resumed from: what they ran after it is lost with the steps it made."""
    started: float = field(default_factory=time.time)
    """When this process began training (the loop sets it)."""

    @property
    def wall_s(self) -> float:
        """Seconds of training that made the run's steps so far, across resumes."""
        return self.wall_before + (time.time() - self.started)


@dataclass
class Run:
    """Everything one training run is made of; built by :func:`build_run`."""

    cfg: TrainConfig
    """The config as resolved (data settings explicit, the keys read)."""
    procs: Processes
    out: Path
    objective: Objective
    spec: DataSpec
    stats: dict
    """Normalisation statistics of the train split."""
    train_ds: DemoDataset
    valid_ds: DemoDataset | None
    models: dict[str, nn.Module]
    made_with: dict[str, tuple]
    """``{name: (config, spec)}`` each model is saved with."""
    module: TrainModule
    optimizer: object
    scheduler: object
    autocast: object
    scaler: object
    ema: EMA | None
    sampler: ShardedBatches
    state: TrainState
    compiled: list[str]
    """The backbones compiled for training."""


def build_datasets(cfg: TrainConfig, vocab: DataSpec | None) -> tuple[DemoDataset, DemoDataset | None]:
    """The train split, and the valid split when validation is on (same tasks and instructions)."""
    d = cfg.data
    common = dict(
        mode=cfg.objective.data,
        obs_keys=d.obs_keys,
        obs_horizon=d.obs_horizon,
        action_horizon=d.action_horizon,
        clip_len=d.clip_len,
        clip_stride=d.clip_stride,
        camera=d.camera,
        image_cache_bytes=d.image_cache_bytes,
    )
    train_ds = DemoDataset(
        d.paths,
        split="train",
        training=True,
        max_demos=d.max_demos,
        action_demos=d.action_demos,
        watch_all=d.watch_all,
        classes=vocab.classes if vocab else None,
        instructions=vocab.instructions if vocab else None,
        **common,
    )
    if cfg.objective.trains & {"recognizer", "mirror"} and len(train_ds.classes) == 1:
        print(
            f"warning: the data hold one class ({train_ds.classes[0]}): the recognizer and the mirror head "
            "have nothing to tell apart (chance is 1.0). A demo's task comes from its task attribute, "
            "else its file's env_args.env_name, else the file name",
            file=sys.stderr,
        )
    if not cfg.val_every:
        return train_ds, None
    common["camera"] = train_ds.camera
    try:
        valid_ds = DemoDataset(
            d.paths,
            split="valid",
            training=False,
            classes=train_ds.classes,
            instructions=train_ds.instructions,
            **common,
        )
    except UserError as err:
        raise UserError(f"{err} (validation needs the valid split; val_every=0 trains without)") from None
    return train_ds, valid_ds


def build_run(cfg: TrainConfig, procs: Processes, resume: bool, overwrite: bool) -> Run:
    """Every process builds the run alike; rank 0 alone checks the output folder. Resuming, the
    config must agree with the checkpoint's (but for :data:`RESUME_FREE_KEYS`) and the run's
    objects take the checkpoint's state."""
    out = Path(cfg.out)
    objective = cfg.objective
    with procs.together():
        if procs.is_main:
            check_out(out, resume, overwrite)
            check_wandb(cfg.wandb)
            # what a run killed while writing one of its files left
            for folder, names in ((out, OUTPUTS), (out / "checkpoints", ("last.pt", "best.pt"))):
                for tmp in remove_stale_temporaries(folder, names):
                    print(f"note: removed {tmp}, left by a run killed while saving", file=sys.stderr)
        saved = ckpt.read_checkpoint(out) if resume else None
        if saved and saved["kind"] != cfg.mode:
            raise UserError(f"{out} holds a {saved['kind']} run; the config's mode is {cfg.mode}")
        cfg, sources = objective.resolve(cfg)
        vocab = DataSpec.from_json(json.loads(saved["spec"])) if saved else None
        vocab = objective.vocabulary(sources) or vocab
        train_ds, valid_ds = build_datasets(cfg, vocab)
        if objective.data != "window":
            cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, camera=train_ds.camera))
        spec = train_ds.data_spec()
        stats = train_ds.normalization_stats()
        if cfg.policy is not None and cfg.policy.obs_keys is None:  # what the run read, kept in its config
            keys = low_dim_keys(spec)
            cfg = dataclasses.replace(
                cfg,
                data=dataclasses.replace(cfg.data, obs_keys=keys),
                policy=dataclasses.replace(cfg.policy, obs_keys=keys),
            )
        if saved:
            # Read through today's config classes: a field added since the run was made takes its
            # default (the behaviour the run had), so it is no difference.
            stored = to_dict(
                from_dict(TrainConfig, json.loads(saved["config"]), f"the config stored in {out}")
            )
            diffs = ckpt.config_differences(stored, to_dict(cfg), RESUME_FREE_KEYS)
            if diffs:
                raise UserError(
                    f"{out}: the config differs from the checkpoint's: {diffs[0]}"
                    + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "")
                )
            ckpt.check_spec(vocab, spec, f"the checkpoint in {out}")

        # before any weight is made: a run the machine cannot hold is refused in one line
        memory.check_fits(cfg, memory.estimate(cfg, spec, stats, sources, (train_ds, valid_ds)), procs.device)
        seed_everything(cfg.seed)  # the same initial weights in every process
        models, made_with = objective.build_models(cfg, spec, stats, sources)
        objective.prepare(cfg, models, train_ds)
        module = TrainModule(objective, models).to(procs.device)
        if cfg.channels_last:
            module.use_channels_last()
        compiled = module.compile_backbones(dynamic=False) if cfg.compile else []
        groups = param_groups(models, cfg.optim, objective.learning_rates(cfg))
        optimizer = make_optimizer(groups, cfg.optim)  # after .to() and the memory format: it flattens them
        scheduler = make_scheduler(optimizer, cfg.optim, cfg.steps)
        autocast, scaler = precision(procs.device, cfg.precision)
        ema = EMA(module, cfg.optim.ema) if cfg.optim.ema > 0 else None
        seed_everything(cfg.seed + procs.rank)  # each process its own dropout and augmentation draws

        where = (cfg.seed, procs.rank, procs.world_size)
        if cfg.data.action_rows and cfg.data.watch_all:
            acting = np.flatnonzero(train_ds.ep_acts[train_ds.sample_ep])  # the action demos' samples
            sampler = MixedBatches(acting, len(train_ds), cfg.data.batch_size, cfg.data.action_rows, *where)
        else:
            sampler = ShardedBatches(len(train_ds), cfg.data.batch_size, *where)
        if sampler.batches_per_epoch == 0:
            raise UserError(
                f"the train split has {sampler.per_rank} samples per process, fewer than "
                f"data.batch_size={cfg.data.batch_size}"
            )
        state = TrainState()
        if saved:
            state.step, state.best, state.last, state.wall_before = ckpt.restore_training(
                saved, module, optimizer, scheduler, scaler, ema, sampler, procs.rank, procs.world_size
            )
        sampler.start = state.step
    return Run(
        cfg=cfg,
        procs=procs,
        out=out,
        objective=objective,
        spec=spec,
        stats=stats,
        train_ds=train_ds,
        valid_ds=valid_ds,
        models=models,
        made_with=made_with,
        module=module,
        optimizer=optimizer,
        scheduler=scheduler,
        autocast=autocast,
        scaler=scaler,
        ema=ema,
        sampler=sampler,
        state=state,
        compiled=compiled,
    )
