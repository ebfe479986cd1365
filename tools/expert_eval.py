"""The scripted experts' success on evaluation seeds, as the reference for a policy's results.

    python tools/expert_eval.py --tasks mt10 --episodes 50

Same seeds (``--seed-start`` + i, default the evaluation range) and the same horizons (each
task's default in the suite spec) as ``embodied-eval``; prints a Markdown table with 95 %
Wilson intervals. ``--protocol metaworld [--seed S]``: the episodes of ``embodied-eval
--protocol metaworld`` instead (Meta-World's goals for seed S, 500 steps).
"""

from __future__ import annotations

import argparse

from embodied.eval.protocol import describe, schedule
from embodied.seeds import EVAL_SEED_START
from embodied.sim import load_suite, make_env
from embodied.stats import wilson_interval


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="metaworld")
    p.add_argument("--tasks", nargs="+", default=["mt10"])
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed-start", type=int, default=EVAL_SEED_START)
    p.add_argument("--protocol", default="embodied", help="embodied, or a suite's own (metaworld)")
    p.add_argument("--seed", type=int, help="the seed of a suite's own protocol (default: its own)")
    args = p.parse_args()
    tasks = load_suite(args.suite).resolve_tasks(args.tasks)
    fixed = schedule(
        args.protocol,
        suite=args.suite,
        tasks=tasks,
        episodes=args.episodes,
        seed_start=args.seed_start,
        horizon=None,
        seed=args.seed,
    )
    print(describe(fixed.info))
    print("| task | expert success | 95% CI (Wilson) | successes |\n|---|---:|---|---:|")
    total = 0
    for task in sorted(tasks):
        env = make_env(args.suite, task, horizon=fixed.horizon)
        expert = env.expert()
        wins = 0
        for i in range(args.episodes):
            variant = fixed.variants[task][i] if fixed.variants else None
            obs, _ = env.reset(seed=args.seed_start + i, options=variant and {"variant": variant})
            while True:
                obs, _, terminated, truncated, info = env.step(expert(obs))
                if terminated or truncated:
                    wins += info["success"]
                    break
        env.close()
        total += wins
        lo, hi = wilson_interval(wins, args.episodes)
        print(f"| {task} | {wins / args.episodes:.2f} | [{lo:.2f}, {hi:.2f}] | {wins}/{args.episodes} |")
    n = args.episodes * len(tasks)
    lo, hi = wilson_interval(total, n)
    print(f"| **overall** | {total / n:.2f} | [{lo:.2f}, {hi:.2f}] | {total}/{n} |")


if __name__ == "__main__":
    main()
