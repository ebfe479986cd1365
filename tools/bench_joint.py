"""What joint training costs over training the two models apart: one step each, same batch.

    python tools/bench_joint.py                          # joint_quick's models, its batch size
    python tools/bench_joint.py joint_mt10 --iters 30    # on a GPU: the paper-sized setting
    python tools/bench_joint.py joint_quick data.batch_size=64 --device cpu

On one paired batch (row i of the windows and of the clips from one episode), times

- a policy step: the policy's loss, backward, clip, AdamW step, schedule (and EMA when on);
- a recognizer step: the same for the recognizer;
- a joint step: both losses and the mirror head's InfoNCE, one backward, one optimiser step,

each through the trainer's own :class:`~embodied.train.objective.TrainModule` and
:func:`~embodied.train.step.update_step`, with the run's optimiser groups, mixed precision and
EMA. The median of each is printed with the ratio joint / (policy + recognizer), whose target
is at most 1.1: the alignment should cost little beyond the two models' own steps.

Each kind is timed in its steady state, as its own training run repeats it: in every round
each kind runs a block of steps (the first untimed), the order of the kinds rotating from round
to round so that load from elsewhere on a shared machine hits them alike. Alternating kinds step
by step would instead charge each step for the switch: on CPU, glibc's allocator has handed back
the memory the previous kind freed, and the joint step (both graphs alive at once) pays about
10 % more in page faults to get it again, which a joint training run never does.
``--profile`` adds torch.profiler's table of a few joint steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import torch

from embodied.config import load_config
from embodied.errors import run_cli
from embodied.paths import resolve_resource
from embodied.train.config import TrainConfig
from embodied.train.objective import TrainModule, get_objective
from embodied.train.optim import EMA, make_optimizer, make_scheduler, param_groups
from embodied.train.sampling import SeededReads
from embodied.train.setup import build_datasets
from embodied.train.step import precision, seed_everything, to_device, update_step

TARGET = 1.1
"""The most a joint step may cost, as a multiple of a policy step plus a recognizer step."""


class Stepper:
    """One kind of training step (a TrainModule over some of the models) and its optimiser state."""

    def __init__(self, mode: str, models: dict, cfg: TrainConfig, device: torch.device) -> None:
        objective = get_objective(mode)
        self.module = TrainModule(objective, models).to(device)
        groups = param_groups(models, cfg.optim, objective.learning_rates(cfg))
        self.optimizer = make_optimizer(groups, cfg.optim)
        self.scheduler = make_scheduler(self.optimizer, cfg.optim, 10**9)
        self.autocast, self.scaler = precision(device)
        self.ema = EMA(self.module, cfg.optim.ema) if cfg.optim.ema > 0 else None
        self.grad_clip = cfg.optim.grad_clip

    def __call__(self, batch: dict) -> dict[str, float]:
        return update_step(
            self.module,
            batch,
            self.optimizer,
            self.scheduler,
            self.grad_clip,
            self.autocast,
            self.scaler,
            self.ema,
        )


def timed(step: Stepper, batch: dict, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", default="joint_quick", help="a joint config (path or name)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, as embodied-train takes")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (a block of each kind per round)")
    p.add_argument("--block", type=int, default=4, help="timed steps of a kind per round (after one untimed)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--profile", action="store_true", help="print torch.profiler's table of joint steps")
    p.add_argument("--check", action="store_true", help=f"exit 1 when the ratio is above {TARGET}")
    args = p.parse_intermixed_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = load_config(TrainConfig, resolve_resource(args.config, "configs"), args.overrides)
    if not {"policy", "recognizer", "mirror"} <= cfg.objective.trains:
        p.error(f"{args.config} is a {cfg.mode} config; the benchmark needs one training E, U and the head")
    cfg = dataclasses.replace(cfg, val_every=0)  # no valid split needed
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    cfg, sources = cfg.objective.resolve(cfg)
    train_ds, _ = build_datasets(cfg, None)
    seed_everything(cfg.seed)
    models, _ = cfg.objective.build_models(cfg, train_ds.data_spec(), train_ds.normalization_stats(), sources)

    # A shuffled, whole paired batch, read as training reads its batches.
    order = torch.randperm(len(train_ds), generator=torch.Generator().manual_seed(cfg.seed))
    batch = SeededReads(train_ds).__getitems__((cfg.seed, order[: cfg.data.batch_size].tolist()))
    batch = to_device(batch, device)

    # The same model objects in all three: a joint step trains exactly the networks the two
    # single-model steps train, plus the mirror head.
    steppers = {
        "policy": Stepper("policy", {"policy": models["policy"]}, cfg, device),
        "recognizer": Stepper("recognizer", {"recognizer": models["recognizer"]}, cfg, device),
        "joint": Stepper("joint", models, cfg, device),
    }
    times: dict[str, list[float]] = {k: [] for k in steppers}
    names = list(steppers)
    load = os.getloadavg()[0]
    for r in range(args.warmup + args.rounds):
        for name in names[r % 3 :] + names[: r % 3]:  # rotate the order: no kind always runs first
            steppers[name](batch)  # back in this kind's steady state (see the module doc)
            for _ in range(args.block):
                t = timed(steppers[name], batch, device)
                if r >= args.warmup:
                    times[name].append(t)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["joint"] / (med["policy"] + med["recognizer"])
    n_params = {k: sum(p.numel() for p in m.parameters()) / 1e6 for k, m in models.items()}
    print(
        f"config {args.config} {' '.join(args.overrides)}".rstrip()
        + f" | batch {cfg.data.batch_size} | device {device} | torch threads {torch.get_num_threads()}"
        + f" | median of {args.rounds} x {args.block} steps each | load average {load:.1f}"
        + f" on {os.cpu_count()} CPUs"
    )
    print("params (M): " + ", ".join(f"{k} {v:.2f}" for k, v in n_params.items()))
    for name in names:
        spread = f"(min {min(times[name]) * 1e3:.1f}, max {max(times[name]) * 1e3:.1f})"
        print(f"{name + ' step':<17}{med[name] * 1e3:9.2f} ms  {spread}")
    total = med["policy"] + med["recognizer"]
    print(f"{'policy + recog.':<17}{total * 1e3:9.2f} ms")
    verdict = "ok" if ratio <= TARGET else "ABOVE TARGET"
    print(f"ratio joint / (policy + recognizer) = {ratio:.3f}  (target <= {TARGET}: {verdict})")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            for _ in range(5):
                steppers["joint"](batch)
        sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=25))
    return 1 if args.check and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))  # a bad config or dataset: one line and exit 2, as embodied-train
