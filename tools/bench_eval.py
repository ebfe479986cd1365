"""Evaluation speed: a policy's rollouts against stepping the same environments bare, in one run.

    python tools/bench_eval.py                                   # fresh bc_mlp, reach + drawer-close
    python tools/bench_eval.py --checkpoint runs/policy_quick --tasks quick --workers 2
    python tools/bench_eval.py --episodes 6 --horizon 150 --repeats 3 --video-episodes 1
    python tools/bench_eval.py --envs-per-worker 1               # one environment per worker

Every loop runs the same tasks, seeds (EVAL_SEED_START on), horizon, worker count and
environments per worker, in the same :class:`~embodied.eval.envs.EnvPool`:

- eval, policy: :func:`evaluate_policy` with the policy (a checkpoint's, trained, or a freshly
  built, untrained ``bc_mlp`` with the default config; the output says which);
- bare, same episodes (the reference): the suite's own environments (``make_env``), no policy,
  no evaluation wrapper, zero actions, the same episodes (seeds) for as many steps as the
  policy's episodes took, in the same waves. A Meta-World reset costs about 40 steps, and a
  trained policy that succeeds ends its episodes early, so it resets more often per step than
  zero actions run to the horizon: that is the environments' cost, which any evaluation of
  this policy pays, not the evaluation's;
- bare, policy's actions: the same episodes stepped with the actions the policy took, recorded
  during its evaluation: exactly the environments' share of the evaluation's work, so
  eval-policy against it is the evaluation's own cost (the policy and the machinery);
- bare, to the horizon: zero actions to the horizon (they never succeed), the former reference;
- bare, random actions: uniform random actions to the horizon, for context: a moving arm costs
  MuJoCo more than one at rest;
- eval, zero policy: :func:`evaluate_policy` with a stand-in that returns zero actions (the
  cost of the evaluation machinery: the worker wrapper, lock-step waves, bookkeeping).

Steps per second count environment steps (idle slots of a wave not counted) and leave out
worker start-up, which is reported apart. Both sides run task by task (the bare loop needs a
pool per task; evaluate_policy is called once per task), so neither counts building
environments. The target is eval-policy / bare (same episodes) >= 0.8. Separately, the
rendering cost of video episodes: the policy run again with every episode recorded as an MP4
of the observer camera, in seconds per video episode and per frame.

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
from embodied.eval.envs import EnvPool
from embodied.eval.rollout import DEFAULT_ENVS_PER_WORKER, evaluate_policy
from embodied.models.common import DataSpec
from embodied.sim import load_suite, make_env

TARGET = 0.8


class Timed:
    """A policy wrapper that adds up the seconds spent in ``predict_action``."""

    def __init__(self, policy) -> None:
        self.policy = policy
        self.seconds = 0.0
        self.calls = 0
        self.waves: list[list[np.ndarray]] = []  # the actions of each call, wave by wave

    def __getattr__(self, name):  # eval(), train(), parameters(), config: the policy's own
        return getattr(self.policy, name)

    def reset(self) -> None:  # evaluate_policy resets the policy once per wave
        self.policy.reset()
        self.waves.append([])

    def predict_action(self, obs, instruction_id):
        t0 = time.perf_counter()
        action = self.policy.predict_action(obs, instruction_id)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        self.waves[-1].append(action.detach().float().cpu().numpy().copy())  # (N, A)
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


class StepBudget(gym.Wrapper):
    """A bare environment that takes at most ``options["budget"]`` steps per episode, then idles
    (returns its last observation without simulating), as an evaluation's finished episode does."""

    def reset(self, *, seed=None, options=None):
        self.left = (options or {}).get("budget", np.inf)
        self.last, info = self.env.reset(seed=seed)
        return self.last, info

    def step(self, action):
        if self.left <= 0:
            return self.last, 0.0, True, False, {}
        self.left -= 1
        self.last, reward, terminated, truncated, info = self.env.step(action)
        return self.last, reward, terminated, truncated, info


