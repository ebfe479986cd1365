"""Where an evaluation's policy runs (the rollout module's doc says why each): the pool of
environments (:func:`make_env_pool`), the choice between the two runners
(:func:`place_policy`), and the runners themselves: a copy of the policy in every worker
(:func:`run_in_workers`), or this process acting for every environment in lock-step
(:func:`run_lockstep`). Both hand every episode to ``finish(record, recording)`` as it ends.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
from collections.abc import Callable, Sequence

import gymnasium as gym
import torch

from embodied.errors import UserError
from embodied.eval.envs import EpisodePlan, EvalEnv, Recording
from embodied.eval.plan import RolloutPlan
from embodied.eval.pool import EnvPool, Extension
from embodied.eval.results import EpisodeRecord
from embodied.eval.waves import pickled_policy, run_wave
from embodied.sim import SUITES

Finish = Callable[[EpisodeRecord, Recording | None], None]
"""What receives each episode as it ends (:class:`~embodied.eval.results.Collector`)."""

WORKER_PRELOAD = (
    "embodied.eval.waves",
    "embodied.policies",
    *(module for suite in SUITES.values() for module in suite.worker_preload),
)
"""What the forkserver imports once for every worker: torch and the policies (for the policy
workers), the suites' environments. A worker forked from it starts without importing them
again (the second evaluation of a program on; the first starts the server)."""

START_METHOD = "forkserver"
"""How worker processes start: forked from a clean server process that has imported
:data:`WORKER_PRELOAD` once, so an evaluation after the first in a program (training's rollouts,
a benchmark) starts faster; ``spawn`` where the platform has no forkserver. Not fork: workers must
not inherit this process's GL contexts or torch's thread pools. A script that evaluates with
worker processes needs the usual ``if __name__ == "__main__":`` guard."""

TORCH_THREADS = 1
"""torch's intra-op threads in this process during an evaluation (restored after), and in each
policy worker: the workers keep the cores busy, and a small batch on a busy CPU runs far slower
with several threads than with one."""


def make_env_pool(
    suite: str, plan: RolloutPlan, env_fn: Callable[..., gym.Env], extension: Extension | None = None
) -> EnvPool:
    """``plan.num_envs`` :class:`~embodied.eval.envs.EvalEnv` s in ``plan.processes`` processes (0:
    in process), each built for its first planned episode; ``extension``: the workers' extra
    commands (the policy workers, :func:`~embodied.eval.waves.policy_commands`)."""
    fns = [
        functools.partial(
            EvalEnv,
            suite,
            first,
            plan.cameras,
            plan.image_size,
            plan.horizon,
            True,
            env_fn=env_fn,
            mesh_detail=plan.mesh_detail,
        )
        for first in plan.built
    ]
    context = START_METHOD if START_METHOD in mp.get_all_start_methods() else "spawn"
    return EnvPool(fns, plan.processes, context=context, extension=extension, preload=WORKER_PRELOAD)


def place_policy(policy, asked: bool | None, processes: int) -> tuple[torch.device, bytes | None]:
    """(the policy's device, its pickled copy for the workers or None: it runs in this process).
    ``asked``: the settings' ``policy_in_workers``; None: in the workers when there are some, the
    policy is on the CPU and it can be pickled. Call with the policy in eval mode: the workers'
    copies keep the mode they are pickled in."""
    params = list(policy.parameters()) if hasattr(policy, "parameters") else []
    device = params[0].device if params else torch.device("cpu")
    if asked and (processes == 0 or device.type != "cpu"):
        raise UserError("policy_in_workers needs worker processes (workers >= 2) and a policy on the CPU")
    blob = None
    if asked or (asked is None and processes > 0 and device.type == "cpu"):
        blob = pickled_policy(policy, required=bool(asked))
    return device, blob


def _ids(instructions: dict[str, int], plans: Sequence[EpisodePlan | None]) -> list[int]:
    """Each environment's instruction id (an idle one's is ignored)."""
    return [instructions[p.task] if p is not None else 0 for p in plans]


def run_in_workers(
    envs: EnvPool,
    plan: RolloutPlan,
    instructions: dict[str, int],
    finish: Finish,
    on_steps: Callable[[int], None] | None = None,
) -> None:
    """Each worker runs its share of every wave with its own copy of the policy, at its own pace;
    the episodes come back as they end, and ``on_steps(n)`` hears of their steps about once a
    second (:func:`~embodied.eval.waves.run_wave`)."""
    busy = []
    for w in range(envs.workers):
        share = envs.share(w)
        position = {i: j for j, i in enumerate(share)}
        jobs = []
        for plans, in_run_order in plan.waves:
            mine = [plans[i] for i in share]
            if any(p is not None for p in mine):
                order = [position[i] for i in in_run_order if i in position]
                jobs.append((mine, order, _ids(instructions, mine)))
        if jobs:
            envs.send(w, "run", jobs)
            busy.append(w)
    while busy:
        for w in envs.wait(busy):
            status, data = envs.receive(w)
            if status == "episode":
                finish(*data)
            elif status == "steps":
                if on_steps is not None:
                    on_steps(data)
            else:  # "ok": that worker has run all its episodes
                busy.remove(w)


def run_lockstep(
    policy,
    envs: EnvPool,
    plan: RolloutPlan,
    instructions: dict[str, int],
    device: torch.device,
    finish: Finish,
    on_steps: Callable[[int], None] | None = None,
) -> None:
    """This process acts for every environment at once, wave after wave."""
    for plans, in_run_order in plan.waves:
        instruction = torch.tensor(_ids(instructions, plans), dtype=torch.long, device=device)  # (N,)
        for record, recording in run_wave(policy, envs, plans, in_run_order, instruction, device, on_steps):
            finish(record, recording)


__all__ = [
    "START_METHOD",
    "TORCH_THREADS",
    "WORKER_PRELOAD",
    "make_env_pool",
    "place_policy",
    "run_in_workers",
    "run_lockstep",
]
