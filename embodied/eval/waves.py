"""The lock-step waves of an evaluation (:func:`run_wave`; the module doc of
:mod:`embodied.eval.rollout` says why waves) and the policy workers that run them on their own
(:func:`policy_commands`): which environment runs which episode (:func:`place`), the policy's
input, each episode's bookkeeping until it ends."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence

import gymnasium as gym
import numpy as np
import torch

from embodied.errors import UserError, one_line
from embodied.eval.envs import EpisodePlan, Recording
from embodied.eval.pool import EnvPool
from embodied.eval.results import HORIZON, EpisodeRecord

POLICY_ROWS = 16
"""Every policy call of an evaluation has a multiple of this many rows: the observations of a
wave are padded with copies of the last row, and the padding's actions are dropped. A matrix
product's result for one row depends on how many rows it is computed with (1, 2 and 16 rows
gave a bc_mlp row 4-6e-8 apart; 16, 32, 48 and 64 rows, at any position, the same bits), and
an episode amplifies such a difference, so without the padding an episode's return depended on
how many environments shared its batch (``--workers``, ``envs_per_worker``). 16 is the default
environments per worker, so the CPU's usual batches are not enlarged; one environment in
process pays 16 rows a call (a little more time a call)."""


def _to_tensors(obs: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Stacked observations -> the policy's input, padded to a multiple of :data:`POLICY_ROWS`
    rows: (M, d) float32; images (N, H, W, 3) -> (M, 3, H, W)."""
    out = {}
    for key, value in obs.items():
        pad = -len(value) % POLICY_ROWS
        if pad:
            value = np.concatenate([value, np.repeat(value[-1:], pad, axis=0)])  # (M, ...)
        x = torch.from_numpy(np.ascontiguousarray(value))
        if x.dim() == 4 and x.shape[-1] == 3:
            x = x.permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
        out[key] = x.to(device)
    return out


def env_key(plan: EpisodePlan) -> tuple:
    """What an environment is built for (:class:`~embodied.eval.envs.EvalEnv` rebuilds on a change)."""
    return plan.task, plan.record


def place(
    episodes: Sequence[EpisodePlan], built: Sequence[tuple]
) -> tuple[list[EpisodePlan | None], list[int]]:
    """Assign a wave's ``episodes`` to environments: each to one already built for its task and
    cameras when there is one (building a Meta-World environment costs as much as a few hundred
    steps), the rest to the remaining environments. Returns the episode of each environment
    (None: it sits the wave out) and the environment of each episode.

    Environments are taken in index order, which alternates between workers (environment i
    lives in worker i % W), so a part-filled wave still spreads over the workers. Which
    environment runs an episode does not change its outcome: the seed fixes it.
    """
    slots: list[EpisodePlan | None] = [None] * len(built)
    where: list[int | None] = [None] * len(episodes)
    free = list(range(len(built)))
    for k, episode in enumerate(episodes):
        match = next((i for i in free if built[i] == env_key(episode)), None)
        if match is not None:
            slots[match], where[k] = episode, match
            free.remove(match)
    for k in [k for k, w in enumerate(where) if w is None]:
        i = free.pop(0)
        slots[i], where[k] = episodes[k], i
    return slots, where


class _Wave:
    """Per-environment bookkeeping of one wave."""

    def __init__(self, plans: list[EpisodePlan | None], in_run_order: Sequence[int]) -> None:
        n = len(plans)
        self.plans = plans
        # Environments in the order their episodes run.
        self.in_run_order = list(in_run_order)
        self.done = np.array([p is None for p in plans])  # idle slots are done from the start
        self.ret = np.zeros(n)
        self.length = np.zeros(n, dtype=np.int64)
        self.success_step: list[int | None] = [None] * n
        self.error: list[str | None] = [None] * n
        self.reported = np.zeros(n, dtype=bool)

    def start(self, infos: list[dict]) -> None:
        for i, info in enumerate(infos):
            err = info.get("error")
            if err is not None and not self.done[i]:
                self.error[i], self.done[i] = str(err), True

    def update(self, stepped: np.ndarray, reward, terminated, truncated, infos: list[dict]) -> None:
        """The step of environments ``stepped`` (those whose episode was running); row j of the
        results is environment ``stepped[j]``."""
        for j, i in enumerate(stepped):
            info = infos[j]
            err = info.get("error")
            if err is not None:  # the step did not complete: it is not counted
                self.error[i], self.done[i] = str(err), True
                continue
            self.ret[i] += float(reward[j])
            self.length[i] += 1
            if self.success_step[i] is None and info.get("success"):
                self.success_step[i] = int(self.length[i])
            if terminated[j] or truncated[j]:
                self.done[i] = True

    def ended(self, envs: EnvPool) -> list[tuple[EpisodeRecord, Recording | None]]:
        """The episodes that have ended since the last call, in run order, each with its
        recording (taken from its environment) when it was recorded."""
        new = [i for i in self.in_run_order if self.done[i] and not self.reported[i]]
        self.reported[new] = True
        wanted = [i for i in new if self.plans[i].record or self.plans[i].video or self.plans[i].keep_obs]
        recordings = dict(zip(wanted, envs.call("take_recording", wanted), strict=True)) if wanted else {}
        return [(self.record(i), recordings.get(i)) for i in new]

    def record(self, i: int) -> EpisodeRecord:
        plan = self.plans[i]
        success = self.success_step[i] is not None
        return EpisodeRecord(
            task=plan.task,
            seed=plan.seed,
            success=success,
            episode_return=float(self.ret[i]),
            length=int(self.length[i]),
            steps_to_success=self.success_step[i],
            failure=None if success else (self.error[i] or HORIZON),
            variant=None if plan.variant is None else list(plan.variant),
        )


