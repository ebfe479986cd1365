"""Evaluation speed: a policy's rollouts against stepping the same environments bare, in one run.

    python tools/bench_eval.py                                   # fresh bc_mlp, reach + drawer-close
    python tools/bench_eval.py --checkpoint runs/policy_quick --tasks quick --workers 2
    python tools/bench_eval.py --episodes 6 --horizon 150 --repeats 3 --video-episodes 1

Every loop runs the same tasks, seeds (EVAL_SEED_START on), horizon and worker count:

- bare: gymnasium's ``AsyncVectorEnv`` over the suite's own environments (``make_env``), zero
  actions, no policy, no wrapper, stepped for the same number of steps per environment;
- bare, random actions: the same with uniform random actions, for context: a moving arm costs
  MuJoCo more than one at rest, so part of any policy's gap to "bare" is physics, not policy;
- eval, zero policy: :func:`evaluate_policy` with a stand-in that returns zero actions (the
  cost of the evaluation machinery: the worker wrapper, lock-step waves, bookkeeping);
- eval, policy: :func:`evaluate_policy` with the policy (a checkpoint's, trained, or a freshly
  built, untrained ``bc_mlp`` with the default config; the output says which).

Steps per second count environment steps (idle slots of a wave not counted) and leave out
worker start-up, which is reported apart. Both sides run task by task (the bare loop needs a
vector env per task; evaluate_policy is called once per task), so neither counts building
environments: in one multi-task evaluation a worker switching task rebuilds its environment,
about 0.1-0.3 s, inside the evaluation's time. The target is eval-policy / bare >= 0.8.
Separately, the rendering cost of video episodes: the policy run again with every episode
recorded as an MP4 of the observer camera, in seconds per video episode and per frame.

Each loop runs ``--repeats`` times, alternating, and the best run counts (the CPU is shared).
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch

from embodied.data.collect import EVAL_SEED_START
from embodied.eval.rollout import evaluate_policy
from embodied.models.common import DataSpec
from embodied.sim import load_suite, make_env

TARGET = 0.8


class Timed:
    """A policy wrapper that adds up the seconds spent in ``predict_action``."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.seconds = 0.0
        self.calls = 0

    def __getattr__(self, name):  # eval(), train(), parameters(), config: the policy's own
        return getattr(self.policy, name)

    def reset(self) -> None:
        self.policy.reset()

    def predict_action(self, obs, instruction_id):
        t0 = time.perf_counter()
        action = self.policy.predict_action(obs, instruction_id)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return action


class ZeroPolicy:
    """The stand-in policy: zero actions, nothing to compute."""

    def __init__(self, action_dim: int) -> None:
        self.action_dim = action_dim

    def reset(self) -> None:
        pass

    def predict_action(self, obs, instruction_id):
        return torch.zeros(len(instruction_id), self.action_dim)


def fresh_policy(tasks: list[str], suite: str):
    from embodied.policies import BCMLPConfig, build_policy

    s = load_suite(suite)
    spec = DataSpec(
        obs_shapes={"robot_state": [4], "object_state": [14], "goal": [3]},
        action_dim=4,
        num_classes=len(tasks),
        num_instructions=len(tasks),
        classes=list(tasks),
        instructions=[s.task(t).instruction for t in tasks],
    )
    torch.manual_seed(0)
    return build_policy(BCMLPConfig(), spec), spec, "freshly built bc_mlp (untrained, default config)"


