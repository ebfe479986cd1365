"""The training loop: one :func:`update_step` and a thin loop around it (LeRobot's shape).

    run = train(load_config(TrainConfig, "configs/joint_quick.yaml"))

What one run does, in order:

1. resolve the config (probe mode takes its data settings from the probed checkpoints) and,
   when resuming, check it against the checkpoint's;
2. build the train split (windows, clips or pairs, per mode) and the valid split, and fit
   the policy's normalisation on the train split;
3. build the models (or load the frozen ones, for a probe), the optimiser (the mirror head in
   its own group at ``mirror.lr``), the warm-up + cosine/constant schedule, EMA, AMP on CUDA;
4. train: ``update_step`` per batch; every ``log_every`` steps a metrics line; every
   ``val_every`` a validation (with the EMA weights when on; best.pt on a new lowest loss);
   every ``rollout_every`` simulator rollouts when ``embodied.eval`` is installed; every
   ``ckpt_every`` last.pt;
5. at the end, a last validation (joint and probe: with ``tsne.png`` of the shared space) and
   checkpoint, ``summary.json`` and a printed summary.

Exact resume: batch ``b`` is a pure function of the seed and ``b`` (:mod:`.sampling`), and
the checkpoint holds every random state, so a run killed at any point and resumed from its
last checkpoint ends with the same weights as one never stopped. Validation and rollouts draw
their random numbers from forked generators, so they never change training.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from embodied import keys as K
from embodied.config import from_dict, to_dict
from embodied.data.reader import DemoDataset
from embodied.errors import UserError
from embodied.fileio import NO_ROOM, check_writable, replace_atomically
from embodied.mirror import (
    MirrorHead,
    chance_recall_at_k,
    episode_means,
    gallery_retrieval,
    linear_cka,
    pair_alignment,
    positive_mask,
    positive_negative_cosine,
    recall_at_k,
    tsne_plot,
)
from embodied.models.common import DataSpec
from embodied.train import checkpoint as ckpt
from embodied.train.config import RESUME_FREE_KEYS, TrainConfig
from embodied.train.distributed import Processes, start
from embodied.train.optim import EMA, make_scheduler, param_groups
from embodied.train.rollouts import PolicyEvaluator, numeric_results
from embodied.train.sampling import ShardedBatches, fixed_subset, train_loader

RECALL_KS = (1, 5)
"""Recall@k reported on the validation pairs (joint and probe)."""


# --------------------------------------------------------------------------- the loss
class TrainModule(nn.Module):
    """Every model of a run and the total loss of one batch; what DDP wraps.

    The models expose ``loss()``, not ``forward()``; DDP synchronises gradients only through
    its wrapped module's forward, so the total loss is computed here.
    """

    def __init__(self, mode: str, models: dict[str, nn.Module], lambda_ee: float) -> None:
        super().__init__()
        self.mode = mode
        self.models = nn.ModuleDict(models)
        self.lambda_ee = lambda_ee

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
                loss = loss_u + self.lambda_ee * loss_e + m["mirror"].config.weight * loss_a
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


# --------------------------------------------------------------------------- one step
def update_step(
    model: nn.Module,
    batch: dict,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    grad_clip: float = 0.0,
    autocast=contextlib.nullcontext,
    scaler: torch.amp.GradScaler | None = None,
    ema: EMA | None = None,
) -> dict[str, float]:
    """One optimiser step on one batch: forward, backward, clip, step, schedule, EMA; its metrics."""
    model.train()
    with autocast():
        loss, metrics = model(batch)
    if scaler is not None:  # fp16: scale the loss so small gradients do not underflow
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # foreach: one batched norm over all the gradients (the same result as one norm per tensor)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip if grad_clip > 0 else math.inf, foreach=True)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    if ema is not None:
        ema.update()
    metrics["grad_norm"] = float(grad_norm)
    metrics["lr"] = optimizer.param_groups[0]["lr"]
    return metrics


# --------------------------------------------------------------------------- set-up
def resolve(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, dict]]:
    """The config with data settings made explicit, and the probed models' checkpoint entries.

    Probe mode reads windows and clips as the probed models were trained on them: To and Ta
    from the policy's data, the clip length, stride and camera from the recognizer's.
    """
    sources: dict[str, dict] = {}
    data = cfg.data
    if cfg.mode == "probe":
        for name, path in (("policy", cfg.probe.policy_ckpt), ("recognizer", cfg.probe.recognizer_ckpt)):
            payload = ckpt.read_checkpoint(path)
            entry = ckpt.source_entry(payload, path, name)
            sources[name] = entry | {"run": ckpt.checkpoint_config(payload, path)}
        pspec = DataSpec.from_json(json.loads(sources["policy"]["spec"]))
        rspec = DataSpec.from_json(json.loads(sources["recognizer"]["spec"]))
        rdata = sources["recognizer"]["run"].data
        data = dataclasses.replace(
            data,
            obs_keys=list(json.loads(sources["policy"]["config"])["obs_keys"]),
            obs_horizon=pspec.obs_horizon,
            action_horizon=pspec.action_horizon,
            clip_len=rspec.clip_len,
            clip_stride=rdata.clip_stride,
            camera=rdata.camera,
        )
    elif data.obs_keys is None:
        data = dataclasses.replace(data, obs_keys=list(cfg.policy.obs_keys) if cfg.policy else [])
    return dataclasses.replace(cfg, data=data), sources


def build_datasets(cfg: TrainConfig, vocab: DataSpec | None) -> tuple[DemoDataset, DemoDataset | None]:
    """The train split, and the valid split when validation is on (same tasks and instructions)."""
    d = cfg.data
    common = dict(
        mode=cfg.data_mode,
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
        classes=vocab.classes if vocab else None,
        instructions=vocab.instructions if vocab else None,
        **common,
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


def build_models(cfg: TrainConfig, spec: DataSpec, stats: dict, sources: dict[str, dict]):
    """{name: model} and {name: (config, spec)} each model is saved with."""
    models: dict[str, nn.Module] = {}
    made_with: dict[str, tuple] = {}
    if cfg.mode == "probe":
        for name, entry in sources.items():
            pretrained = cfg.probe.init == "checkpoint"
            model, mcfg, mspec = ckpt.rebuild(name, entry, weights=pretrained)
            if name == "policy":
                ckpt.check_spec(
                    mspec,
                    spec,
                    f"the probed policy ({cfg.probe.policy_ckpt})",
                    keys=mcfg.obs_keys,
                    fields=("action_dim", "obs_horizon", "action_horizon"),
                )
                if not pretrained:
                    model.fit_normalization(stats)
            model.requires_grad_(False)
            models[name], made_with[name] = model, (mcfg, mspec)
    else:
        if cfg.policy is not None:
            models["policy"] = ckpt.build_model("policy", cfg.policy, spec)
            models["policy"].fit_normalization(stats)
            made_with["policy"] = (cfg.policy, spec)
        if cfg.recognizer is not None:
            models["recognizer"] = ckpt.build_model("recognizer", cfg.recognizer, spec)
            made_with["recognizer"] = (cfg.recognizer, spec)
    if cfg.mirror is not None:
        dims = [models["recognizer"].feature_dim, models["policy"].feature_dim]
        models["mirror"] = MirrorHead(cfg.mirror, *dims)
        made_with["mirror"] = (cfg.mirror, spec)
    return models, made_with


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (code that draws from numpy's global generator)
    torch.manual_seed(seed)


def precision(device: torch.device, mode: str = "auto"):
    """(autocast context factory, grad scaler or None) for ``TrainConfig.precision`` ``mode``.

    auto: bf16 autocast (or fp16 with loss scaling) on CUDA, fp32 on a CPU; fp32: no autocast;
    bf16: bf16 autocast on CUDA or a CPU.
    """
    if mode not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {mode!r}")
    if mode == "fp32" or (mode == "auto" and device.type != "cuda"):
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if mode == "bf16" or torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes in bf16 natively (a CPU: AVX512-BF16 or AMX), not emulated."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: to_device(v, device) if isinstance(v, dict) else v.to(device, non_blocking=True)
        for k, v in batch.items()
    }


# --------------------------------------------------------------------------- output folder
OUTPUTS = ("config.yaml", "metrics.jsonl", "summary.json", "tsne.png", "checkpoints")
"""What a run writes in its folder, besides TensorBoard's events.out.tfevents.* files."""


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: output folder is a file")
    check_writable(out)  # before the data are read and the models built
    if resume:
        if not ckpt.checkpoint_path(out).is_file():
            raise UserError(f"{out}: no checkpoints/last.pt to resume from (start again with --overwrite)")
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: output folder exists; --resume {out} continues it, --overwrite starts again")


