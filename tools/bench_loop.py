"""The training loop against its own step: how much of a run's time goes to the step.

    python tools/bench_loop.py                                    # joint_visual on datasets/quick
    python tools/bench_loop.py --data datasets/lookalike --steps 400 --repeats 3
    python tools/bench_loop.py --config policy_visual --set threads=1

In one process, alternating, ``--repeats`` times:

- **loop**: a real ``train()`` run of the config (``--steps`` steps, validation and checkpoints
  as the visual preset has them: one validation at the end, a checkpoint every quarter), timed
  from its first step to its end, as its summary's ``samples_per_s`` counts it (reading,
  logging, validation and checkpoints included; start-up not);
- **step**: the same run built again (same seed, same model), its next ``--steps`` batches read
  first, then ``update_step`` alone over them, timed.

It prints samples/s of each (median and range over the repeats) and the ratio loop / step, the
fraction of the run's time that is the step. The CPU model and threads are printed beside the
figures: compare only rows of one run (shared cores drift).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time

import torch

from embodied.config import load_config
from embodied.paths import resolve_resource
from embodied.provenance import cpu_model
from embodied.train.config import TrainConfig
from embodied.train.distributed import start
from embodied.train.loop import train
from embodied.train.sampling import train_loader
from embodied.train.setup import build_run
from embodied.train.step import to_device, update_step


def loop_rate(cfg: TrainConfig) -> float:
    """samples/s of a whole run from its first step to its end (its summary's figure)."""
    return float(train(cfg, overwrite=True)["samples_per_s"])


def step_rate(cfg: TrainConfig, warmup: int = 5) -> float:
    """samples/s of ``update_step`` alone over the run's own first batches, read beforehand."""
    procs = start(cfg.device)
    try:
        run = build_run(cfg, procs, resume=False, overwrite=True)
        loader = iter(train_loader(run.train_ds, run.sampler, 0))
        batches = [to_device(next(loader), procs.device) for _ in range(cfg.steps)]
        threads = torch.get_num_threads()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        try:
            args = (run.optimizer, run.scheduler, cfg.optim.grad_clip, run.autocast, run.scaler, run.ema)
            for batch in batches[:warmup]:
                update_step(run.module, batch, *args)
            started = time.perf_counter()
            for batch in batches[warmup:]:
                update_step(run.module, batch, *args)
            elapsed = time.perf_counter() - started
        finally:
            torch.set_num_threads(threads)
    finally:
        procs.close()
    return cfg.data.batch_size * (len(batches) - warmup) / elapsed


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}, {max(values):.1f}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="joint_visual", help="a training config (path or name)")
    p.add_argument("--data", default="datasets/quick", help="demonstrations (a folder or files)")
    p.add_argument("--steps", type=int, default=200, help="steps of each run")
    p.add_argument("--repeats", type=int, default=3, help="loop and step runs, alternating")
    p.add_argument("--set", nargs="*", default=["threads=1"], metavar="KEY=VALUE", help="config overrides")
    args = p.parse_args(argv)
    out = tempfile.mkdtemp(prefix="bench_loop_")
    overrides = [
        f"data.paths=[{args.data}]",
        f"steps={args.steps}",
        f"val_every={args.steps}",  # one validation, at the end, as the visual preset
        f"ckpt_every={max(args.steps // 4, 1)}",
        f"log_every={max(args.steps // 4, 1)}",
        f"out={out}",
        *args.set,
    ]
    cfg = load_config(TrainConfig, resolve_resource(args.config, "configs"), overrides)
    threads = cfg.threads or torch.get_num_threads()
    print(f"cpu: {cpu_model()}; torch threads {threads}; load {os.getloadavg()[0]:.1f}")
    loops, steps = [], []
    for r in range(args.repeats):
        loops.append(loop_rate(cfg))
        steps.append(step_rate(dataclasses.replace(cfg, out=f"{out}/step{r}")))
        print(f"repeat {r}: loop {loops[-1]:.1f}, step {steps[-1]:.1f} samples/s", file=sys.stderr)
    ratios = [a / b for a, b in zip(loops, steps, strict=True)]
    print(f"{args.config}, {args.steps} steps, batch {cfg.data.batch_size}, {args.repeats} repeats")
    print(f"loop: {spread(loops)} samples/s; step alone: {spread(steps)} samples/s")
    print(f"loop / step: {spread(ratios)} (load at the end {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
