"""Collection speed against a bare MuJoCo renderer on the same scene, measured in one run.

    python tools/bench_collect.py                       # drawer-open-v3, 84 px
    python tools/bench_collect.py --task pick-place-v3 --size 128 --frames 600 --episodes 3

- bare: ``mujoco.Renderer(model, size, size)`` on the environment's own model (shadows and
  multisampling off, as ours), ``update_scene(data, camera) + render()`` in a loop, no stepping;
  also the renderer with MuJoCo's default settings, for context.
- collection: the environment stepping with the scripted expert and rendering the observer
  camera every step (``make_env(..., cameras=(observer,))``), in rendered frames per second.
- sim only: the same without a camera, in steps per second.
- end to end: :func:`embodied.data.collect.collect_task` for a few episodes: building the
  environment and its renderer, resets, HDF5 writing included.

Each loop runs ``--repeats`` times, alternating, and the best run counts (the CPU is shared).
The target is collection/bare >= 0.8; below it the collection loop is profiled.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from embodied.sim import load_suite, make_env

# isort: split
import h5py
import mujoco  # after embodied.sim, which sets MUJOCO_GL=egl before mujoco is first imported

TARGET = 0.8


def best_rate(loops: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Run each loop ``repeats`` times, alternating; each returns units/s; keep the best."""
    best = dict.fromkeys(loops, 0.0)
    for _ in range(repeats):
        for name, loop in loops.items():
            best[name] = max(best[name], loop())
    return best


def bare_loop(
    renderer: mujoco.Renderer, data: mujoco.MjData, camera: str, frames: int
) -> Callable[[], float]:
    def run() -> float:
        start = time.perf_counter()
        for _ in range(frames):
            renderer.update_scene(data, camera=camera)
            renderer.render()
        return frames / (time.perf_counter() - start)

    return run


def expert_loop(env, frames: int) -> Callable[[], float]:
    """Steps of the expert (resetting at episode ends), one rendered frame per step if the
    environment has a camera; returns steps (= frames) per second. Resets are not counted."""
    expert = env.expert()

    def run() -> float:
        seed, steps, elapsed = 0, 0, 0.0
        while steps < frames:
            obs, _ = env.reset(seed=seed)
            seed += 1
            start = time.perf_counter()
            while steps < frames:
                obs, _, terminated, truncated, _ = env.step(expert(obs))
                steps += 1
                if terminated or truncated:
                    break
            elapsed += time.perf_counter() - start
        return steps / elapsed

    return run


def end_to_end(task: str, camera: str, size: int, episodes: int) -> tuple[float, float, float]:
    """collect_task for ``episodes`` demos: (demos/s, frames/s, seconds)."""
    from embodied.data.collect import CollectConfig, collect_task

    with tempfile.TemporaryDirectory() as tmp:
        cfg = CollectConfig(
            tasks=[task], episodes=episodes, cameras=[camera], image_size=size, out=tmp, workers=1
        )
        path = Path(tmp) / f"{task}.hdf5"
        start = time.perf_counter()
        summary = collect_task(cfg, task, path)
        seconds = time.perf_counter() - start
        with h5py.File(path, "r") as f:
            frames = int(f["data"].attrs["total"])
    return summary["demos"] / seconds, frames / seconds, seconds


def profile(env, frames: int, top: int = 25) -> str:
    prof = cProfile.Profile()
    prof.enable()
    expert_loop(env, frames)()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--suite", default="metaworld")
    p.add_argument("--task", default="drawer-open-v3")
    p.add_argument("--camera", default=None, help="default: the suite's observer camera")
    p.add_argument("--size", type=int, default=84, help="image side in pixels")
    p.add_argument("--frames", type=int, default=300, help="frames per timed loop")
    p.add_argument("--episodes", type=int, default=3, help="demos for the end-to-end collect_task")
    p.add_argument("--repeats", type=int, default=3, help="runs of each loop; the best counts")
    p.add_argument("--profile", action="store_true", help="profile the collection loop even at target")
    args = p.parse_args()
    warnings.filterwarnings("ignore", message="Constant\\(s\\) may be too high")  # the experts' gains
    camera = args.camera or load_suite(args.suite).observer_camera

    env = make_env(args.suite, args.task, cameras=(camera,), image_size=args.size, seed=0)
    sim_env = make_env(args.suite, args.task, seed=0)  # no camera: MuJoCo's default render settings
    model, data = env._env.model, env._env.data
    bare = mujoco.Renderer(model, args.size, args.size)  # shadows and multisampling already off
    default_model = sim_env._env.model
    default_model.vis.global_.offwidth = max(default_model.vis.global_.offwidth, args.size)
    default_model.vis.global_.offheight = max(default_model.vis.global_.offheight, args.size)
    default = mujoco.Renderer(default_model, args.size, args.size)
    quality = (model.vis.quality.shadowsize, model.vis.quality.offsamples)
    default_quality = (default_model.vis.quality.shadowsize, default_model.vis.quality.offsamples)
    default_frames = max(20, args.frames // 6)  # it is slow; fewer frames give the same rate

    loops = {
        "bare": bare_loop(bare, data, camera, args.frames),
        "collection": expert_loop(env, args.frames),
        "sim only": expert_loop(sim_env, args.frames),
        "bare, default settings": bare_loop(default, sim_env._env.data, camera, default_frames),
    }
    # Warm up: the first frames of a renderer upload textures, the first steps fill caches.
    bare_loop(bare, data, camera, 10)()
    bare_loop(default, sim_env._env.data, camera, 3)()
    expert_loop(env, 20)()
    rates = best_rate(loops, args.repeats)
    runs = [end_to_end(args.task, camera, args.size, args.episodes) for _ in range(args.repeats)]
    demos_s, frames_s, seconds = max(runs)  # the fastest run
    ratio = rates["collection"] / rates["bare"]

    print(
        f"{args.suite} {args.task}, camera {camera}, {args.size} px, {args.frames} frames per loop, "
        f"best of {args.repeats}"
    )
    print(f"{'loop':56s} {'rate':>10s}  unit")
    rows = [
        (f"bare mujoco.Renderer (shadowsize, offsamples = {quality})", rates["bare"], "frames/s"),
        (f"bare mujoco.Renderer, defaults {default_quality}", rates["bare, default settings"], "frames/s"),
        ("collection: env.step + expert + render", rates["collection"], "frames/s"),
        ("sim only: env.step + expert, no camera", rates["sim only"], "steps/s"),
        (f"collect_task end to end, {args.episodes} demos ({seconds:.1f} s)", frames_s, "frames/s"),
        ("", demos_s, "demos/s"),
    ]
    for name, rate, unit in rows:
        print(f"{name:56s} {rate:10.1f}  {unit}")
    print(f"collection/bare = {ratio:.2f} (target >= {TARGET})")
    if ratio < TARGET or args.profile:
        print("\nprofile of the collection loop (by own time):")
        print(profile(env, args.frames))
    bare.close()
    default.close()
    env.close()
    sim_env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