def clear_outputs(out: Path) -> None:
    """Remove what an earlier run wrote here (only that: other files stay)."""
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for path in out.glob("events.out.tfevents.*"):
        path.unlink()


class RunLog:
    """metrics.jsonl (one JSON line per event), TensorBoard scalars and the progress bar; rank 0 only."""

    def __init__(self, out: Path | None, start: int, total: int) -> None:
        self.out = out
        self.bar = tqdm(
            total=total, initial=start, disable=out is None, unit="step", dynamic_ncols=True, mininterval=1.0
        )
        self.jsonl = self.tb = None
        if out is None:
            return
        path = out / "metrics.jsonl"
        if start and path.exists():  # resumed: drop what the killed run logged after its checkpoint
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= start]
            replace_atomically(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept)))
        self.jsonl = path.open("a")
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out), purge_step=start + 1 if start else None)

    def event(self, kind: str, step: int, metrics: dict[str, float]) -> None:
        if self.jsonl is None:
            return
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()
        }
        self.jsonl.write(json.dumps({"event": kind, "step": step, **clean}) + "\n")
        self.jsonl.flush()
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                self.tb.add_scalar(f"{kind}/{k}", v, step)

    def note(self, text: str) -> None:
        if self.out is not None:
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        if self.jsonl is not None:
            self.jsonl.close()
            self.tb.close()


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