def bare_rate(
    suite: str, tasks: list[str], episodes: int, horizon: int, workers: int, random: bool = False
) -> tuple[float, float]:
    """(steps/s, start-up s) of zero (or uniformly random) actions on the suite's environments."""
    total = 0
    elapsed = startup = 0.0
    for task in tasks:  # one vector env per task: the suite's envs cannot switch task
        t0 = time.perf_counter()
        fn = functools.partial(make_env, suite, task, horizon=horizon)
        envs = gym.vector.AsyncVectorEnv([fn] * workers, context="spawn")
        startup += time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            waves = -(-episodes // workers)
            for w in range(waves):
                envs.reset(seed=[EVAL_SEED_START + w * workers + i for i in range(workers)])
                rng = np.random.default_rng(w)
                actions = rng.uniform(-1, 1, (horizon, workers, 4)).astype(np.float32) * random
                for t in range(horizon):  # zero actions never succeed: every episode runs to the horizon
                    envs.step(actions[t])
                total += workers * horizon
            elapsed += time.perf_counter() - t0
        finally:
            envs.close()
    return total / elapsed, startup


def eval_rate(policy, spec, tasks, episodes, horizon, workers, **kwargs) -> tuple[float, float, float, float]:
    """(steps/s, start-up s, wall s, ms in predict_action per call) of evaluate_policy, one call per task."""
    timed = Timed(policy)
    steps, wall, startup = 0, 0.0, 0.0
    t0 = time.perf_counter()
    for task in tasks:
        r = evaluate_policy(timed, spec, [task], episodes, workers=workers, horizon=horizon, **kwargs)
        steps, wall, startup = steps + r.env_steps, wall + r.wall_s, startup + r.startup_s
    per_call = 1e3 * timed.seconds / max(timed.calls, 1)
    return steps / wall, startup, time.perf_counter() - t0, per_call


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", help="a trained policy (checkpoint or run folder); default: a fresh bc_mlp"
    )
    p.add_argument("--tasks", nargs="+", default=["reach-v3", "drawer-close-v3"])
    p.add_argument("--suite", default="metaworld")
    p.add_argument("--episodes", type=int, default=4, help="episodes per task")
    p.add_argument("--horizon", type=int, default=150)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--video-episodes", type=int, default=1, help="episodes per task for the rendering cost (0: skip)"
    )
    args = p.parse_args(argv)

    suite = load_suite(args.suite)
    tasks = suite.resolve_tasks(args.tasks)
    if args.checkpoint:
        from embodied.train.checkpoint import load_model

        _, models, spec, _ = load_model(args.checkpoint)
        if "policy" not in models:
            sys.exit(f"{args.checkpoint}: no policy in the checkpoint")
        policy, which = models["policy"], f"trained policy from {args.checkpoint}"
    else:
        policy, spec, which = fresh_policy(tasks, args.suite)
    zero = ZeroPolicy(spec.action_dim)
    n, h, w = args.episodes, args.horizon, args.workers
    print(
        f"{which}; {len(tasks)} task(s) x {n} episodes, horizon {h}, {w} workers, "
        f"torch {torch.__version__}, best of {args.repeats}"
    )

    names = ("bare", "bare, random actions", "eval, zero policy", "eval, policy")
    best = dict.fromkeys(names, (0.0, 0.0, 0.0))
    for _ in range(args.repeats):
        z = eval_rate(zero, spec, tasks, n, h, w, suite=args.suite)
        e = eval_rate(policy, spec, tasks, n, h, w, suite=args.suite)
        rate = {
            "bare": (*bare_rate(args.suite, tasks, n, h, w), 0.0),
            "bare, random actions": (*bare_rate(args.suite, tasks, n, h, w, random=True), 0.0),
            "eval, zero policy": (z[0], z[1], 0.0),
            "eval, policy": (e[0], e[1], e[3]),
        }
        for k, v in rate.items():
            if v[0] > best[k][0]:
                best[k] = v
    for k, (sps, startup, ms) in best.items():
        extra = f", predict_action {ms:.2f} ms/call (W={w})" if ms else ""
        print(f"  {k:<20} {sps:8.0f} env-steps/s   (start-up {startup:.1f} s{extra})")
    ratio = best["eval, policy"][0] / best["bare"][0]
    verdict = "meets" if ratio >= TARGET else "BELOW"
    print(
        f"eval-policy / bare = {ratio:.2f} ({verdict} the target {TARGET}); "
        f"machinery alone (zero policy / bare): {best['eval, zero policy'][0] / best['bare'][0]:.2f}"
    )
    # Lock-step waves run the policy while the workers wait: its time adds to every step.
    bare_ms = 1e3 * w / best["bare"][0]  # wall ms per lock-step of W environments
    policy_ms = best["eval, policy"][2]
    print(
        f"per lock-step of {w} envs: bare {bare_ms:.2f} ms, policy {policy_ms:.2f} ms -> "
        f"expected ratio if the policy is the only difference: {bare_ms / (bare_ms + policy_ms):.2f}"
    )

    if args.video_episodes > 0:
        k = min(args.video_episodes, n)
        cam = suite.observer_camera
        with tempfile.TemporaryDirectory() as tmp:
            plain = eval_rate(policy, spec, tasks, k, h, w, suite=args.suite)
            video = eval_rate(
                policy,
                spec,
                tasks,
                k,
                h,
                w,
                suite=args.suite,
                cameras=(cam,),
                video_episodes=k,
                video_dir=tmp,
            )
        episodes = k * len(tasks)
        extra = (video[2] - video[1]) - (plain[2] - plain[1])  # wall time past start-up
        frames = episodes * (h + 1)
        print(
            f"rendering cost of video episodes ({cam}, {spec.image_size or 84} px, MP4): "
            f"{plain[0]:.0f} -> {video[0]:.0f} env-steps/s; +{extra / episodes:.2f} s per episode, "
            f"{1e3 * extra / frames:.1f} ms per frame (render, caption, encode)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
