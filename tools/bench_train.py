"""Training throughput per policy (and recognizer), and the visual steps against the machine's peak.

    python tools/bench_train.py                         # datasets/quick, each low-dim policy, 200 steps
    python tools/bench_train.py --data datasets/mt10 --steps 300 --batch 256
    python tools/bench_train.py --peak --baseline       # the visual steps: FLOPs, samples/s, peak
    python tools/bench_train.py --peak --baseline --data datasets/lookalike_v1 --set threads=1
    python tools/bench_train.py --peak --also channels_last=true precision=bf16 compile=true
    python tools/bench_train.py --peak --baseline --device cuda --preset visual_large

Without ``--peak`` each variant is a real ``embodied-train`` run in its own process (so its
memory peak is its own), with validation, rollouts and checkpoints switched off; samples/s is
the run's own figure (summary.json). The peak is the process's resident memory, sampled
every 50 ms.

``--peak`` times the training step (``update_step``: forward, backward, clipping, AdamW) of the
visual policy, the recognizer and the joint step (``--models``; configs policy_visual,
recognizer_visual, joint_visual), in this process, on the same batches for every variant: real
ones from ``--data`` (default: the configs' own data), or synthetic batches of the same shapes
where there is none. For each it prints the FLOPs per sample (forward and backward,
``torch.utils.flop_counter``), ms a step, samples/s (median and range over the repeats), the
achieved FLOP/s and its fraction of the machine's peak measured in the same run in the
precision the step uses (the better of a 2048^2 matmul and a large channels-last 3x3
convolution, at 1 thread, one per core, torch's default and the step's count: the highest).
Variants, measured in turns so that a change in the machine's load falls on all of them:

- ``tuned``: the step as ``embodied-train`` runs the config with ``--set`` overrides
  (``precision``, ``channels_last``, ``compile``, ``threads``; the run's AdamW over one flat
  buffer per parameter group);
- ``baseline`` (``--baseline``): the step as it was before the speed work: fp32, contiguous
  memory, eager, a per-tensor AdamW loop, torch's default threads;
- one per ``--also`` override list (e.g. ``threads=1``, ``channels_last=true``), on top of tuned.

``--preset NAME`` takes the three steps from a bench preset instead (its policy, recognizer and
joint configs with their overrides and ``shared``: ``visual_large``, or ``large`` for the MT10
models). ``--device cuda`` times them on the GPU: tuned is the config's precision (auto: bf16
autocast), baseline fp32; the batches are on the GPU before the clock starts, so the rows are
the step alone; the peak is a large matmul and convolution on the GPU, and the last column the
GPU memory the step takes above what is resident (models, optimiser state, batches).

``x base`` is the median over the repeats of baseline time / variant time, each repeat timing
the variants back to back. The last line is ``train speed: X of measured peak, Y x the
baseline`` for the tuned joint step. The machine is often shared: the load average is printed
at the start and at the end; compare only rows of one run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

VARIANTS = {
    "bc_mlp": ["policy.name=bc_mlp", "data.obs_horizon=1"],
    "bc_rnn": ["policy.name=bc_rnn", "policy.history=10", "data.obs_horizon=10"],
    "bc_transformer": ["policy.name=bc_transformer", "policy.history=10", "data.obs_horizon=10"],
    "bc_mlp+gmm": ["policy.name=bc_mlp", "data.obs_horizon=1", "policy.head.name=gmm"],
    "bc_mlp+chunk": [
        "policy.name=bc_mlp",
        "data.obs_horizon=1",
        "data.action_horizon=8",
        "policy.head.name=chunk",
    ],
}

VISUAL_CONFIGS = {"policy": "policy_visual", "recognizer": "recognizer_visual", "joint": "joint_visual"}
"""The steps ``--peak`` times, by row name."""


# --------------------------------------------------------------------------- low-dim runs
def run(config: str, overrides: list[str], out: Path) -> tuple[float, float]:
    cmd = [sys.executable, "-m", "embodied.cli.train", config, *overrides, f"out={out}", "--overwrite"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read()}")
    summary = json.loads((out / "summary.json").read_text())
    return summary["samples_per_s"], peak / 2**20


def low_dim(args: argparse.Namespace) -> None:
    data = args.data or "datasets/quick"
    common = [
        f"data.paths=[{data}]",
        f"steps={args.steps}",
        f"data.batch_size={args.batch}",
        "val_every=0",
        "ckpt_every=0",
        "rollout_every=0",
        f"log_every={args.steps}",
    ]
    print(f"data: {data}  steps: {args.steps}  batch: {args.batch}  torch threads: default")
    print(f"{'variant':<18}{'samples/s':>12}{'peak RSS (MiB)':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            if name == "conv3d":
                config, overrides = "recognizer_quick", []
            else:
                config, overrides = "policy_quick", VARIANTS[name]
            rate, peak = run(config, common + overrides, Path(tmp) / name)
            print(f"{name:<18}{rate:>12.0f}{peak:>16.0f}")


# --------------------------------------------------------------------------- the machine's peak
def _best_rate(fn, flops: float, budget_s: float) -> float:
    """Best FLOP/s of ``fn`` over repeats within about ``budget_s`` seconds (0 if one call overruns)."""
    start = time.perf_counter()
    fn()  # warm-up: oneDNN primitive creation, page faults
    first = time.perf_counter() - start
    if first > budget_s:
        return flops / first
    best = math.inf
    while time.perf_counter() - start < budget_s:
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return flops / best


def measure_peak(dtype, threads: list[int], budget_s: float = 1.5, device: str = "cpu") -> dict[str, float]:
    """{"matmul", "conv", "peak"} in FLOP/s: the best over ``threads`` of a square matmul (up to
    2048) and a channels-last 3x3 convolution (32 x 64 x 56 x 56, 64 filters), in ``dtype``.

    Emulated bf16 is so slow that the sizes stop growing once one call takes over a second.
    On a GPU: an 8192^2 matmul and the convolution at batch 256 (threads do not apply).
    """
    if device != "cpu":
        return _gpu_peak(dtype, budget_s, device)
    import torch
    import torch.nn.functional as F

    before = torch.get_num_threads()
    out = {"matmul": 0.0, "conv": 0.0}
    try:
        for n in threads:
            torch.set_num_threads(n)
            with torch.no_grad():
                for size in (512, 1024, 2048):
                    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
                    rate = _best_rate(lambda a=a, b=b: a @ b, 2 * size**3, budget_s)
                    out["matmul"] = max(out["matmul"], rate)
                    if 2 * size**3 / rate > 1.0:
                        break
                x = torch.randn(32, 64, 56, 56, dtype=dtype).contiguous(memory_format=torch.channels_last)
                w = torch.randn(64, 64, 3, 3, dtype=dtype).contiguous(memory_format=torch.channels_last)
                flops = 2 * 32 * 64 * 56 * 56 * 64 * 9
                rate = _best_rate(lambda x=x, w=w: F.conv2d(x, w, padding=1), flops, budget_s)
                out["conv"] = max(out["conv"], rate)
    finally:
        torch.set_num_threads(before)
    out["peak"] = max(out["matmul"], out["conv"])
    return out


def _gpu_peak(dtype, budget_s: float, device: str) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    def timed(fn):
        def run():
            fn()
            torch.cuda.synchronize(device)

        return run

    with torch.no_grad():
        n = 8192
        a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
        matmul = _best_rate(timed(lambda: a @ b), 2 * n**3, budget_s)
        x = torch.randn(256, 64, 56, 56, dtype=dtype, device=device).contiguous(
            memory_format=torch.channels_last
        )
        w = torch.randn(64, 64, 3, 3, dtype=dtype, device=device).contiguous(
            memory_format=torch.channels_last
        )
        conv = _best_rate(timed(lambda: F.conv2d(x, w, padding=1)), 2 * 256 * 64 * 56 * 56 * 64 * 9, budget_s)
    return {"matmul": matmul, "conv": conv, "peak": max(matmul, conv)}


# --------------------------------------------------------------------------- one step, as training runs it
SYNTHETIC_LOW_DIM = {"robot_state": 4, "object_state": 14, "goal": 3}
"""Sizes of the low-dim keys in synthetic batches (the Meta-World sets'); any other key: 4."""


def synthetic_data(cfg, count: int, seed: int = 0):
    """(spec, stats, batches) of the config's shapes: 64 px images, 10 tasks, 4-d actions."""
    import torch

    from embodied import keys as K
    from embodied.data.spec import DataSpec

    g = torch.Generator().manual_seed(seed)
    d, b, size, tasks = cfg.data, cfg.data.batch_size, 64, 10
    keys = list(d.obs_keys or [])
    shapes = {k: [3, size, size] if k.endswith("_image") else [SYNTHETIC_LOW_DIM.get(k, 4)] for k in keys}
    names = [f"task-{i}" for i in range(tasks)]
    spec = DataSpec(
        obs_shapes=shapes,
        action_dim=4,
        num_classes=tasks,
        num_instructions=tasks,
        obs_horizon=d.obs_horizon,
        action_horizon=d.action_horizon,
        clip_len=d.clip_len,
        image_size=size,
        classes=names,
        instructions=[f"do {n}" for n in names],
        tasks=names,
        task_labels=list(range(tasks)),
        task_instructions=list(range(tasks)),
    )
    import numpy as np

    stats = {
        k: {"mean": np.zeros(s[0], np.float32), "std": np.ones(s[0], np.float32)}
        for k, s in shapes.items()
        if len(s) == 1
    }
    stats["actions"] = {"mean": np.zeros(4, np.float32), "std": np.ones(4, np.float32)}
    batches = []
    for _ in range(count):
        label = torch.randint(0, tasks, (b,), generator=g)
        batch = {
            K.LABEL: label,
            K.INSTRUCTION: label.clone(),
            K.EPISODE: torch.randint(0, 4 * b, (b,), generator=g),
        }
        if cfg.objective.data in ("window", "paired"):
            obs = {}
            for k, s in shapes.items():
                if len(s) == 3:
                    obs[k] = torch.randint(0, 256, (b, d.obs_horizon, *s), dtype=torch.uint8, generator=g)
                else:
                    obs[k] = torch.randn(b, d.obs_horizon, *s, generator=g)
            batch[K.OBS] = obs
            batch[K.ACTIONS] = torch.rand(b, d.action_horizon, 4, generator=g) * 2 - 1
            batch[K.ACTION_MASK] = torch.ones(b, d.action_horizon, dtype=torch.bool)
        if cfg.objective.data in ("clip", "paired"):
            batch[K.VIDEO] = torch.randint(
                0, 256, (b, d.clip_len, 3, size, size), dtype=torch.uint8, generator=g
            )
        batches.append(batch)
    return spec, stats, batches


def real_data(cfg, count: int):
    """(spec, stats, batches, seconds to read one batch) from the config's train split."""
    import dataclasses

    from embodied.train import setup
    from embodied.train.sampling import ShardedBatches, train_loader

    cfg = dataclasses.replace(cfg, val_every=0)
    train_ds, _ = setup.build_datasets(cfg, None)
    spec, stats = train_ds.data_spec(), train_ds.normalization_stats()
    sampler = ShardedBatches(len(train_ds), cfg.data.batch_size, cfg.seed)
    it = iter(train_loader(train_ds, sampler, 0))
    batches = [next(it) for _ in range(count)]
    t = time.perf_counter()
    for _ in range(count):
        next(it)
    read_s = (time.perf_counter() - t) / count
    del it
    train_ds.close()
    return spec, stats, batches, read_s


class Step:
    """One variant's models, optimiser and settings; ``run(batch)`` is one timed training step."""

    def __init__(
        self, name: str, cfg, spec, stats, baseline: bool, default_threads: int, device: str = "cpu"
    ) -> None:
        import torch

        from embodied.train import objective, step
        from embodied.train.optim import make_optimizer, make_scheduler, param_groups

        self.name, self.cfg = name, cfg
        step.seed_everything(cfg.seed)
        models, _ = cfg.objective.build_models(cfg, spec, stats, {})
        self.device = torch.device(device)
        self.module = objective.TrainModule(cfg.objective, models).to(self.device)
        self.compiled: list[str] = []
        if not baseline:
            if cfg.channels_last:
                self.module.use_channels_last()
            if cfg.compile:
                self.compiled = self.module.compile_backbones(dynamic=False)
        lrs = {"mirror": cfg.mirror.lr} if cfg.mirror else {}
        groups = param_groups(models, cfg.optim, lrs)
        # the baseline: AdamW's per-tensor loop, torch's default on a CPU before the speed work;
        # tuned: the run's optimiser (one flat buffer per parameter group)
        self.optimizer = (
            torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), foreach=False)
            if baseline
            else make_optimizer(groups, cfg.optim)
        )
        self.scheduler = make_scheduler(self.optimizer, cfg.optim, max(cfg.steps, 10**6))
        self.precision = "fp32" if baseline else cfg.precision
        self.autocast, self.scaler = step.precision(self.device, self.precision)
        self.precision = step.precision_name(self.device, self.precision)  # auto resolved
        self.threads = default_threads if baseline or not cfg.threads else cfg.threads
        self.clip = cfg.optim.grad_clip
        self.times: list[float] = []
        self.first_step_s = 0.0
        self.step_mib = 0.0

    def run(self, batch) -> None:
        import torch

        from embodied.train import step

        torch.set_num_threads(self.threads)
        step.update_step(
            self.module, batch, self.optimizer, self.scheduler, self.clip, self.autocast, self.scaler
        )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the clock reads the finished step