class Averager:
    """Mean of each metric over the steps since the last reset (NaN values left out)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, float], weight: int = 1) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.sums[k] = self.sums.get(k, 0.0) + weight * v
                self.counts[k] = self.counts.get(k, 0) + weight

    def mean(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


# --------------------------------------------------------------------------- validation
def _compute_batches(module: TrainModule, dataset: DemoDataset, indices, batch_size: int, device, autocast):
    """(batch, metrics, features) of ``module.compute`` over ``indices`` in batches."""
    for lo in range(0, len(indices), batch_size):
        batch = to_device(dataset.__getitems__(indices[lo : lo + batch_size]), device)
        with autocast():
            _, metrics, features = module.compute(batch)
        yield batch, metrics, features


@torch.no_grad()
def validate(
    module: TrainModule,
    dataset: DemoDataset,
    indices: np.ndarray,
    batch_size: int,
    device: torch.device,
    autocast,
    tsne: Path | None = None,
    spec: DataSpec | None = None,
    gallery: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean metrics over fixed validation batches; with a mirror head, alignment over all the pairs.

    Besides the batch means (``loss``, ``policy/*``, ``recognizer/*``, ``mirror/*``), joint and
    probe runs get, over every validation pair at once (see :func:`alignment_metrics`):
    Recall@1/5 both ways and their chance levels, ``cos_pos``/``cos_neg``, ``pair_cos`` and the
    linear CKA of the raw features. With ``gallery`` (sample indices, :func:`gallery_indices`)
    they also get ``gallery/*``: retrieval among one episode-averaged pair per validation
    episode at every positive level, with chance levels (see
    :func:`~embodied.mirror.gallery_retrieval`); with ``tsne`` a path, that gallery's ``z_u``
    and ``z_e`` are drawn there, coloured by class and marked by instruction (``spec``'s names).
    """
    was_training = module.training
    module.eval()
    avg = Averager()
    feats_u, feats_e, ids = [], [], {K.EPISODE: [], K.INSTRUCTION: [], K.LABEL: []}
    shown = {K.EPISODE: [], K.INSTRUCTION: [], K.LABEL: []}
    gallery_u, gallery_e = [], []
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            for batch, metrics, features in _compute_batches(
                module, dataset, indices, batch_size, device, autocast
            ):
                avg.add(metrics, weight=len(batch[K.LABEL]))
                if features is not None:
                    feats_u.append(features[0].float())
                    feats_e.append(features[1].float())
                    for k in ids:
                        ids[k].append(batch[k])
            if feats_u and gallery is not None:
                for batch, _, features in _compute_batches(
                    module, dataset, gallery, batch_size, device, autocast
                ):
                    gallery_u.append(features[0].float())
                    gallery_e.append(features[1].float())
                    for k in shown:
                        shown[k].append(batch[k])
    finally:
        module.train(was_training)
    result = avg.mean()
    if feats_u:
        mirror = module.models["mirror"]
        f_u, f_e = torch.cat(feats_u), torch.cat(feats_e)  # (N, D_u), (N, D_e): the raw features
        z_u, z_e = mirror.embed(f_u, f_e)  # (N, dim) each
        ids = {k: torch.cat(v) for k, v in ids.items()}
        match = positive_mask(mirror.config.positives, ids[K.EPISODE], ids[K.INSTRUCTION], ids[K.LABEL])
        result |= alignment_metrics(f_u, f_e, z_u, z_e, match)
    if gallery_u:
        shown = {k: torch.cat(v).cpu() for k, v in shown.items()}
        z_u, z_e = mirror.embed(torch.cat(gallery_u), torch.cat(gallery_e))  # (G, dim) each
        m_u, episodes = episode_means(z_u, shown[K.EPISODE])  # (E, dim), (E,)
        m_e, _ = episode_means(z_e, shown[K.EPISODE])
        first = torch.searchsorted(shown[K.EPISODE], episodes)  # gallery rows are in episode order
        instruction, label = shown[K.INSTRUCTION][first], shown[K.LABEL][first]  # (E,) each
        if len(episodes) > 1:
            result |= {f"gallery/{k}": v for k, v in gallery_retrieval(m_u, m_e, instruction, label).items()}
        if tsne is not None and len(episodes) >= 2:
            tsne_plot(
                torch.cat([m_u, m_e]),  # (2E, dim)
                torch.cat([label, label]),  # (2E,)
                spec.classes if spec else (),
                tsne,
                title=f"shared space: z_u and z_e of {len(episodes)} validation episodes (mean of each)",
                groups=np.repeat([0, 1], len(episodes)),
                group_names=["z_u (recognizer)", "z_e (policy)"],
                instructions=torch.cat([instruction, instruction]),
                instruction_names=spec.instructions if spec else (),
            )
    return result


