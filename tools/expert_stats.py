"""How well and how fast each task's scripted expert succeeds, and the horizons that follow.

    python tools/expert_stats.py                      # all tasks, 10 seeds, print a table
    python tools/expert_stats.py --tasks quick --seeds 5
    python tools/expert_stats.py --write-horizons     # also set horizon: in envs/<suite>.yaml

Each episode runs the expert through the adapter (``make_env(suite, task)``, ``env.expert()``,
no cameras) until success or ``--max-steps``. The default horizon given to a policy leaves it
room beyond the expert: ``max(--min-horizon, --factor x p95 of the successful lengths)``
rounded up to a multiple of 50 and capped at ``--max-steps``; a task whose expert never
succeeds gets ``--max-steps``.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from embodied.paths import resource_dir
from embodied.sim import load_suite, make_env


def run_task(suite: str, task: str, seeds: list[int], max_steps: int) -> dict:
    """Run the expert once per seed; returns successes and the lengths of successful episodes."""
    env = make_env(suite, task, horizon=max_steps)
    expert = env.expert()
    successes, lengths = [], []
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        steps, success = 0, False
        while True:
            obs, _, terminated, truncated, info = env.step(expert(obs))
            steps += 1
            success = success or info["success"]
            if terminated or truncated:
                break
        successes.append(success)
        if success:
            lengths.append(steps)
    env.close()
    return {"task": task, "successes": successes, "lengths": lengths}


def horizon_for(lengths: list[int], max_steps: int, min_horizon: int, factor: float) -> int:
    if not lengths:
        return max_steps
    p95 = float(np.percentile(lengths, 95))
    return min(max_steps, 50 * math.ceil(max(min_horizon, factor * p95) / 50))


def write_horizons(path: Path, horizons: dict[str, int]) -> int:
    """Set ``horizon:`` of the given tasks in a suite spec, keeping its comments and layout."""
    lines = path.read_text().splitlines(keepends=True)
    task, changed = None, 0
    for i, line in enumerate(lines):
        head = re.match(r"^  (\S+):\s*$", line)  # a task's key, two spaces in under tasks:
        if head:
            task = head.group(1)
        elif not line.startswith("    "):
            task = None
        elif task in horizons:
            m = re.match(r"^(    horizon:\s*)(\d+)(.*)$", line, flags=re.S)
            if m:
                lines[i] = f"{m.group(1)}{horizons[task]}{m.group(3)}"
                changed += 1
    missing = len(horizons) - changed
    if missing:
        raise RuntimeError(f"{missing} task(s) without a horizon: line in {path}")
    path.write_text("".join(lines))
    return changed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="metaworld")
    p.add_argument("--tasks", default="mt50", help="task names or sets, comma separated")
    p.add_argument("--seeds", type=int, default=10, help="episodes per task (seeds start..start+n-1)")
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=500, help="episode limit, also the horizon cap")
    p.add_argument("--min-horizon", type=int, default=150)
    p.add_argument("--factor", type=float, default=2.0, help="horizon = factor x p95 expert length")
    p.add_argument("--write-horizons", action="store_true", help="write the horizons into the suite spec")
    args = p.parse_args()
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")  # the experts' gains

    spec = load_suite(args.suite)
    tasks = spec.resolve_tasks(args.tasks)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    header = f"{'task':30s} {'success':>8s} {'mean len':>9s} {'p95 len':>8s} {'max len':>8s} {'horizon':>8s}"
    print(header)
    print("-" * len(header))
    horizons, start = {}, time.perf_counter()
    for task in tasks:
        r = run_task(args.suite, task, seeds, args.max_steps)
        lens = r["lengths"]
        horizons[task] = horizon_for(lens, args.max_steps, args.min_horizon, args.factor)
        mean = f"{np.mean(lens):.0f}" if lens else "-"
        p95 = f"{np.percentile(lens, 95):.0f}" if lens else "-"
        mx = f"{max(lens)}" if lens else "-"
        print(
            f"{task:30s} {sum(r['successes']):>4d}/{len(seeds):<3d} {mean:>9s} {p95:>8s} {mx:>8s} "
            f"{horizons[task]:>8d}",
            flush=True,
        )
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.write_horizons:
        path = resource_dir("envs") / f"{args.suite}.yaml"
        print(f"wrote {write_horizons(path, horizons)} horizons to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