def count_flops(step: Step, batch) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step.run(batch)
    return float(counter.get_total_flops())


def row_configs(args: argparse.Namespace) -> dict[str, tuple[str, list[str]]]:
    """{row: (training config, its overrides)}: the visual configs, or a bench preset's methods."""
    if not args.preset:
        return {row: (config, []) for row, config in VISUAL_CONFIGS.items()}
    from embodied.bench.config import load_preset

    preset = load_preset(args.preset)
    runs = {"policy": preset.policy, "recognizer": preset.recognizer, "joint": preset.joint}
    return {row: (run.config, [*run.overrides, *preset.shared]) for row, run in runs.items()}


def _config(name: str, overrides: list[str]):
    from embodied.config import load_config
    from embodied.paths import resolve_resource
    from embodied.train.config import TrainConfig

    cfg = load_config(TrainConfig, resolve_resource(name, "configs"), overrides)
    cfg, _ = cfg.objective.resolve(cfg)
    return cfg


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def visual(args: argparse.Namespace) -> None:
    import torch

    from embodied.train.step import native_bf16

    default_threads = torch.get_num_threads()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    gpu = device == "cuda"
    cpu = torch.device("cpu")
    flags = torch.backends.cpu.get_cpu_capability()
    bf16 = "native bf16" if native_bf16(cpu) else "no native bf16: bf16 is emulated"
    where = (
        f"{torch.cuda.get_device_name()} (CUDA {torch.version.cuda})" if gpu else f"{os.cpu_count()} cores"
    )
    print(
        f"training steps in one process: torch {torch.__version__}, {where} "
        f"({flags}, {bf16}), torch threads {default_threads} by default "
        f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}); "
        f"load average {load_average()} at start"
    )
    tuned_set = list(args.set)
    also = [(" ".join(a.split()), a.replace(",", " ").split()) for a in args.also]
    rows = []
    # The peak of each precision: the best at 1 thread, at torch's default, at one per core and at
    # every variant's count, measured when first needed and again at the end (the load changes).
    thread_counts = {1, default_threads, os.cpu_count() or 1}
    for over in [tuned_set] + [o for _, o in also]:
        thread_counts |= {int(o.split("=", 1)[1]) for o in over if o.startswith("threads=")} - {0}
    peaks: dict[str, list[dict[str, float]]] = {}

    def peak_of(precision: str) -> float:
        if precision not in peaks:
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            peaks[precision] = [measure_peak(dtype, sorted(thread_counts), device=device)]
            p = peaks[precision][0]
            print(
                f"peak {precision} now, threads {sorted(thread_counts)}: {p['peak'] / 1e9:.0f} GFLOP/s "
                f"(matmul {p['matmul'] / 1e9:.0f}, channels-last 3x3 conv {p['conv'] / 1e9:.0f})"
            )
        return peaks[precision][0]["peak"]

    peak_of("fp32")

    joint = {}
    for row, (config, preset_over) in row_configs(args).items():
        if row not in args.models:
            continue
        data_over = [*preset_over, f"data.paths=[{args.data}]"] if args.data else list(preset_over)
        if args.batch_size:
            data_over.append(f"data.batch_size={args.batch_size}")
        base_cfg = _config(config, data_over)
        paths = [Path(p) for p in base_cfg.data.paths]
        count = args.batches
        if not args.synthetic and all(p.exists() for p in paths):
            spec, stats, batches, read_s = real_data(base_cfg, count)
            source = f"{', '.join(base_cfg.data.paths)}: real batches, read in {read_s * 1e3:.1f} ms each"
        else:
            spec, stats, batches = synthetic_data(base_cfg, count)
            read_s = None
            source = "synthetic batches of the look-alike set's shapes"
        if gpu:
            from embodied.train.step import to_device

            batches = [to_device(batch, torch.device(device)) for batch in batches]
        steps: list[Step] = []
        if args.baseline:
            steps.append(Step("baseline", base_cfg, spec, stats, True, default_threads, device))
        steps.append(
            Step("tuned", _config(config, data_over + tuned_set), spec, stats, False, default_threads, device)
        )
        for label, over in also:
            cfg = _config(config, data_over + tuned_set + over)
            steps.append(Step(label, cfg, spec, stats, False, default_threads, device))
        b = base_cfg.data.batch_size
        print(f"\n{row} ({config}, batch {b}): {source}")
        flops = count_flops(steps[0], batches[0])
        for s in steps:  # warm-up (and compilation): not timed
            if gpu:
                resident = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            t = time.perf_counter()
            s.run(batches[0])
            s.first_step_s = time.perf_counter() - t
            for i in range(1, args.warmup):
                s.run(batches[i % count])
            if gpu:  # what the step adds: activations, gradients, the optimiser's state
                s.step_mib = (torch.cuda.max_memory_allocated() - resident) / 2**20
        k = 0
        for _ in range(args.reps):
            for s in steps:
                t = time.perf_counter()
                for _ in range(args.steps_per_rep):
                    s.run(batches[k % count])
                    k += 1
                s.times.append((time.perf_counter() - t) / args.steps_per_rep)
        torch.set_num_threads(default_threads)
        base = steps[0] if args.baseline else None
        header = (
            f"  {'variant':<26}{'prec':>5}{'thr':>4}{'GFLOP/sample':>13}{'ms/step':>9}"
            f"{'samples/s [range]':>22}{'GFLOP/s':>9}{'of peak':>9}{'x base':>8}"
            + (f"{'step MiB':>10}" if gpu else "")
        )
        print(header)
        for s in steps:
            med = statistics.median(s.times)
            rate = b / med
            lo, hi = b / max(s.times), b / min(s.times)
            achieved = flops / med
            pk = peak_of(s.precision)
            speedup = (
                statistics.median(bt / st for bt, st in zip(base.times, s.times, strict=True))
                if base
                else None
            )
            extra = (
                f"  (first step {s.first_step_s:.0f} s: compiles {', '.join(s.compiled)})"
                if s.compiled
                else ""
            )
            print(
                f"  {s.name:<26}{s.precision:>5}{s.threads:>4}{flops / b / 1e9:>13.4f}{med * 1e3:>9.1f}"
                f"{f'{rate:.0f} [{lo:.0f}-{hi:.0f}]':>22}{achieved / 1e9:>9.1f}{achieved / pk:>9.3f}"
                + (f"{speedup:>8.2f}" if speedup else f"{'':>8}")
                + (f"{s.step_mib:>10.0f}" if gpu else "")
                + extra
            )
            rows.append((row, s, achieved, speedup))
        if read_s is not None:
            tuned = steps[1] if args.baseline else steps[0]
            share = read_s / statistics.median(tuned.times)
            print(f"  reading a batch: {read_s * 1e3:.1f} ms, {share:.1%} of the tuned step")
        if row == "joint":
            joint = {r[1].name: r for r in rows if r[0] == "joint"}
        del steps, batches
    print()
    for precision, measured in peaks.items():
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        measured.append(measure_peak(dtype, sorted(thread_counts), device=device))
        start, end = measured
        print(
            f"peak {precision}, threads {sorted(thread_counts)}: {start['peak'] / 1e9:.0f} GFLOP/s at the "
            f"start, {end['peak'] / 1e9:.0f} at the end (matmul {end['matmul'] / 1e9:.0f}, "
            f"channels-last 3x3 conv {end['conv'] / 1e9:.0f}); the higher is the measured peak"
        )
    print(f"load average {load_average()} at the end")
    if "tuned" in joint:
        _, s, achieved, speedup = joint["tuned"]
        peak = max(m["peak"] for m in peaks[s.precision])
        tail = f", {speedup:.2f} x the baseline" if speedup else ""
        print(f"train speed: {achieved / peak:.3f} of measured peak{tail}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="data folder (default: datasets/quick; --peak: the configs')")
    p.add_argument("--steps", type=int, default=200, help="low-dim runs: steps")
    p.add_argument("--batch", type=int, default=64, help="low-dim runs: batch size")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS) + ["conv3d"])
    p.add_argument("--peak", action="store_true", help="time the visual steps against the measured peak")
    p.add_argument("--baseline", action="store_true", help="--peak: also the step as it was (the speed-up)")
    p.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="--peak: overrides of the tuned step"
    )
    p.add_argument(
        "--also",
        nargs="*",
        default=[],
        metavar="OVERRIDES",
        help="--peak: more variants, each a quoted list of overrides on top of tuned's ('threads=1')",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="--peak: where the steps run")
    p.add_argument(
        "--preset", default=None, help="--peak: take the steps from this bench preset (visual_large, large)"
    )
    p.add_argument("--models", nargs="+", default=list(VISUAL_CONFIGS), choices=list(VISUAL_CONFIGS))
    p.add_argument("--batch-size", type=int, default=0, help="--peak: data.batch_size (0: the configs')")
    p.add_argument(
        "--synthetic", action="store_true", help="--peak: synthetic batches even where data exists"
    )
    p.add_argument("--reps", type=int, default=7, help="--peak: timed repeats per variant")
    p.add_argument("--steps-per-rep", type=int, default=3)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batches", type=int, default=8, help="--peak: distinct batches, cycled")
    args = p.parse_args()
    if args.peak:
        visual(args)
    else:
        low_dim(args)


if __name__ == "__main__":
    main()