GALLERY_STEPS = 8
"""Steps of each validation episode whose pairs, averaged, are its entry in the probe's gallery."""


def gallery_indices(dataset: DemoDataset, steps: int = GALLERY_STEPS) -> np.ndarray:
    """Sample indices of ``steps`` evenly spaced steps of every episode (all of a shorter one),
    in episode order: the fixed gallery of :func:`validate`, independent of seeds and batches."""
    out = []
    for first, length in zip(dataset.ep_start, dataset.ep_len, strict=True):
        t = np.unique(np.linspace(0, length - 1, min(steps, length)).round().astype(np.int64))
        out.append(first + t)  # sample index of (episode, t): the samples are episodes back to back
    return np.concatenate(out)


def alignment_metrics(
    f_u: torch.Tensor, f_e: torch.Tensor, z_u: torch.Tensor, z_e: torch.Tensor, match: torch.Tensor
) -> dict[str, float]:
    """How aligned the N validation pairs are, all at once (row i of each side from one episode).

    - ``recall@{1,5}_{u2e,e2u}``: retrieval among all N, a hit on any positive of ``match``
      (the configured level), against ``chance@{1,5}``, a random ranking's expectation;
    - ``cos_pos`` / ``cos_neg``: mean cosine in the shared space of positive / negative pairs
      (NaN, logged as null, when there is none);
    - ``pair_cos``: mean cosine of each pair with its own partner (the per-episode score);
    - ``cka``: linear CKA of the raw features ``f_u`` (N, D_u) and ``f_e`` (N, D_e), before
      ``T_u``, ``T_e``: the alignment the two models hold by themselves;
    - ``pairs``: N.
    """
    recall = recall_at_k(z_u, z_e, ks=RECALL_KS, match=match)
    result = {f"recall@{k}_{d}": recall[f"{d}@{k}"] for k in RECALL_KS for d in ("u2e", "e2u")}
    result |= {f"chance@{k}": chance_recall_at_k(len(z_u), k, match.cpu()) for k in RECALL_KS}
    cos = positive_negative_cosine(z_u, z_e, match)
    result |= {"cos_pos": cos["pos"], "cos_neg": cos["neg"]}
    result["pair_cos"] = pair_alignment(z_u, z_e).mean().item()
    result["cka"] = linear_cka(f_u, f_e) if len(f_u) > 1 else math.nan
    result["pairs"] = float(len(z_u))
    return result


