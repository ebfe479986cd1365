"""Training throughput and memory peak per policy (and recognizer), on this machine.

    python tools/bench_train.py                         # datasets/quick, each policy, 200 steps
    python tools/bench_train.py --data datasets/mt10 --steps 300 --batch 256

Each variant is a real ``embodied-train`` run in its own process (so its memory peak is its
own), with validation, rollouts and checkpoints switched off; samples/s is the run's own
figure (summary.json). The peak is the process's resident memory, sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="datasets/quick")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS) + ["conv3d"])
    args = p.parse_args()
    common = [
        f"data.paths=[{args.data}]",
        f"steps={args.steps}",
        f"data.batch_size={args.batch}",
        "val_every=0",
        "ckpt_every=0",
        "rollout_every=0",
        f"log_every={args.steps}",
    ]
    print(f"data: {args.data}  steps: {args.steps}  batch: {args.batch}  torch threads: default")
    print(f"{'variant':<18}{'samples/s':>12}{'peak RSS (MiB)':>16}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants:
            if name == "conv3d":
                config, overrides = "recognizer_quick", []
            else:
                config, overrides = "policy_quick", VARIANTS[name]
            rate, peak = run(config, common + overrides, Path(tmp) / name)
            print(f"{name:<18}{rate:>12.0f}{peak:>16.0f}")


if __name__ == "__main__":
    main()
