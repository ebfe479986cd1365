"""The cost of one camera frame at each mesh detail, against the bare physics step, in one run.

    python tools/bench_render.py                              # the look-alike and quick tasks, 64 px
    python tools/bench_render.py --tasks drawer-open-v3 --size 84 --repeats 9

For each task the scripted expert runs one episode (seed 0) and its states are kept; then one
renderer (the environment's own :class:`~embodied.sim.render.CameraRenderer`: shadows and
multisampling off) draws those states, ``--frames`` frames a block, in blocks that alternate
between ``full`` and ``low`` mesh detail (:mod:`embodied.sim.meshes`) in the *same* GL context:
on llvmpipe two contexts of one process can differ by 1.6x for the same frame, which would
swamp the comparison. A frame is ``update_scene + render`` (with the read-back), what an
observation costs. The physics step is the environment's ``step`` without cameras (the
expert's actions, same seed). Each block gives a median per frame; the table prints the median
over ``--repeats`` blocks with their spread (min-max), the full/low ratio of each repeat
(median, min-max), wall-clock and CPU time (all the process's threads: llvmpipe rasterizes in
its own), and the mean absolute pixel difference of the low frames from the full ones (0-255).
The CPU and the load average are printed with the numbers: the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from embodied.sim import load_suite, make_env
from embodied.sim.render import CameraRenderer


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            info = {k.strip(): v for k, v in (line.split(":", 1) for line in fh if ":" in line)}
        name, family, model = (info[k].strip() for k in ("model name", "cpu family", "model"))
        return f"{name} (family {family}, model {model})"
    except (OSError, KeyError):
        return platform.processor() or "unknown CPU"


def episode_states(suite: str, task: str, frames: int) -> tuple[list[np.ndarray], list[float]]:
    """The states of the expert's episode (seed 0), ``frames`` of them spread over it, and the
    wall time of each of its physics steps (no cameras)."""
    env = make_env(suite, task, seed=0)
    expert = env.expert()
    obs, _ = env.reset(seed=0)
    states, steps = [env.get_state()], []
    while True:
        action = expert(obs)
        start = time.perf_counter()
        obs, _, terminated, truncated, _ = env.step(action)
        steps.append(time.perf_counter() - start)
        states.append(env.get_state())
        if terminated or truncated:
            break
    env.close()
    pick = np.linspace(0, len(states) - 1, frames).round().astype(int)
    return [states[i] for i in pick], steps


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    med = statistics.median(values) * scale
    return f"{med:.{digits}f} [{min(values) * scale:.{digits}f}-{max(values) * scale:.{digits}f}]"


def bench_task(suite: str, task: str, camera: str, size: int, frames: int, repeats: int) -> dict:
    states, steps = episode_states(suite, task, frames)
    env = make_env(suite, task, seed=0)  # the variant the states were recorded in
    renderer = CameraRenderer(env._model, (camera,), size, size)
    wall = {"full": [], "low": []}
    cpu = {"full": [], "low": []}
    images: dict[str, list[np.ndarray]] = {}

    def block(detail: str) -> None:
        renderer.set_mesh_detail(detail)
        env.set_state(states[0])
        renderer.render(env._data)  # the first frame after an upload is not timed
        w, c, shots = [], [], []
        for state in states:
            env.set_state(state)
            t0, c0 = time.perf_counter(), time.process_time()
            shot = renderer.render(env._data)[camera]
            w.append(time.perf_counter() - t0)
            c.append(time.process_time() - c0)
            shots.append(shot)
        wall[detail].append(statistics.median(w))
        cpu[detail].append(statistics.median(c))
        images.setdefault(detail, shots)

    for r in range(repeats):
        for detail in ("full", "low") if r % 2 == 0 else ("low", "full"):
            block(detail)
    renderer.close()
    env.close()
    pairs = zip(images["full"], images["low"], strict=True)
    mad = float(np.mean([np.abs(a.astype(np.int16) - b).mean() for a, b in pairs]))
    return {
        "task": task,
        "full": wall["full"],
        "low": wall["low"],
        "ratio": [f / c for f, c in zip(wall["full"], wall["low"], strict=True)],
        "cpu_ratio": [f / c for f, c in zip(cpu["full"], cpu["low"], strict=True)],
        "step": statistics.median(steps),
        "mad": mad,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", default="metaworld")
    parser.add_argument("--tasks", nargs="+", default=["lookalike", "quick"], help="tasks or task sets")
    parser.add_argument("--camera", default="", help="default: the suite's observer camera")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=20, help="frames per block")
    parser.add_argument("--repeats", type=int, default=7, help="blocks per detail")
    args = parser.parse_args()
    spec = load_suite(args.suite)
    tasks = list(dict.fromkeys(spec.resolve_tasks(args.tasks)))
    camera = args.camera or spec.observer_camera
    print(f"{cpu_name()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    print(
        f"{args.suite}, camera {camera} at {args.size} px; "
        f"{args.frames} frames a block, {args.repeats} blocks each"
    )
    print("ms per frame: median [min-max] over blocks; ratio full/low per block: median [min-max]")
    head = f"{'task':24s} {'full ms':>18s} {'low ms':>18s} {'ratio (wall)':>18s} {'ratio (cpu)':>18s}"
    print(f"{head} {'step ms':>8s} {'MAD':>5s}")
    rows = []
    for task in tasks:
        row = bench_task(args.suite, task, camera, args.size, args.frames, args.repeats)
        rows.append(row)
        print(
            f"{task:24s} {spread(row['full'], 1e3):>18s} {spread(row['low'], 1e3):>18s} "
            f"{spread(row['ratio']):>18s} {spread(row['cpu_ratio']):>18s} {row['step'] * 1e3:8.3f} "
            f"{row['mad']:5.2f}",
            flush=True,
        )
    ratios = [statistics.median(r["ratio"]) for r in rows]
    per_step = {
        d: statistics.median([statistics.median(r[d]) / r["step"] for r in rows]) for d in ("full", "low")
    }
    cpu_ratios = [statistics.median(r["cpu_ratio"]) for r in rows]
    print(
        f"over {len(rows)} tasks: ratio (wall) median {statistics.median(ratios):.2f} "
        f"[{min(ratios):.2f}-{max(ratios):.2f}], (cpu) {statistics.median(cpu_ratios):.2f} "
        f"[{min(cpu_ratios):.2f}-{max(cpu_ratios):.2f}]; low frame / physics step "
        f"{per_step['low']:.1f}, full frame / step {per_step['full']:.1f}; "
        f"MAD mean {np.mean([r['mad'] for r in rows]):.2f}; load average {os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