def validation_indices(dataset: DemoDataset, cfg: TrainConfig) -> np.ndarray:
    """A fixed subset of whole batches (a lone pair teaches InfoNCE nothing)."""
    n = len(dataset)
    if cfg.mirror is not None and n < 2:
        raise UserError(
            f"the valid split holds {n} pair; InfoNCE needs at least 2 (val_every=0 trains without)"
        )
    per = min(cfg.data.batch_size, n)
    count = min(cfg.val_batches * per, (n // per) * per)
    return fixed_subset(n, count, cfg.seed)


# --------------------------------------------------------------------------- the run
def train(
    cfg: TrainConfig, resume: bool = False, overwrite: bool = False, evaluator: PolicyEvaluator | None = None
) -> dict:
    """Run (or, with ``resume``, continue) the training ``cfg`` describes; returns the summary.

    ``evaluator`` rolls the policy out every ``rollout_every`` steps (see :mod:`.rollouts`).
    """
    procs = start(cfg.device)
    try:
        return _train(cfg, procs, resume, overwrite, evaluator)
    except OSError as err:
        if err.errno not in NO_ROOM:
            raise
        # a full disk, a read-only mount: every file is written atomically, so what is on disk is whole
        where = err.filename or cfg.out
        raise UserError(
            f"{where}: cannot write ({err.strerror}); the last checkpoint in {cfg.out} is kept: "
            f"make room, then embodied-train --resume {cfg.out}"
        ) from None
    finally:
        procs.close()


def _train(
    cfg: TrainConfig, procs: Processes, resume: bool, overwrite: bool, evaluator: PolicyEvaluator | None
) -> dict:
    out = Path(cfg.out)
    if procs.is_main:
        check_out(out, resume, overwrite)
        # what a run killed while writing one of its files left
        for folder, names in ((out, OUTPUTS), (out / "checkpoints", ("last.pt", "best.pt"))):
            for tmp in ckpt.remove_stale_temporaries(folder, names):
                print(f"note: removed {tmp}, left by a run killed while saving", file=sys.stderr)
    saved = ckpt.read_checkpoint(out) if resume else None
    if saved and saved["kind"] != cfg.mode:
        raise UserError(f"{out} holds a {saved['kind']} run; the config's mode is {cfg.mode}")
    cfg, sources = resolve(cfg)
    vocab = DataSpec.from_json(json.loads(saved["spec"])) if saved else None
    if cfg.mode == "probe":
        vocab = DataSpec.from_json(json.loads(sources["policy"]["spec"]))
    train_ds, valid_ds = build_datasets(cfg, vocab)
    if cfg.data_mode != "window":
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, camera=train_ds.camera))
    spec = train_ds.data_spec()
    stats = train_ds.normalization_stats()
    if saved:
        # Read through today's config classes: a field added since the run was made takes its
        # default (the behaviour the run had), so it is no difference.
        stored = to_dict(from_dict(TrainConfig, json.loads(saved["config"]), f"the config stored in {out}"))
        diffs = ckpt.config_differences(stored, to_dict(cfg), RESUME_FREE_KEYS)
        if diffs:
            raise UserError(
                f"{out}: the config differs from the checkpoint's: {diffs[0]}"
                + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "")
            )
        ckpt.check_spec(vocab, spec, f"the checkpoint in {out}")

    seed_everything(cfg.seed)  # the same initial weights in every process
    models, made_with = build_models(cfg, spec, stats, sources)
    module = TrainModule(cfg.mode, models, cfg.lambda_ee).to(procs.device)
    if cfg.channels_last:
        module.use_channels_last()
    compiled = module.compile_backbones(dynamic=False) if cfg.compile else []
    lrs = {"mirror": cfg.mirror.lr} if cfg.mirror else {}
    groups = param_groups(models, cfg.optim, lrs)
    # foreach: the update of every tensor in a few batched kernels (bit-identical to the per-tensor loop)
    optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), foreach=True)
    scheduler = make_scheduler(optimizer, cfg.optim, cfg.steps)
    autocast, scaler = precision(procs.device, cfg.precision)
    ema = EMA(module, cfg.optim.ema) if cfg.optim.ema > 0 else None
    seed_everything(cfg.seed + procs.rank)  # each process its own dropout and augmentation draws

    sampler = ShardedBatches(len(train_ds), cfg.data.batch_size, cfg.seed, procs.rank, procs.world_size)
    if sampler.batches_per_epoch == 0:
        raise UserError(
            f"the train split has {sampler.per_rank} samples per process, fewer than "
            f"data.batch_size={cfg.data.batch_size}"
        )
    step, best = 0, {"loss": math.inf, "step": 0}
    last: dict[str, dict] = {}
    if saved:
        step, best, last = _restore(saved, module, optimizer, scheduler, scaler, ema, sampler, procs)
    sampler.start = step
    if step >= cfg.steps:
        if procs.is_main:
            print(f"{out}: already trained {step} of {cfg.steps} steps; nothing to do")
        return json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}

    val_indices = validation_indices(valid_ds, cfg) if valid_ds is not None else None
    val_gallery = gallery_indices(valid_ds) if valid_ds is not None and cfg.mirror is not None else None
    model: nn.Module = module
    if procs.distributed:
        ids = [procs.device.index] if procs.device.type == "cuda" else None
        # find_unused_parameters: a head left out of the loss (e.g. instruction_loss_weight=0)
        # must not stall the gradient all-reduce.
        model = DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    if procs.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if not resume:
            clear_outputs(out)
        text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
        replace_atomically(out / "config.yaml", lambda tmp: tmp.write_text(text))
    log = RunLog(out if procs.is_main else None, step, cfg.steps)
    if procs.is_main:
        n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
        log.note(
            f"{cfg.mode}: {len(train_ds)} train samples, "
            + ", ".join(f"{k} {v / 1e6:.2f}M params" for k, v in n_params.items())
            + f", device {procs.device}, {procs.world_size} process(es)"
            + (f", resumed at step {step}" if step else "")
        )
        if cfg.rollout_every and evaluator is None:
            log.note("rollouts skipped: embodied.eval is not installed")
        if cfg.precision == "bf16" and not native_bf16(procs.device):
            log.note(f"precision bf16: no native bf16 on this {procs.device.type}: emulated, slower")
        if compiled:
            log.note(f"compiled for training: {', '.join(compiled)} (the first step compiles)")

    def save(kind: str) -> None:
        """last.pt (everything to resume; every process's random state) or best.pt (models only)."""
        rngs = procs.gather(ckpt.rng_state()) if kind == "last" else None
        if not procs.is_main:
            return
        with ema.applied() if ema else contextlib.nullcontext():
            entries = {name: ckpt.model_entry(name, models[name], *made_with[name]) for name in models}
        payload = {
            "format": ckpt.FORMAT,
            "format_version": ckpt.FORMAT_VERSION,
            "kind": cfg.mode,
            "config": json.dumps(to_dict(cfg)),
            "spec": json.dumps(spec.to_json()),
            "stats": ckpt.stats_to_tensors(stats),
            "models": entries,
        }
        if kind == "last":
            epoch, pos = sampler.position(step)
            payload["train"] = {
                "step": step,
                "epoch": epoch,
                "batch_in_epoch": pos,
                "batches_per_epoch": sampler.batches_per_epoch,
                "num_samples": len(train_ds),
                "world_size": procs.world_size,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler else {},
                "ema": ema.state_dict() if ema else {},
                "weights": {k: v.detach().cpu() for k, v in module.state_dict().items()} if ema else {},
                "best": best,
                "last": last,
                "rng": rngs,
            }
        ckpt.save_checkpoint(out / "checkpoints" / f"{kind}.pt", payload)

    def run_validation(final: bool) -> None:
        tsne = out / "tsne.png" if final and cfg.mirror is not None else None
        with ema.applied() if ema else contextlib.nullcontext():
            metrics = validate(
                module,
                valid_ds,
                val_indices,
                cfg.data.batch_size,
                procs.device,
                autocast,
                tsne,
                spec,
                gallery=val_gallery,
            )
        last["val"] = metrics
        log.event("val", step, metrics)
        if metrics.get("loss", math.inf) < best["loss"]:
            best.update(loss=metrics["loss"], step=step)
            save("best")

    def run_rollouts() -> None:
        from embodied.data.collect import EVAL_SEED_START  # held-out seeds, never used for demonstrations

        policy = models["policy"]
        with ema.applied() if ema else contextlib.nullcontext(), torch.random.fork_rng(devices=[]):
            policy.eval()
            try:
                result = evaluator(policy, spec, spec.task_names, cfg.rollout_episodes, EVAL_SEED_START)
            finally:
                module.train()
        last["rollout"] = numeric_results(result)
        log.event("rollout", step, last["rollout"])

    global_batch = cfg.data.batch_size * procs.world_size
    avg, started, tick = Averager(), time.time(), time.time()
    first = step
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    batches = iter(train_loader(train_ds, sampler, cfg.data.num_workers))
    try:
        while step < cfg.steps:
            batch = to_device(next(batches), procs.device)
            metrics = update_step(
                model, batch, optimizer, scheduler, cfg.optim.grad_clip, autocast, scaler, ema
            )
            step += 1
            avg.add(metrics)
            log.bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                mean = avg.mean()
                if "loss" not in mean:  # every loss since the last log was NaN: the weights are lost
                    raise UserError(
                        f"training diverged: the loss was NaN or infinite in every step up to step {step} "
                        f"since the last log (a lower optim.lr or optim.grad_clip may help); "
                        f"the last checkpoint in {out} is kept"
                    )
                now = time.time()
                mean["samples_per_s"] = global_batch * avg.counts.get("loss", 1) / max(now - tick, 1e-9)
                avg, tick = Averager(), now
                last["train"] = mean
                log.event("train", step, mean)
                log.bar.set_postfix(
                    loss=f"{mean['loss']:.4f}", samples_s=f"{mean['samples_per_s']:.0f}", refresh=False
                )
            final = step == cfg.steps
            if procs.is_main and valid_ds is not None and (final or step % cfg.val_every == 0):
                run_validation(final)
            if (
                procs.is_main
                and evaluator is not None
                and cfg.rollout_every
                and (final or step % cfg.rollout_every == 0)
            ):
                run_rollouts()
            if final or (cfg.ckpt_every and step % cfg.ckpt_every == 0):
                save("last")
        procs.broadcast_buffers(module)  # every process ends with the model rank 0 saved
    finally:
        del batches
        log.close()
        torch.set_num_threads(threads)

    summary = {}
    if procs.is_main:
        wall = time.time() - started
        summary = {
            "mode": cfg.mode,
            "steps": step,
            "resumed_from": first or None,
            "out": str(out),
            "wall_time_s": round(wall, 2),
            "samples_per_s": round(global_batch * (step - first) / max(wall, 1e-9), 1),
            "processes": procs.world_size,
            "device": str(procs.device),
            "best_val_loss": best["loss"] if math.isfinite(best["loss"]) else None,
            "best_step": best["step"],
            # NaN (e.g. cos_neg of a one-class validation set) is not JSON: null, as in metrics.jsonl
            "train": _nan_to_none(last.get("train", {})),
            "val": _nan_to_none(last.get("val", {})),
            "rollout": _nan_to_none(last.get("rollout", {})),
            "checkpoints": {
                k: str(out / "checkpoints" / f"{k}.pt")
                for k in ("last", "best")
                if (out / "checkpoints" / f"{k}.pt").exists()
            },
        }
        text = json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n"
        replace_atomically(out / "summary.json", lambda tmp: tmp.write_text(text))
        print(format_summary(summary))
    return summary


