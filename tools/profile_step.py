"""Where a visual training step spends its time, fp32 against bf16 autocast (torch.profiler).

    python tools/profile_step.py                                   # joint_visual, threads=1
    python tools/profile_step.py --data /tmp/lookalike10 --config joint_visual --threads 1

Builds the step as ``tools/bench_train.py --peak`` does (the run's models, optimiser and
batches: real ones from ``--data``, else synthetic ones of the same shapes), then, for each
precision in turns, times the phases of ``update_step`` (forward, backward, clip and optimiser)
and profiles ``--steps`` steps: the ops by self CPU time per step, grouped (convolutions
forward and backward, matrix products, batch norm, dtype casts, the rest), and the top ops.
Compare only figures of one run: the machine's load changes.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

GROUPS = [  # (group, substrings of aten op names), first match wins
    ("convolution", ("convolution", "conv2d", "conv3d", "mkldnn_conv")),
    ("matmul / linear", ("addmm", "aten::mm", "bmm", "linear", "matmul")),
    ("batch norm", ("batch_norm",)),
    ("dtype casts", ("_to_copy", "aten::to", "copy_")),
    ("grid_sample / crop", ("grid_sample", "affine_grid")),
]


def group_of(name: str) -> str:
    return next((g for g, keys in GROUPS if any(k in name for k in keys)), "other")


def phases(step, batches, n: int) -> dict[str, float]:
    """Median seconds per phase of update_step over ``n`` steps."""
    import torch

    from embodied.train.optim import FlatAdamW

    times: dict[str, list[float]] = {"forward": [], "backward": [], "clip + optimiser": []}
    torch.set_num_threads(step.threads)
    for i in range(n):
        batch = batches[i % len(batches)]
        step.module.train()
        t0 = time.perf_counter()
        with step.autocast():
            loss, _ = step.module(batch)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt = step.optimizer
        if isinstance(opt, FlatAdamW):
            opt.clip_grad_norm_(step.clip if step.clip > 0 else math.inf)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step.scheduler.step()
        t3 = time.perf_counter()
        times["forward"].append(t1 - t0)
        times["backward"].append(t2 - t1)
        times["clip + optimiser"].append(t3 - t2)
    return {k: statistics.median(v) for k, v in times.items()}


def profile(step, batches, n: int) -> dict[str, float]:
    """Self CPU seconds per step of each op over ``n`` profiled steps."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(step.threads)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(n):
            step.run(batches[i % len(batches)])
    return {e.key: e.self_cpu_time_total / 1e6 / n for e in prof.key_averages()}


def main() -> None:
    import bench_train as bt
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="joint_visual")
    p.add_argument("--data", default=None, help="data folder (default: the config's; synthetic if absent)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20, help="profiled steps per precision")
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args()

    over = [f"threads={args.threads}"] + ([f"data.paths=[{args.data}]"] if args.data else [])
    base = bt._config(args.config, over)
    if all(Path(x).exists() for x in base.data.paths):
        spec, stats, batches, _ = bt.real_data(base, 8)
    else:
        spec, stats, batches = bt.synthetic_data(base, 8)
    steps = {
        prec: bt.Step(prec, bt._config(args.config, [*over, f"precision={prec}"]), spec, stats, False, 1)
        for prec in ("fp32", "bf16")
    }
    for s in steps.values():  # warm-up: oneDNN creates its kernels
        for b in batches[:3]:
            s.run(b)
    phase = {k: phases(s, batches, args.steps) for k, s in steps.items()}
    ops = {k: profile(s, batches, args.steps) for k, s in steps.items()}
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in ln
        ),
        "?",
    )
    print(
        f"{args.config}, batch {base.data.batch_size}, threads {args.threads}, "
        f"torch {torch.__version__}, {cpu}"
    )
    print(f"\n{'phase (median ms/step)':<28}{'fp32':>9}{'bf16':>9}{'fp32/bf16':>11}")
    for name in phase["fp32"]:
        a, b = phase["fp32"][name] * 1e3, phase["bf16"][name] * 1e3
        print(f"{name:<28}{a:>9.1f}{b:>9.1f}{a / b:>11.2f}")
    a, b = (sum(phase[k].values()) * 1e3 for k in ("fp32", "bf16"))
    print(f"{'step':<28}{a:>9.1f}{b:>9.1f}{a / b:>11.2f}")
    print(f"\n{'op group (self CPU ms/step)':<28}{'fp32':>9}{'bf16':>9}{'fp32/bf16':>11}")
    groups = {k: {} for k in ops}
    for k, table in ops.items():
        for name, s in table.items():
            groups[k][group_of(name)] = groups[k].get(group_of(name), 0.0) + s
    for g in [*(g for g, _ in GROUPS), "other"]:
        a, b = groups["fp32"].get(g, 0.0) * 1e3, groups["bf16"].get(g, 0.0) * 1e3
        print(f"{g:<28}{a:>9.1f}{b:>9.1f}{(a / b if b else float('nan')):>11.2f}")
    for k in ("fp32", "bf16"):
        print(f"\ntop ops, {k} (self CPU ms/step)")
        for name, s in sorted(ops[k].items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {name:<44}{s * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
