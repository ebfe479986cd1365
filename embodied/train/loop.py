"""The training run: one :func:`~.step.update_step` and a thin loop around it (LeRobot's shape).

The parts live beside it: :mod:`.setup` (:func:`~.setup.build_run`: config, splits, models,
optimiser, the resumed state), :mod:`.objective` and :mod:`.objectives` (the loss of each
objective), :mod:`.step` (one update, precision), :mod:`.hooks` (validation, rollouts,
checkpoints), :mod:`.validation`, :mod:`.runlog` (the output folder, metrics and the summary)
and :mod:`.checkpoint`.

    run = train(load_config(TrainConfig, "configs/joint_quick.yaml"))

What one run does, in order:

1. resolve the config (a probe takes its data settings from the probed checkpoints) and,
   when resuming, check it against the checkpoint's;
2. build the train split (windows, clips or pairs, as the objective reads) and the valid
   split, and fit the policy's normalisation on the train split;
3. build the objective's models (or load the frozen ones), the optimiser (the mirror head in
   its own group at ``mirror.lr``), the warm-up + cosine/constant schedule, EMA, AMP on CUDA;
4. train: ``update_step`` per batch; every ``log_every`` steps a metrics line; then the hooks
   that are due: validation every ``val_every`` (with the EMA weights when on; best.pt on a
   new lowest loss), rollouts every ``rollout_every``, last.pt every ``ckpt_every``;
5. at the end, a last validation (with ``tsne.png`` of the shared space where there is a
   mirror head) and checkpoint, ``summary.json`` and a printed summary.

Exact resume: batch ``b`` is a pure function of the seed and ``b`` (:mod:`.sampling`), and
the checkpoint holds every random state, so a run killed at any point and resumed from its
last checkpoint ends with the same weights as one never stopped. Validation and rollouts draw
their random numbers from forked generators, so they never change training.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from embodied.config import to_dict
from embodied.errors import Stopped, UserError
from embodied.fileio import NO_ROOM, replace_atomically
from embodied.train import checkpoint as ckpt
from embodied.train.config import TrainConfig
from embodied.train.distributed import Processes, lost_peer, same_everywhere, start, stopping
from embodied.train.hooks import Checkpoints, Rollouts, Validation
from embodied.train.runlog import Averager, RunLog, clear_outputs, format_summary, nan_to_none, sample_frames
from embodied.train.sampling import batches_of, train_loader
from embodied.train.setup import Run, build_run
from embodied.train.step import native_bf16, precision_name, to_device, update_step


# --------------------------------------------------------------------------- the run
def train(cfg: TrainConfig, resume: bool = False, overwrite: bool = False, evaluator=None) -> dict:
    """Run (or, with ``resume``, continue) the training ``cfg`` describes; returns the summary.

    ``evaluator`` rolls the policy out every ``rollout_every`` steps; None: the simulator
    evaluation (see :mod:`.rollouts`).
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
        raise UserError(f"{where}: cannot write ({err.strerror}); {what_is_kept(cfg.out, procs)}") from None
    except RuntimeError as err:
        if not (procs.distributed and lost_peer(err)):
            raise
        # another rank died (killed, or a failure outside the checked sections); torchrun reports it
        stopping()
        raise Stopped(
            f"rank {procs.rank} stopped: another process of the run went away (it failed or was killed: "
            f"see above, and torchrun's report); {what_is_kept(cfg.out, procs)}"
        ) from None
    finally:
        procs.close()


def what_is_kept(out: str | Path, procs: Processes) -> str:
    """How a run stopped by a fault goes on: from its last checkpoint where one was written, else
    from the start (a full disk at the first checkpoint leaves none)."""
    if (Path(out) / "checkpoints" / "last.pt").is_file():
        return f"the last checkpoint in {out} is kept: {resume_command(out, procs)} continues it"
    return f"no checkpoint was written to {out} yet: start the run again (with --overwrite)"


def resume_command(out: str | Path, procs: Processes) -> str:
    """The command that continues the run in ``out`` with as many processes as it had."""
    if procs.distributed:
        return f"torchrun --nproc_per_node={procs.world_size} -m embodied.cli.train --resume {out}"
    return f"embodied-train --resume {out}"


