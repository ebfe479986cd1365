"""The training run: one :func:`~.step.update_step` and a thin loop around it (LeRobot's shape).

The parts live beside it: :mod:`.setup` (config, splits, models), :mod:`.objective` (the loss
of each mode), :mod:`.step` (one update, precision), :mod:`.validation` (losses and alignment
metrics), :mod:`.runlog` (the output folder, metrics and the summary) and :mod:`.checkpoint`.

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
import sys
import time
from pathlib import Path

import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from embodied.config import from_dict, to_dict
from embodied.errors import Stopped, UserError
from embodied.fileio import NO_ROOM, replace_atomically
from embodied.models.common import DataSpec
from embodied.policies.base import low_dim_keys
from embodied.train import checkpoint as ckpt
from embodied.train.config import RESUME_FREE_KEYS, TrainConfig
from embodied.train.distributed import Processes, lost_peer, same_everywhere, start, stopping
from embodied.train.objective import TrainModule
from embodied.train.optim import EMA, make_optimizer, make_scheduler, param_groups
from embodied.train.rollouts import PolicyEvaluator, numeric_results
from embodied.train.runlog import (
    OUTPUTS,
    Averager,
    RunLog,
    check_out,
    check_wandb,
    clear_outputs,
    format_summary,
    nan_to_none,
)
from embodied.train.sampling import ShardedBatches, train_loader
from embodied.train.setup import build_datasets, build_models, resolve
from embodied.train.step import (
    native_bf16,
    precision,
    precision_name,
    seed_everything,
    to_device,
    update_step,
)
from embodied.train.validation import gallery_indices, validate, validation_indices


# --------------------------------------------------------------------------- the run
def train(
    cfg: TrainConfig, resume: bool = False, overwrite: bool = False, evaluator: PolicyEvaluator | None = None
) -> dict:
    """Run (or, with ``resume``, continue) the training ``cfg`` describes; returns the summary.

    ``evaluator`` rolls the policy out every ``rollout_every`` steps (see :mod:`.rollouts`).
    """
    with same_everywhere():  # under torchrun every process meets these alike: rank 0 says so
        procs = start(cfg.device)
        if cfg.compile and procs.device.type == "cuda":
            procs.close()
            # Seen on an H100 with torch 2.11 (tools/gpu_check.sh): inductor's conv3d backward of the
            # recognizer failed its stride check at the first step. Refused up front, before any output.
            raise UserError(
                "compile=true on CUDA: torch.compile's backward of the recognizer's 3-D convolutions "
                "failed on the GPU (torch 2.11 inductor, an H100), and no compiled CUDA step has been "
                "checked; train eager (compile=false, the default)"
            )
    try:
        return _train(cfg, procs, resume, overwrite, evaluator)
    except OSError as err:
        if err.errno not in NO_ROOM:
            raise
        # a full disk, a read-only mount: every file is written atomically, so what is on disk is whole
        where = err.filename or cfg.out
        raise UserError(
            f"{where}: cannot write ({err.strerror}); the last checkpoint in {cfg.out} is kept: "
            f"make room, then {resume_command(cfg.out, procs)}"
        ) from None
    except RuntimeError as err:
        if not (procs.distributed and lost_peer(err)):
            raise
        # another rank died (killed, or a failure outside the checked sections); torchrun reports it
        stopping()
        raise Stopped(
            f"rank {procs.rank} stopped: another process of the run went away (it failed or was killed: "
            f"see above, and torchrun's report); the last checkpoint in {cfg.out} is kept: "
            f"{resume_command(cfg.out, procs)} continues it"
        ) from None
    finally:
        procs.close()


def resume_command(out: str | Path, procs: Processes) -> str:
    """The command that continues the run in ``out`` with as many processes as it had."""
    if procs.distributed:
        return f"torchrun --nproc_per_node={procs.world_size} -m embodied.cli.train --resume {out}"
    return f"embodied-train --resume {out}"


def _train(
    cfg: TrainConfig, procs: Processes, resume: bool, overwrite: bool, evaluator: PolicyEvaluator | None
) -> dict:
    out = Path(cfg.out)
    # every process builds the run; rank 0 alone checks the output folder
    with procs.together():
        if procs.is_main:
            check_out(out, resume, overwrite)
            check_wandb(cfg.wandb)
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

        seed_everything(cfg.seed)  # the same initial weights in every process
        models, made_with = build_models(cfg, spec, stats, sources)
        module = TrainModule(cfg.mode, models).to(procs.device)
        if cfg.channels_last:
            module.use_channels_last()
        compiled = module.compile_backbones(dynamic=False) if cfg.compile else []
        lrs = {"mirror": cfg.mirror.lr} if cfg.mirror else {}
        groups = param_groups(models, cfg.optim, lrs)
        optimizer = make_optimizer(groups, cfg.optim)  # after .to() and the memory format: it flattens them
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
            step, best, last = ckpt.restore_training(
                saved, module, optimizer, scheduler, scaler, ema, sampler, procs.rank, procs.world_size
            )
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

    with procs.together():  # rank 0's first writes
        if procs.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not resume:
                clear_outputs(out)
            text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
            replace_atomically(out / "config.yaml", lambda tmp: tmp.write_text(text))
        log = RunLog(out if procs.is_main else None, step, cfg.steps, wandb=cfg.wandb, config=to_dict(cfg))
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

    def save(kind: str, rngs: list[dict] | None = None) -> None:
        """last.pt (everything to resume; ``rngs``: every process's random state) or best.pt
        (models only); rank 0 writes, the others return."""
        if not procs.is_main:
            return
        with ema.applied() if ema else contextlib.nullcontext():
            entries = {name: ckpt.model_entry(name, models[name], *made_with[name]) for name in models}
        payload = ckpt.run_payload(cfg, spec, stats, entries)
        if kind == "last":
            payload["train"] = ckpt.training_state(
                step=step,
                sampler=sampler,
                num_samples=len(train_ds),
                world_size=procs.world_size,
                optimizer=optimizer,
                scheduler=scheduler,
                scaler=scaler,
                ema=ema,
                module=module,
                best=best,
                last=last,
                rngs=rngs,
            )
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
            final = step == cfg.steps
            logs = final or step % cfg.log_every == 0
            validates = valid_ds is not None and (final or step % cfg.val_every == 0)
            rolls = bool(evaluator and cfg.rollout_every and (final or step % cfg.rollout_every == 0))
            # what one process may fail in alone (its loss diverged, rank 0's writes): all stop together
            with procs.together(when=logs or validates or rolls):
                if logs:
                    mean = avg.mean()
                    if "loss" not in mean:  # every loss since the last log was NaN: the weights are lost
                        last_pt = out / "checkpoints" / "last.pt"
                        raise UserError(
                            f"training diverged: the loss was NaN or infinite in every step up to step "
                            f"{step} since the last log (a lower optim.lr or optim.grad_clip may help); "
                            + (
                                f"the last checkpoint in {out} is kept"
                                if last_pt.exists()
                                else f"no checkpoint was written to {out} yet (a new run there: --overwrite)"
                            )
                        )
                    now = time.time()
                    mean["samples_per_s"] = global_batch * avg.counts.get("loss", 1) / max(now - tick, 1e-9)
                    avg, tick = Averager(), now
                    last["train"] = mean
                    log.event("train", step, mean)
                    log.bar.set_postfix(
                        loss=f"{mean['loss']:.4f}", samples_s=f"{mean['samples_per_s']:.0f}", refresh=False
                    )
                if procs.is_main and validates:
                    run_validation(final)
                if procs.is_main and rolls:
                    run_rollouts()
            if final or (cfg.ckpt_every and step % cfg.ckpt_every == 0):
                rngs = procs.gather(ckpt.rng_state())  # a collective: outside the section
                with procs.together():
                    save("last", rngs)
        procs.broadcast_buffers(module)  # every process ends with the model rank 0 saved
    except BaseException:
        log.close()  # flushes what was logged; on a full disk it raises too
        raise
    finally:
        del batches
        torch.set_num_threads(threads)

    summary = {}
    with procs.together():  # rank 0's last writes: the log's flush (a full disk raises here too)
        log.close()
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
                # what the steps ran in, auto resolved
                "precision": precision_name(procs.device, cfg.precision),
                # the GPU memory the run needed (its allocator's high-water mark); None on a CPU
                "cuda_max_memory_mib": (
                    round(torch.cuda.max_memory_allocated(procs.device) / 2**20, 1)
                    if procs.device.type == "cuda"
                    else None
                ),
                "best_val_loss": best["loss"] if math.isfinite(best["loss"]) else None,
                "best_step": best["step"],
                # NaN (e.g. cos_neg of a one-class validation set) is not JSON: null, as in metrics.jsonl
                "train": nan_to_none(last.get("train", {})),
                "val": nan_to_none(last.get("val", {})),
                "rollout": nan_to_none(last.get("rollout", {})),
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