def budget_env(suite: str, task: str, horizon: int) -> gym.Env:
    return StepBudget(make_env(suite, task, horizon=horizon))


def bare_rates(
    suite: str,
    lengths: dict[str, list[int]],
    actions: dict[str, list[list[np.ndarray]]],
    horizon: int,
    workers: int,
    per_worker: int,
) -> dict[str, tuple[float, float]]:
    """{variant: (steps/s, start-up s)} of the suite's own environments with no policy, in an
    :class:`EnvPool` of ``workers`` processes x ``per_worker`` environments, as the evaluation:

    - same episodes: each of ``lengths[task]`` (the evaluation's episodes, in plan order) reset
      to its seed and stepped with zero actions for as many steps as the evaluation took, in
      waves of N = workers x per_worker environments (an ended one is not stepped);
    - policy's actions: the same, stepped with the actions the policy took
      (``actions[task]``: wave -> step -> (N, A); in a one-task evaluation environment i of a
      wave runs its i-th episode), so the environments do exactly the evaluation's work;
    - to the horizon: zero actions for ``horizon`` steps per episode (they never succeed);
    - random actions: uniform random actions to the horizon (a moving arm costs MuJoCo more).
    """
    steps = {"same episodes": 0, "policy's actions": 0, "to the horizon": 0, "random actions": 0}
    elapsed = dict.fromkeys(steps, 0.0)
    startup = 0.0
    for task, episode_lengths in lengths.items():  # one pool per task: the suite's envs cannot switch task
        episodes = len(episode_lengths)
        n = min(workers * per_worker, episodes)  # as many environments as evaluate_policy runs
        t0 = time.perf_counter()
        envs = EnvPool([functools.partial(budget_env, suite, task, horizon)] * n, workers, context="spawn")
        startup += time.perf_counter() - t0
        try:
            for variant in steps:
                t0 = time.perf_counter()
                for w, first in enumerate(range(0, episodes, n)):
                    wave = range(first, min(first + n, episodes))
                    if variant in ("same episodes", "policy's actions"):
                        budgets = np.array([episode_lengths[i] for i in wave] + [0] * (n - len(wave)))
                    else:
                        budgets = np.full(n, horizon)
                    envs.reset(
                        [
                            {"seed": EVAL_SEED_START + first + i, "options": {"budget": int(b)}}
                            for i, b in enumerate(budgets)
                        ]
                    )
                    rng = np.random.default_rng(first)
                    scale = 1.0 if variant == "random actions" else 0.0
                    for t in range(int(budgets.max())):
                        running = np.flatnonzero(budgets > t)  # as the evaluation, only running episodes
                        if variant == "policy's actions":
                            act = actions[task][w][t][running]
                        else:
                            act = rng.uniform(-1, 1, (len(running), 4)).astype(np.float32) * scale
                        envs.step(act, running)
                    steps[variant] += int(budgets.sum())
                elapsed[variant] += time.perf_counter() - t0
        finally:
            envs.close()
    return {k: (steps[k] / elapsed[k], startup) for k in steps}