STEPS_EVERY_S = 1.0
"""How often a wave reports the environment steps it has taken (``on_steps``): the episodes of a
wave run side by side and end together, tens of seconds after they start, so a progress bar of
episodes alone sits at 0 % and then guesses its ETA from one episode; one message a second from
each worker is nothing beside its steps."""


def run_wave(
    policy,
    envs: EnvPool,
    plans: list[EpisodePlan | None],
    in_run_order: Sequence[int],
    instruction: torch.Tensor,
    device: torch.device,
    on_steps: Callable[[int], None] | None = None,
) -> Iterator[tuple[EpisodeRecord, Recording | None]]:
    """One lock-step wave (module doc): environment ``i`` of ``envs`` runs ``plans[i]`` (None:
    it sits out) with ``instruction[i]``; yields every episode as it ends, with its recording.
    ``on_steps(n)``: the environment steps taken since its last call, about every
    :data:`STEPS_EVERY_S` and at the wave's end (together, every step of the wave)."""
    wave = _Wave(plans, in_run_order)
    unreported, last_report = 0, time.monotonic()
    obs, infos = envs.reset([{"options": {"plan": p}} for p in plans])
    wave.start(infos)
    policy.reset()
    n = len(plans)
    pad = -n % POLICY_ROWS
    instruction = torch.cat([instruction, instruction[-1:].repeat(pad)]) if pad else instruction  # (M,)
    yield from wave.ended(envs)  # those that failed at reset
    while not wave.done.all():
        with torch.inference_mode():  # a little cheaper than no_grad for a step-by-step call
            action = policy.predict_action(_to_tensors(obs, device), instruction)  # (M, A)
        action = action[:n].float().cpu().numpy()  # (N, A): the padding's actions dropped
        # Only running episodes step: an ended one keeps its last observation, and a worker
        # whose environments have all ended is not even asked.
        running = np.flatnonzero(~wave.done)
        stepped, reward, terminated, truncated, infos = envs.step(action[running], running)
        # New arrays, not an update in place: the policy may keep the tensors it was given
        # (its observation history), and those share memory with these arrays.
        obs = {key: value.copy() for key, value in obs.items()}
        for key, value in stepped.items():
            obs[key][running] = value
        wave.update(running, reward, terminated, truncated, infos)
        unreported += len(running)
        if on_steps is not None and (wave.done.all() or time.monotonic() - last_report >= STEPS_EVERY_S):
            on_steps(unreported)
            unreported, last_report = 0, time.monotonic()
        yield from wave.ended(envs)


Job = tuple[list[EpisodePlan | None], list[int], list[int]]
"""One wave of a policy worker: (its environments' episodes, their run order, instruction ids)."""


def policy_commands(policy_blob: bytes, threads: int | None, envs: list[gym.Env]) -> dict:
    """The extension (:data:`~embodied.eval.pool.Extension`) of a policy worker: ``run`` a list of
    :data:`Job` s with the worker's own copy of the policy, sending ``("episode", (record,
    recording))`` as each episode ends and ``("steps", n)`` as its environments step (the
    progress bar's)."""
    import pickle

    if threads is not None:
        torch.set_num_threads(threads)
    policy = pickle.loads(policy_blob)
    pool, cpu = EnvPool.of(envs), torch.device("cpu")

    def run(jobs: list[Job], send: Callable[[tuple], None]) -> int:
        count = 0
        for plans, in_run_order, ids in jobs:
            instruction = torch.tensor(ids, dtype=torch.long)
            steps = functools.partial(_send_steps, send)
            for episode in run_wave(policy, pool, plans, in_run_order, instruction, cpu, steps):
                send(("episode", episode))
                count += 1
        return count

    return {"run": run}


def _send_steps(send: Callable[[tuple], None], n: int) -> None:
    send(("steps", n))


def pickled_policy(policy, required: bool) -> bytes | None:
    """The policy for the workers, or None when it cannot be pickled (and need not be)."""
    import pickle

    try:
        return pickle.dumps(policy)
    except Exception as err:  # noqa: BLE001  (a policy class defined in a function, a lambda, ...)
        if required:
            reason = one_line(err, typed=True)
            raise UserError(f"policy_in_workers: the policy cannot be pickled ({reason})") from None
        return None