def _train(cfg: TrainConfig, procs: Processes, resume: bool, overwrite: bool, evaluator) -> dict:
    run = build_run(cfg, procs, resume, overwrite)
    cfg, out, state = run.cfg, run.out, run.state
    if state.step >= cfg.steps:
        if procs.is_main:
            print(f"{out}: already trained {state.step} of {cfg.steps} steps; nothing to do")
        return json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    model = run.module
    if procs.distributed:
        ids = [procs.device.index] if procs.device.type == "cuda" else None
        # find_unused_parameters: a head left out of the loss (e.g. instruction_loss_weight=0)
        # must not stall the gradient all-reduce.
        model = DistributedDataParallel(run.module, device_ids=ids, find_unused_parameters=True)

    with procs.together():  # rank 0's first writes; the valid split's fixed subsets
        log = open_log(run, resume)
        checkpoints = Checkpoints(run)
        hooks = (Validation(run, log, checkpoints), Rollouts(run, log, evaluator))

    global_batch = cfg.data.batch_size * procs.world_size
    avg, started, tick = Averager(), time.time(), time.time()
    state.started = started
    first = state.step
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    batches = batches_of(train_loader(run.train_ds, run.sampler, cfg.data.num_workers))
    try:
        while state.step < cfg.steps:
            batch = next(batches)
            if state.step == 0 and procs.is_main:  # what the data look like, beside the curves
                log.images(0, sample_frames(batch))
            batch = to_device(batch, procs.device)
            metrics = update_step(
                model,
                batch,
                run.optimizer,
                run.scheduler,
                cfg.optim.grad_clip,
                run.autocast,
                run.scaler,
                run.ema,
            )
            state.step += 1
            avg.add(metrics)
            log.bar.update(1)
            final = state.step == cfg.steps
            logs = final or state.step % cfg.log_every == 0
            due = [hook for hook in hooks if hook.due(state.step, final)]
            # what one process may fail in alone (its loss diverged, rank 0's writes): all stop together
            with procs.together(when=logs or bool(due)):
                if logs:
                    now = time.time()
                    log_train(run, log, avg, global_batch * avg.counts.get("loss", 1) / max(now - tick, 1e-9))
                    avg, tick = Averager(), now
                if procs.is_main:
                    for hook in due:
                        hook(final)
            if checkpoints.due(state.step, final):
                rngs = procs.gather(ckpt.rng_state())  # a collective: outside the section
                with procs.together():
                    checkpoints.save("last", rngs)
        procs.broadcast_buffers(run.module)  # every process ends with the model rank 0 saved
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
            summary = write_summary(run, first, time.time() - started)
    return summary


def open_log(run: Run, resume: bool) -> RunLog:
    """Rank 0 prepares the output folder (config.yaml) and notes what the run is; the log of
    metrics and the progress bar (rank 0's; the others' log nothing)."""
    cfg, procs, out = run.cfg, run.procs, run.out
    made = procs.is_main and not out.exists()
    try:
        if procs.is_main:
            out.mkdir(parents=True, exist_ok=True)
            if not resume:
                clear_outputs(out)
            text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
            replace_atomically(out / "config.yaml", lambda tmp: tmp.write_text(text))
        log = RunLog(
            out if procs.is_main else None, run.state.step, cfg.steps, wandb=cfg.wandb, config=to_dict(cfg)
        )
    except (OSError, UserError) as err:  # a folder that cannot be made (under /proc), W&B refusing
        if procs.is_main and not resume and out.is_dir():  # nothing half-written stays
            clear_outputs(out)
            if made and not any(out.iterdir()):
                out.rmdir()
        if isinstance(err, OSError):
            raise UserError(f"{out}: cannot write the run's outputs ({err.strerror or err})") from None
        raise
    if procs.is_main:
        n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in run.models.items()}
        log.note(
            f"{cfg.mode}: {len(run.train_ds)} train samples, "
            + ", ".join(f"{k} {v / 1e6:.2f}M params" for k, v in n_params.items())
            + f", device {procs.device}, {procs.world_size} process(es)"
            + (f", resumed at step {run.state.step}" if run.state.step else "")
        )
        if cfg.precision == "bf16" and not native_bf16(procs.device):
            log.note(f"precision bf16: no native bf16 on this {procs.device.type}: emulated, slower")
        if run.compiled:
            log.note(f"compiled for training: {', '.join(run.compiled)} (the first step compiles)")
    return log


def log_train(run: Run, log: RunLog, avg: Averager, samples_per_s: float) -> None:
    """The mean training metrics since the last line; every loss NaN since then is divergence."""
    out, step = run.out, run.state.step
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
    mean["samples_per_s"] = samples_per_s
    run.state.last["train"] = mean
    log.event("train", step, mean)
    log.bar.set_postfix(loss=f"{mean['loss']:.4f}", samples_s=f"{mean['samples_per_s']:.0f}", refresh=False)


def write_summary(run: Run, first: int, wall: float) -> dict:
    """summary.json (rank 0), printed too."""
    cfg, procs, out, state = run.cfg, run.procs, run.out, run.state
    global_batch = cfg.data.batch_size * procs.world_size
    summary = {
        "mode": cfg.mode,
        "steps": state.step,
        "resumed_from": first or None,
        "out": str(out),
        "wall_time_s": round(wall, 2),
        # with the processes before this one when resumed (to their last checkpoint)
        "total_wall_time_s": round(state.wall_before + wall, 2),
        "samples_per_s": round(global_batch * (state.step - first) / max(wall, 1e-9), 1),
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
        "best_val_loss": state.best["loss"] if math.isfinite(state.best["loss"]) else None,
        "best_step": state.best["step"],
        # NaN (e.g. cos_neg of a one-class validation set) is not JSON: null, as in metrics.jsonl
        "train": nan_to_none(state.last.get("train", {})),
        "val": nan_to_none(state.last.get("val", {})),
        "rollout": nan_to_none(state.last.get("rollout", {})),
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