def eval_rate(policy, spec, tasks, episodes, horizon, workers, **kwargs):
    """(steps/s, start-up s, wall s, ms in predict_action per call, {task: episode lengths}) of
    evaluate_policy, one call per task."""
    timed = Timed(policy)
    steps, wall, startup = 0, 0.0, 0.0
    lengths, actions = {}, {}
    t0 = time.perf_counter()
    for task in tasks:
        timed.waves = []
        r = evaluate_policy(timed, spec, [task], episodes, workers=workers, horizon=horizon, **kwargs)
        steps, wall, startup = steps + r.env_steps, wall + r.wall_s, startup + r.startup_s
        lengths[task] = [e.length for e in r.episodes]
        actions[task] = timed.waves
    per_call = 1e3 * timed.seconds / max(timed.calls, 1)
    return steps / wall, startup, time.perf_counter() - t0, per_call, lengths, actions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", help="a trained policy (checkpoint or run folder); default: a fresh bc_mlp"
    )
    p.add_argument("--tasks", nargs="+", default=["reach-v3", "drawer-close-v3"])
    p.add_argument("--suite", default="metaworld")
    p.add_argument(
        "--episodes", type=int, help="episodes per task (default: one wave, workers x envs per worker)"
    )
    p.add_argument("--horizon", type=int, default=150)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--envs-per-worker", type=int, default=DEFAULT_ENVS_PER_WORKER, help="environments per worker process"
    )
    p.add_argument("--repeats", type=int, default=3)
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
    h, w, k = args.horizon, args.workers, args.envs_per_worker
    n = args.episodes or w * k
    if w < 2:
        sys.exit("--workers must be at least 2 (the bare reference runs worker processes)")
    print(
        f"{which}; {len(tasks)} task(s) x {n} episodes, horizon {h}, {w} workers x {k} envs, "
        f"torch {torch.__version__}, best of {args.repeats}"
    )

    names = (
        "bare, same episodes",
        "bare, policy's actions",
        "bare, to the horizon",
        "bare, random actions",
        "eval, zero policy",
        "eval, policy",
    )
    best = dict.fromkeys(names, (0.0, 0.0, 0.0))
    for _ in range(args.repeats):
        e = eval_rate(policy, spec, tasks, n, h, w, suite=args.suite, envs_per_worker=k)
        z = eval_rate(zero, spec, tasks, n, h, w, suite=args.suite, envs_per_worker=k)
        bare = bare_rates(args.suite, e[4], e[5], h, w, k)
        rate = {f"bare, {variant}": (*v, 0.0) for variant, v in bare.items()}
        rate |= {"eval, zero policy": (z[0], z[1], 0.0), "eval, policy": (e[0], e[1], e[3])}
        for name, v in rate.items():
            if v[0] > best[name][0]:
                best[name] = v
    envs = min(w * k, n)
    for name, (sps, startup, ms) in best.items():
        extra = f", predict_action {ms:.2f} ms/call for {envs} envs" if ms else ""
        print(f"  {name:<21} {sps:8.0f} env-steps/s   (start-up {startup:.1f} s{extra})")
    ev = best["eval, policy"][0]
    ratio = ev / best["bare, same episodes"][0]
    verdict = "meets" if ratio >= TARGET else "BELOW"
    own = ev / best["bare, policy's actions"][0]
    horizon_ratio = ev / best["bare, to the horizon"][0]
    machinery = best["eval, zero policy"][0] / best["bare, to the horizon"][0]
    print(
        f"eval-policy / bare (same episodes, zero actions) = {ratio:.2f} ({verdict} the target {TARGET}); "
        f"/ bare with the policy's actions = {own:.2f} (the evaluation's own cost); "
        f"/ bare to the horizon = {horizon_ratio:.2f}; "
        f"machinery alone (zero policy / bare to the horizon): {machinery:.2f}"
    )
    # Lock-step waves run the policy while the workers wait: its time adds to every step.
    bare_ms = 1e3 * envs / best["bare, to the horizon"][0]  # wall ms per lock-step of every environment
    policy_ms = best["eval, policy"][2]
    print(
        f"per lock-step of {envs} envs: bare {bare_ms:.2f} ms, policy {policy_ms:.2f} ms -> "
        f"expected ratio if the policy is the only difference: {bare_ms / (bare_ms + policy_ms):.2f}"
    )

    if args.video_episodes > 0:
        v = min(args.video_episodes, n)
        cam = suite.observer_camera
        with tempfile.TemporaryDirectory() as tmp:
            plain = eval_rate(policy, spec, tasks, v, h, w, suite=args.suite, envs_per_worker=k)
            video = eval_rate(
                policy,
                spec,
                tasks,
                v,
                h,
                w,
                suite=args.suite,
                envs_per_worker=k,
                cameras=(cam,),
                video_episodes=v,
                video_dir=tmp,
            )
        episodes = v * len(tasks)
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