def _restore(
    saved: dict, module, optimizer, scheduler, scaler, ema, sampler: ShardedBatches, procs: Processes
) -> tuple[int, dict, dict]:
    """Load a last.pt's training state; returns (step, best, last metrics)."""
    state = saved["train"]
    if state["world_size"] != procs.world_size:
        raise UserError(
            f"the checkpoint was trained by {state['world_size']} process(es); resume with as many "
            f"(torchrun --nproc_per_node={state['world_size']}), not {procs.world_size}"
        )
    if (state["num_samples"], state["batches_per_epoch"]) != (sampler.num_samples, sampler.batches_per_epoch):
        raise UserError(
            f"the train split has {sampler.num_samples} samples; the checkpoint's had "
            f"{state['num_samples']} (the data changed since)"
        )
    if state["weights"]:
        module.load_state_dict(state["weights"])
    else:
        for name, entry in saved["models"].items():
            module.models[name].load_state_dict(entry["state"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    ckpt.set_rng_state(state["rng"][procs.rank])
    return int(state["step"]), dict(state["best"]), dict(state["last"])


def format_summary(s: dict) -> str:
    """A few lines for the terminal."""
    speed = f"{s['wall_time_s']:.0f} s ({s['samples_per_s']:.0f} samples/s)"
    lines = [f"done: {s['mode']}, {s['steps']} steps in {speed}"]
    parts = []
    if "loss" in s["train"]:
        parts.append(f"train loss {s['train']['loss']:.4f}")
    val = s["val"]
    if "loss" in val:
        parts.append(f"val loss {val['loss']:.4f} (best {s['best_val_loss']:.4f} at step {s['best_step']})")
    for key in ("recognizer/class_acc", "policy/mse"):
        if key in val:
            parts.append(f"val {key} {val[key]:.3f}")
    if parts:
        lines.append(" | ".join(parts))
    if "recall@1_u2e" in val:
        lines.append(
            "val Recall@1 u->e {:.3f}, e->u {:.3f}; Recall@5 u->e {:.3f}, e->u {:.3f} "
            "(chance @1 {:.3f}, @5 {:.3f}; {:.0f} pairs)".format(
                val["recall@1_u2e"],
                val["recall@1_e2u"],
                val["recall@5_u2e"],
                val["recall@5_e2u"],
                val["chance@1"],
                val["chance@5"],
                val["pairs"],
            )
        )
    if "gallery/gallery" in val:
        parts = []
        for level in ("episode", "instruction", "class"):
            u2e, e2u = (_fmt(val.get(f"gallery/recall@1_{level}_{d}")) for d in ("u2e", "e2u"))
            parts.append(f"{level} {u2e}/{e2u} (chance {_fmt(val.get(f'gallery/chance@1_{level}'))})")
        parts.append(
            f"episode within its instruction {_fmt(val.get('gallery/within_instruction@1_u2e'))}/"
            f"{_fmt(val.get('gallery/within_instruction@1_e2u'))} "
            f"(chance {_fmt(val.get('gallery/chance@1_within_instruction'))})"
        )
        lines.append(
            f"val gallery of {val['gallery/gallery']:.0f} episodes, Recall@1 u->e/e->u: " + "; ".join(parts)
        )
    if "cka" in val:
        lines.append(
            "val cosine of positives {}, of negatives {}, of partners {}; "
            "linear CKA of the raw features {}".format(
                *(_fmt(val.get(k)) for k in ("cos_pos", "cos_neg", "pair_cos", "cka"))
            )
        )
    shown = ("success_rate", "ci_low", "ci_high", "mean_return")
    rollout = {k: v for k, v in s["rollout"].items() if k in shown} or s["rollout"]
    if rollout:
        lines.append("rollout " + ", ".join(f"{k} {v:.3f}" for k, v in rollout.items()))
    if s["checkpoints"]:
        lines.append("checkpoints: " + ", ".join(s["checkpoints"].values()))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _nan_to_none(metrics: dict) -> dict:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}
