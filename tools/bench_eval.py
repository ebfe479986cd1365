"""Evaluation speed: a policy's rollouts against stepping the same environments bare, in one run.

    python tools/bench_eval.py                                   # fresh bc_mlp, reach + drawer-close
    python tools/bench_eval.py --checkpoint runs/policy_quick --tasks quick --workers 2
    python tools/bench_eval.py --episodes 6 --horizon 150 --repeats 3 --video-episodes 1
    python tools/bench_eval.py --envs-per-worker 1               # one environment per worker
    python tools/bench_eval.py --checkpoint runs/policy_quick --tasks quick --one-worker --repeats 5
    python tools/bench_eval.py --tasks quick --compare runs/policy_quick runs/policy_quick_diffusion \
        runs/policy_quick_act

Every loop runs the same tasks, seeds (EVAL_SEED_START on), horizon, worker count and
environments per worker, in the same :class:`~embodied.eval.pool.EnvPool`:

- eval, policy: :func:`evaluate_policy` as ``embodied-eval`` runs it on a CPU: each worker
  process runs its share of the episodes with its own copy of the policy (a checkpoint's,
  trained, or a freshly built, untrained ``bc_mlp`` with the default config; the output says
  which);
- eval, policy, lock-step: the same with the policy in this process acting for every
  environment at once while the workers wait (``policy_in_workers=False``, how a GPU policy
  runs), for comparison; it also records the policy's actions and its time per call;
- bare, same episodes (the reference): the suite's own environments (``make_env``), no policy,
  no evaluation wrapper, zero actions, the same episodes (seeds) for as many steps as the
  policy's episodes took, in the same waves, this process sending every lock-step to the
  workers. A Meta-World reset costs about 40 steps, and a trained policy that succeeds ends
  its episodes early, so it resets more often per step than zero actions run to the horizon:
  that is the environments' cost, which any evaluation of this policy pays, not the
  evaluation's;
- bare, in the workers: the same episodes and zero actions, each worker stepping its share on
  its own with no round trip per step (the stricter reference: stepping as fast as these
  workers can);
- bare, policy's actions: the same episodes stepped (lock-step) with the actions the policy
  took, recorded during the lock-step evaluation: exactly the environments' share of the
  evaluation's work (a moving arm costs MuJoCo more than one at rest);
- bare, to the horizon: zero actions to the horizon (they never succeed), the first reference;
  and the same with each worker stepping by itself;
- bare, random actions: uniform random actions to the horizon, for context;
- eval, zero policy: :func:`evaluate_policy` (policy in the workers) with a stand-in that
  returns zero actions: against bare in the workers to the horizon, the cost of the
  evaluation machinery (the :class:`EvalEnv` wrapper, the waves, the bookkeeping).

Steps per second count environment steps (idle slots of a wave not counted) and leave out
worker start-up, which is reported apart. Every loop runs task by task (the bare loops need a
pool per task; evaluate_policy is called once per task), so none counts building
environments. The target is eval-policy / bare (same episodes) >= 0.8; the ratio to the
stricter reference is printed too. Separately, the rendering cost of video episodes: the
policy run again with every episode recorded as an MP4 of the observer camera, in seconds per
video episode and per frame.

The speed of this VM drifts by up to 2x over minutes, so every loop runs task by task, back
to back, and the whole is repeated ``--repeats`` times. Each repeat gives its own ratios; the
verdict takes their median, printed with the lowest and highest and with the ratio of the best
rates; the table lists each loop's best rate.

``--compare A B ...`` measures instead several policies against the first (the reference, e.g.
BC-MLP), in the same waves of the same tasks and seeds, back to back task by task, ``--repeats``
times: each one's evaluation env-steps/s (the policy in the workers, as ``embodied-eval``
runs on a CPU), its ratio to the first's (median over the repeats [lowest, highest]), its ratio
to the bare environments on its own episodes, and its time per ``predict_action`` call in
lock-step, which for a chunked policy (Diffusion Policy, ACT, the chunk head) is the network's
time spread over the steps of its chunk.

``--one-worker`` measures instead, in this process alone, what a worker's time goes to: one
wave of ``--envs-per-worker`` episodes per task stepped bare with zero actions (the unit), bare
with the policy's actions, through the evaluation with those actions played back (its
machinery: :class:`EvalEnv`, :func:`run_wave`), and with the policy; and the policy's time a
call there against the same calls one after the other.
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

from embodied.data.spec import DataSpec
from embodied.eval.pool import EnvPool
from embodied.eval.rollout import evaluate_policy
from embodied.eval.settings import DEFAULT_ENVS_PER_WORKER, Videos
from embodied.seeds import EVAL_SEED_START
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


def trained_policy(path: str):
    """(policy, spec) of a checkpoint or run folder; exits naming it when it holds no policy."""
    from embodied.train.checkpoint import load_model

    _, models, spec, _ = load_model(path)
    if "policy" not in models:
        sys.exit(f"{path}: no policy in the checkpoint")
    return models["policy"], spec


def median_range(values: list[float]) -> str:
    """``median [lowest, highest]`` of one figure over the repeats."""
    v = sorted(values)
    return f"{float(np.median(v)):.2f} [{v[0]:.2f}, {v[-1]:.2f}]"


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


def step_bare(envs, seeds, budgets, actions=None) -> int:
    """Reset each of ``envs`` to its seed with its step budget, then step them in rounds as a
    lock-step would (only those with budget left), with ``actions`` (per step, (k, A)) or, when
    None, zero actions; returns the steps taken."""
    for env, seed, budget in zip(envs, seeds, budgets, strict=True):
        env.reset(seed=seed, options={"budget": budget})
    zero = np.zeros(envs[0].action_space.shape, np.float32)
    steps = 0
    for t in range(max(budgets)):
        for j, env in enumerate(envs):
            if budgets[j] > t:
                env.step(zero if actions is None else actions[t][j])
                steps += 1
    return steps


def bare_commands(envs: list[gym.Env]) -> dict:
    """A bare worker's extension: ``run`` waves of (seeds, step budgets) of its own environments
    with zero actions (:func:`step_bare`), with no round trip per step."""

    def run(jobs: list[tuple[list[int], list[int]]], send) -> int:
        return sum(step_bare(envs, seeds, budgets) for seeds, budgets in jobs)

    return {"run": run}


BARE_VARIANTS = (
    "same episodes",
    "in the workers",
    "policy's actions",
    "to the horizon",
    "in the workers, to the horizon",
    "random actions",
)


def bare_rates(
    suite: str,
    lengths: dict[str, list[int]],
    actions: dict[str, list[list[np.ndarray]]],
    horizon: int,
    workers: int,
    per_worker: int,
    variants: tuple[str, ...] | None = None,
) -> tuple[dict[str, tuple[int, float]], float]:
    """({variant: (env steps, seconds)}, start-up s) of the suite's own environments with no policy, in an
    :class:`EnvPool` of ``workers`` processes x ``per_worker`` environments, as the evaluation
    (``variants``: only these of the loops below; None: every one):

    - same episodes: each of ``lengths[task]`` (the evaluation's episodes, in plan order) reset
      to its seed and stepped with zero actions for as many steps as the evaluation took, in
      waves of N = workers x per_worker environments (an ended one is not stepped);
    - in the workers: the same, each worker stepping its share by itself (:func:`bare_commands`);
    - in the workers, to the horizon: each worker by itself, zero actions for ``horizon`` steps;
    - policy's actions: the same, stepped with the actions the policy took
      (``actions[task]``: wave -> step -> (N, A); in a one-task evaluation environment i of a
      wave runs its i-th episode), so the environments do exactly the evaluation's work;
    - to the horizon: zero actions for ``horizon`` steps per episode (they never succeed);
    - random actions: uniform random actions to the horizon (a moving arm costs MuJoCo more).
    """
    steps = dict.fromkeys(variants or BARE_VARIANTS, 0)
    elapsed = dict.fromkeys(steps, 0.0)
    startup = 0.0
    for task, episode_lengths in lengths.items():  # one pool per task: the suite's envs cannot switch task
        episodes = len(episode_lengths)
        n = min(workers * per_worker, episodes)  # as many environments as evaluate_policy runs
        t0 = time.perf_counter()
        envs = EnvPool(
            [functools.partial(budget_env, suite, task, horizon)] * n,
            workers,
            context="spawn",
            extension=bare_commands,
        )
        startup += time.perf_counter() - t0
        try:
            for variant in steps:
                t0 = time.perf_counter()
                if variant.startswith("in the workers"):
                    for w in range(envs.workers):
                        jobs = []
                        for first in range(0, episodes, n):
                            wave = [first + i for i in envs.share(w)]
                            seeds = [EVAL_SEED_START + e for e in wave]
                            if variant == "in the workers":
                                budgets = [episode_lengths[e] if e < episodes else 0 for e in wave]
                            else:
                                budgets = [horizon if e < episodes else 0 for e in wave]
                            jobs.append((seeds, budgets))
                        envs.send(w, "run", jobs)
                    steps[variant] += sum(envs.receive(w)[1] for w in range(envs.workers))
                    elapsed[variant] += time.perf_counter() - t0
                    continue
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
    return {k: (steps[k], elapsed[k]) for k in steps}, startup


def eval_run(policy, spec, task, episodes, horizon, workers, lockstep=False, **kwargs):
    """(env steps, seconds, start-up s, ms in predict_action per call, {task: episode lengths},
    {task: the actions of each wave}) of evaluate_policy on one task; with ``lockstep`` the
    policy runs in this process (timed, its actions recorded), else in the workers (the default
    on a CPU; no timing or actions)."""
    timed = Timed(policy) if lockstep else None
    r = evaluate_policy(
        timed or policy,
        spec,
        [task],
        episodes,
        workers=workers,
        horizon=horizon,
        policy_in_workers=not lockstep,
        **kwargs,
    )
    per_call = 1e3 * timed.seconds / max(timed.calls, 1) if timed is not None else 0.0
    actions = {task: timed.waves} if timed is not None else {}
    return r.env_steps, r.wall_s, r.startup_s, per_call, {task: [e.length for e in r.episodes]}, actions


def eval_rate(policy, spec, tasks, episodes, horizon, workers, **kwargs):
    """(steps/s, start-up s, wall s including start-up) of evaluate_policy, one call per task."""
    t0, steps, wall, startup = time.perf_counter(), 0, 0.0, 0.0
    for task in tasks:
        n, s, up, *_ = eval_run(policy, spec, task, episodes, horizon, workers, **kwargs)
        steps, wall, startup = steps + n, wall + s, startup + up
    return steps / wall, startup, time.perf_counter() - t0


class Replay:
    """A stand-in policy that plays recorded actions back (and keeps the observations it is
    given): the evaluation's work without the policy's compute."""

    def __init__(self, actions: list[np.ndarray]) -> None:
        self.actions, self.t, self.obs = actions, 0, []

    def reset(self) -> None:
        self.t, self.obs = 0, []

    def predict_action(self, obs, instruction_id):
        self.obs.append(obs)
        self.t += 1
        return torch.from_numpy(self.actions[self.t - 1])


def _bare_seconds(envs, plans, lengths, actions=None) -> float:
    t0 = time.perf_counter()
    step_bare(envs, [plan.seed for plan in plans], lengths, actions)
    return time.perf_counter() - t0


def _wave_seconds(policy, pool, plans, instruction) -> float:
    from embodied.eval.waves import run_wave

    t0 = time.perf_counter()
    for _ in run_wave(policy, pool, plans, range(len(plans)), instruction, torch.device("cpu")):
        pass
    return time.perf_counter() - t0


def _policy_seconds(policy, observations, instruction) -> float:
    t0 = time.perf_counter()
    policy.reset()
    with torch.inference_mode():
        for obs in observations:
            policy.predict_action(obs, instruction)
    return time.perf_counter() - t0


def one_worker(policy, spec, suite: str, tasks: list[str], k: int, horizon: int, repeats: int) -> None:
    """What one worker's time goes to, measured in this process (no other process, so less noise):
    one wave of ``k`` episodes per task, each loop best of ``repeats``, against stepping the same
    episodes bare with zero actions."""
    from embodied.eval.envs import EpisodePlan, EvalEnv
    from embodied.eval.plan import instruction_ids
    from embodied.eval.waves import run_wave

    torch.set_num_threads(1)
    policy.eval()
    ids = instruction_ids(spec, suite, tasks)
    totals: dict[str, float] = {}
    in_situ, calls = 0.0, 0
    for task in tasks:
        plans = [EpisodePlan(task, EVAL_SEED_START + i) for i in range(k)]
        pool = EnvPool.of([EvalEnv(suite, plans[0], (), 84, horizon, True) for _ in range(k)])
        bare = [budget_env(suite, task, horizon) for _ in range(k)]
        instruction = torch.full((k,), ids[task], dtype=torch.long)
        timed, cpu = Timed(policy), torch.device("cpu")
        ended = {r.seed: r.length for r, _ in run_wave(timed, pool, plans, range(k), instruction, cpu)}
        lengths = [ended[plan.seed] for plan in plans]
        replay = Replay(timed.waves[-1])  # the policy's actions, per step (k, A)
        _wave_seconds(replay, pool, plans, instruction)  # the observations the policy saw
        best: dict[str, float] = {}
        situ = 0.0
        for _ in range(repeats):
            timed.seconds = 0.0
            runs = {
                "bare, zero actions": _bare_seconds(bare, plans, lengths),
                "bare, policy's actions": _bare_seconds(bare, plans, lengths, replay.actions),
                "eval, actions played back (no policy)": _wave_seconds(
                    Replay(replay.actions), pool, plans, instruction
                ),
                "eval, policy": _wave_seconds(timed, pool, plans, instruction),
                "the policy alone, same observations": _policy_seconds(policy, replay.obs, instruction),
            }
            if runs["eval, policy"] < best.get("eval, policy", np.inf):
                situ = timed.seconds
            best = {name: min(t, best.get(name, np.inf)) for name, t in runs.items()}
        totals = {name: totals.get(name, 0.0) + t for name, t in best.items()}
        in_situ, calls = in_situ + situ, calls + len(replay.obs)
    steps = "; ".join(f"{name} {t / totals['bare, zero actions']:.2f}" for name, t in totals.items())
    print(f"one worker, {k} envs, in this process, time against bare with zero actions: {steps}")
    alone = totals["the policy alone, same observations"]
    print(
        f"  the policy: {1e3 * in_situ / calls:.2f} ms a call between the environments' steps, "
        f"{1e3 * alone / calls:.2f} ms a call on the same observations one after the other"
    )


def compare(
    checkpoints: list[str], tasks: list[str], suite: str, n: int, h: int, w: int, k: int, repeats: int
):
    """Several trained policies' evaluation speed against the first's (see the module's doc)."""
    policies = [(path, *trained_policy(path)) for path in checkpoints]
    print(
        f"{len(policies)} policies; {len(tasks)} task(s) x {n} episodes, horizon {h}, "
        f"{w} workers x {k} envs, torch {torch.__version__}, {repeats} repeats"
    )
    runs = []  # per repeat: {path: (eval steps/s, bare steps/s on its episodes, ms per call)}
    for _ in range(repeats):
        total = {path: [0, 0.0, 0, 0.0, 0.0] for path, *_ in policies}  # steps, s, bare steps, bare s, ms
        for task in tasks:
            for path, policy, spec in policies:
                common = dict(suite=suite, envs_per_worker=k)
                e = eval_run(policy, spec, task, n, h, w, **common)
                s = eval_run(policy, spec, task, n, h, w, lockstep=True, **common)
                bare, _ = bare_rates(suite, s[4], s[5], h, w, k, variants=("same episodes",))
                t = total[path]
                t[0], t[1] = t[0] + e[0], t[1] + e[1]
                t[2], t[3] = t[2] + bare["same episodes"][0], t[3] + bare["same episodes"][1]
                t[4] += s[3] / len(tasks)
        runs.append({path: (t[0] / t[1], t[2] / t[3], t[4]) for path, t in total.items()})

    ref = policies[0][0]
    print(
        "| policy | eval env-steps/s (median) | / the first | / bare, its episodes "
        "| predict_action ms/call (lock-step) |"
    )
    print("|---|---:|---|---|---:|")
    for path, policy, _ in policies:
        name = f"{getattr(policy.config, 'name', type(policy).__name__)} ({path})"
        rate = float(np.median([r[path][0] for r in runs]))
        first = median_range([r[path][0] / r[ref][0] for r in runs])
        bare = median_range([r[path][0] / r[path][1] for r in runs])
        ms = float(np.median([r[path][2] for r in runs]))
        print(f"| {name} | {rate:.0f} | {first} | {bare} | {ms:.2f} |")


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
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="CHECKPOINT",
        help="instead: these trained policies against the first, in the same waves (see compare)",
    )
    p.add_argument(
        "--one-worker",
        action="store_true",
        help="instead: what one worker's time goes to, measured in this process (see one_worker)",
    )
    args = p.parse_args(argv)

    suite = load_suite(args.suite)
    tasks = suite.resolve_tasks(args.tasks)
    if args.compare:
        if args.workers < 2:
            sys.exit("--workers must be at least 2 (the bare reference runs worker processes)")
        n = args.episodes or args.workers * args.envs_per_worker
        k = args.envs_per_worker
        compare(args.compare, tasks, args.suite, n, args.horizon, args.workers, k, args.repeats)
        return 0
    if args.checkpoint:
        policy, spec = trained_policy(args.checkpoint)
        which = f"trained policy from {args.checkpoint}"
    else:
        policy, spec, which = fresh_policy(tasks, args.suite)
    zero = ZeroPolicy(spec.action_dim)
    h, w, k = args.horizon, args.workers, args.envs_per_worker
    if args.one_worker:
        one_worker(policy, spec, args.suite, tasks, k, h, args.repeats)
        return 0
    n = args.episodes or w * k
    if w < 2:
        sys.exit("--workers must be at least 2 (the bare reference runs worker processes)")
    print(
        f"{which}; {len(tasks)} task(s) x {n} episodes, horizon {h}, {w} workers x {k} envs, "
        f"torch {torch.__version__}, {args.repeats} repeats (rates: the best)"
    )

    names = (
        "bare, same episodes",
        "bare, in the workers",
        "bare, policy's actions",
        "bare, to the horizon",
        "bare, in the workers, to the horizon",
        "bare, random actions",
        "eval, zero policy",
        "eval, policy, lock-step",
        "eval, policy",
    )
    # Task by task, every loop back to back, so that a comparison is made minutes apart at most
    # (this VM's speed drifts); per repeat, the rates over every task.
    runs = []  # per repeat: {name: (steps/s, start-up s, predict_action ms per call)}
    for _ in range(args.repeats):
        total = {name: [0, 0.0, 0.0, 0.0] for name in names}  # steps, seconds, start-up, ms
        for task in tasks:
            common = dict(suite=args.suite, envs_per_worker=k)
            e = eval_run(policy, spec, task, n, h, w, **common)
            s = eval_run(policy, spec, task, n, h, w, lockstep=True, **common)
            z = eval_run(zero, spec, task, n, h, w, **common)
            bare, startup = bare_rates(args.suite, s[4], s[5], h, w, k)
            parts = {f"bare, {variant}": (*v, startup, 0.0) for variant, v in bare.items()}
            parts |= {
                "eval, zero policy": z[:3] + (0.0,),
                "eval, policy, lock-step": s[:4],
                "eval, policy": e[:3] + (0.0,),
            }
            for name, (steps, seconds, up, ms) in parts.items():
                t = total[name]
                t[0], t[1], t[2], t[3] = t[0] + steps, t[1] + seconds, t[2] + up, t[3] + ms / len(tasks)
        runs.append({name: (t[0] / t[1], t[2], t[3]) for name, t in total.items()})
    best = {name: max((r[name] for r in runs), key=lambda v: v[0]) for name in names}

    envs = min(w * k, n)
    for name, (sps, startup, ms) in best.items():
        extra = f", predict_action {ms:.2f} ms/call for {envs} envs" if ms else ""
        print(f"  {name:<36} {sps:6.0f} env-steps/s   (start-up {startup:.1f} s{extra})")

    def each(a: str, b: str) -> list[float]:
        """a / b in every repeat (each repeat's own pair), sorted."""
        return sorted(r[a][0] / r[b][0] for r in runs)

    def ratio(a: str, b: str) -> str:
        """a / b: the median over the repeats [lowest, highest], and best / best."""
        v = each(a, b)
        return f"{median_range(v)} over {len(v)} repeats, best/best {best[a][0] / best[b][0]:.2f}"

    target = float(np.median(each("eval, policy", "bare, same episodes")))
    verdict = "meets" if target >= TARGET else "BELOW"
    comparisons = [
        (
            f"eval-policy / bare, same episodes (the target, {TARGET}: {verdict})",
            "eval, policy",
            "bare, same episodes",
        ),
        (
            "eval-policy / bare in the workers (the stricter reference)",
            "eval, policy",
            "bare, in the workers",
        ),
        ("eval lock-step / bare, same episodes", "eval, policy, lock-step", "bare, same episodes"),
        (
            "eval lock-step / bare with the policy's actions",
            "eval, policy, lock-step",
            "bare, policy's actions",
        ),
        (
            "a moving arm: bare with the policy's actions / zero actions",
            "bare, policy's actions",
            "bare, same episodes",
        ),
        (
            "machinery: eval zero policy / bare in the workers to the horizon",
            "eval, zero policy",
            "bare, in the workers, to the horizon",
        ),
        ("policy in the workers / lock-step", "eval, policy", "eval, policy, lock-step"),
    ]
    for label, a, b in comparisons:
        print(f"{label}: {ratio(a, b)}")
    # The lock-step runs the policy while the workers wait: its time adds to every step.
    bare_ms = 1e3 * envs / best["bare, same episodes"][0]  # wall ms per lock-step of every environment
    policy_ms = best["eval, policy, lock-step"][2]
    print(
        f"lock-step, per step of {envs} envs: bare {bare_ms:.2f} ms, policy {policy_ms:.2f} ms while the "
        f"workers wait -> at best {bare_ms / (bare_ms + policy_ms):.2f} of bare"
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
                videos=Videos(episodes=v, folder=tmp, cameras=(cam,)),
            )
        episodes = v * len(tasks)
        extra = (video[2] - video[1]) - (plain[2] - plain[1])  # wall time past start-up
        frames = episodes * (h + 1)
        print(
            f"rendering cost of video episodes ({cam} rendered at {Videos().size} px for the video, "
            f"the policy's observations at {spec.image_size or 84} px, MP4): "
            f"{plain[0]:.0f} -> {video[0]:.0f} env-steps/s; +{extra / episodes:.2f} s per episode, "
            f"{1e3 * extra / frames:.1f} ms per frame (render, caption, encode)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
