"""``embodied-data replay``: re-simulate a demonstration from its stored states and actions, and
measure how far the simulator drifts from what the file holds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from embodied.data.files import (
    file_env,
    get_demo,
    is_int,
    open_file,
    read_dataset,
    reading,
)
from embodied.data.schema import (
    check_actions,
    check_stream,
    is_image_key,
    refuse_in,
)
from embodied.errors import UserError


@dataclass
class ReplayResult:
    path: str
    demo: str
    task: str
    seed: int
    steps: int
    max_divergence: float
    """Largest absolute difference between a replayed and a stored state, over all steps."""
    mean_divergence: float
    """Mean over steps of the per-step largest absolute state difference."""
    first_divergent_step: int | None
    """First step whose state differs by more than ``tolerance`` (None if none does)."""
    max_reward_error: float
    max_obs_error: float
    """Largest absolute difference of a replayed and a stored low-dim observation (this also
    catches a wrong task variant, e.g. a goal, that lives in the model and not in the state)."""
    stored_success: bool
    replayed_success: bool
    tolerance: float = 1e-6

    @property
    def reproduced(self) -> bool:
        return (
            self.stored_success == self.replayed_success
            and self.max_divergence <= self.tolerance
            and self.max_obs_error <= max(self.tolerance, 1e-5)  # float32 observations
        )

    def __str__(self) -> str:
        lines = [
            f"{self.path} {self.demo}: replayed {self.steps} steps of {self.task} (seed {self.seed})",
            f"  state divergence: max {self.max_divergence:.3g}, mean {self.mean_divergence:.3g}"
            + (
                ""
                if self.first_divergent_step is None
                else f" (first above {self.tolerance:g} at step {self.first_divergent_step})"
            ),
            f"  observation divergence: max {self.max_obs_error:.3g}; reward divergence: max "
            f"{self.max_reward_error:.3g}",
            f"  success: stored {int(self.stored_success)}, replayed {int(self.replayed_success)} -> "
            + ("reproduced" if self.stored_success == self.replayed_success else "NOT reproduced"),
        ]
        return "\n".join(lines)


def replay_demo(path: str | os.PathLike, demo: str, tolerance: float = 1e-6) -> ReplayResult:
    """Re-simulate ``demo`` from its seed, ``states[0]`` and its actions; compare with the file.

    ``states[t]`` is the state before action ``t``; the state after action ``t`` is compared
    with ``states[t + 1]`` (the state after the last action is not stored).
    """
    from embodied.sim import make_env

    path = Path(path)
    with open_file(path) as f, reading(path):
        g = get_demo(f, path, demo)
        recorded = file_env(f, str(path))
        states = read_dataset(g, "states", f"{path}: {demo}")
        refuse = refuse_in(path)
        # the schema's checks, as validate and training (the width the suite's robot takes too)
        actions = check_actions(g, demo, refuse, suite=recorded.suite)
        rewards = read_dataset(g, "rewards", f"{path}: {demo}") if "rewards" in g else None
        og = g.get("obs")
        obs = (
            {}
            if not isinstance(og, h5py.Group)
            else {
                k: check_stream(og[k], f"{demo}/obs/{k}", k, len(actions), refuse)
                for k in og
                if not is_image_key(k)
            }
        )
        seed = g.attrs.get("seed")
        stored_success = bool(g.attrs.get("success", False))
    if seed is None or not is_int(seed):
        raise UserError(f"{path}: {demo}: attribute seed missing or not an integer")
    if actions.ndim != 2 or states.ndim != 2 or len(actions) != len(states) or not len(actions):
        raise UserError(
            f"{path}: {demo}: actions {actions.shape} and states {states.shape} must be (T, A) and (T, S)"
        )
    suite, task = recorded.require(str(path), "to replay in")
    try:
        env = make_env(suite, task, horizon=recorded.horizon)
    except UserError as err:
        raise UserError(f"{path}: /data: env_args: {err}") from None
    try:
        first = env.reset(seed=int(seed))[0]
        if env.get_state().shape != states.shape[1:]:
            raise UserError(
                f"{path}: {demo}/states: width {states.shape[1]}, but {task} has states of "
                f"{env.get_state().shape[0]}"
            )

        def obs_error(now: dict, t: int) -> float:
            errs = [
                np.max(np.abs(now[k] - v[t]))
                for k, v in obs.items()
                if k in now and v.shape[1:] == now[k].shape
            ]
            return float(max(errs, default=0.0))

        # Where the seed's reset is the stored first state already, restoring it again would only
        # disturb what the simulator keeps outside the state (robosuite's controllers reread the
        # arm, ~1e-5 in the next controls): the replay starts from the reset as collection did.
        if not np.array_equal(env.get_state(), states[0]):
            first = env.set_state(states[0])
        obs_err = obs_error(first, 0)
        diffs = np.zeros(len(actions) - 1)
        reward_err = 0.0
        success = False
        for t, action in enumerate(actions):
            now, reward, _, _, step_info = env.step(action)
            success = success or bool(step_info["success"])
            if rewards is not None and rewards.shape == (len(actions),):
                reward_err = max(reward_err, abs(float(reward) - float(rewards[t])))
            if t + 1 < len(states):
                diffs[t] = np.max(np.abs(env.get_state() - states[t + 1]))
                obs_err = max(obs_err, obs_error(now, t + 1))
    finally:
        env.close()
    above = np.flatnonzero(diffs > tolerance)
    return ReplayResult(
        path=str(path),
        demo=demo,
        task=task,
        seed=int(seed),
        steps=len(actions),
        max_divergence=float(diffs.max()) if len(diffs) else 0.0,
        mean_divergence=float(diffs.mean()) if len(diffs) else 0.0,
        first_divergent_step=int(above[0]) + 1 if len(above) else None,
        max_reward_error=reward_err,
        max_obs_error=obs_err,
        stored_success=stored_success,
        replayed_success=success,
        tolerance=tolerance,
    )


def replay(path: str, demo: str) -> str:
    """Re-simulate a demo open loop and report state divergence and whether success reproduces."""
    return str(replay_demo(path, demo))
