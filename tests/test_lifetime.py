"""Evaluation's worker processes end the moment the process they work for is killed outright,
busy or not, and with them multiprocessing's forkserver and resource tracker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BUSY_POOL = """
import sys, time
import gymnasium as gym
import numpy as np

class Busy(gym.Env):
    observation_space = gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (1,), np.float32)})
    action_space = gym.spaces.Box(-1, 1, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        return {"x": np.zeros(1, np.float32)}, {}

    def step(self, action):
        end = time.monotonic() + 60
        while time.monotonic() < end:  # busy: reads no pipe
            pass
        return {"x": np.zeros(1, np.float32)}, 0.0, False, False, {}

if __name__ == "__main__":
    from embodied.eval.pool import EnvPool
    pool = EnvPool([Busy, Busy], workers=2, context=sys.argv[1])
    pool.reset([{}, {}])
    print("stepping", flush=True)
    pool.step(np.zeros((2, 1), np.float32))
"""


def descendants(pid: int) -> list[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, parent in parents.items() if parent == p]
        found += kids
        frontier += kids
    return found


def running(pid: int) -> bool:
    try:  # a zombie has ended; only its parent has not reaped it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("context", ["forkserver", "spawn"])
def test_busy_workers_end_within_a_second_of_their_parents_sigkill(context, tmp_path):
    script = tmp_path / "busy_pool.py"
    script.write_text(BUSY_POOL)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), context], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "stepping"
        time.sleep(0.5)  # the workers are inside step(), busy
        family = descendants(proc.pid)
        assert len(family) >= 2
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        while any(map(running, family)) and time.monotonic() - killed < 10:
            time.sleep(0.02)
        took = time.monotonic() - killed
        assert not any(map(running, family)), "a process of the killed evaluation lives on"
        assert took < 1.0, f"its processes ended {took:.2f} s after the SIGKILL"
    finally:
        proc.kill()
