"""Scripted experts for the robosuite tasks (robosuite ships none): phase controllers on the
end effector, written here.

Each moves the gripper through a few phases (above the object, down, close, up, over the
target, down, open), steering with OSC_POSE position deltas proportional to the error
(:func:`towards`) and leaving the orientation alone; a phase ends when the gripper is close
enough to its target or after a fixed count of steps. They read object poses from robosuite's
own observation (:meth:`RobosuiteEnv.positions`) and start again at every reset.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

OPEN, CLOSE = -1.0, 1.0
FULL_SCALE = 0.05
"""Metres of end-effector motion an action of 1 asks for (the OSC_POSE controller's output_max)."""


def towards(eef: np.ndarray, target: np.ndarray, grip: float, gain: float = 1.0) -> np.ndarray:
    """The action (7,) moving the end effector towards ``target``, orientation held."""
    action = np.zeros(7, dtype=np.float32)
    action[:3] = np.clip(gain * (target - eef) / FULL_SCALE, -1.0, 1.0)
    action[6] = grip
    return action


class PhaseExpert:
    """Runs ``phases`` in order, each ``(name, target(env) -> (xyz, grip), done(eef, target,
    steps in the phase) -> bool)``; the last runs until the episode ends."""

    def __init__(self, env, phases: list[tuple[str, Callable, Callable]]) -> None:
        self.env, self.phases = env, phases
        self.phase, self.steps_in_phase, self.episode = 0, 0, None

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.episode != self.env.episode:  # reset since the last call: start again
            self.phase, self.steps_in_phase, self.episode = 0, 0, self.env.episode
        eef = np.asarray(self.env.positions()["robot0_eef_pos"], dtype=np.float64)
        while True:
            _, target_fn, done_fn = self.phases[self.phase]
            target, grip = target_fn(self.env)
            last = self.phase == len(self.phases) - 1
            if last or not done_fn(eef, target, self.steps_in_phase):
                break
            self.phase, self.steps_in_phase = self.phase + 1, 0
        self.steps_in_phase += 1
        return towards(eef, target, grip)


def near(tolerance: float, xy_only: bool = False) -> Callable:
    def done(eef: np.ndarray, target: np.ndarray, steps: int) -> bool:
        error = (eef - target)[:2] if xy_only else eef - target
        return bool(np.linalg.norm(error) < tolerance)

    return done


def after(n: int) -> Callable:
    return lambda eef, target, steps: steps >= n


def _pos(name: str) -> Callable:
    return lambda env: np.asarray(env.positions()[name], dtype=np.float64)


def grasp_phases(obj: Callable, held: dict[str, np.ndarray], reach: float = 0.01) -> list:
    """Above the object, down onto it (within ``reach`` metres: the fingers may touch the floor
    first), close; where the gripper closed goes into ``held["at"]`` for the phases after."""

    def grasp(env):
        held["at"] = np.asarray(env.positions()["robot0_eef_pos"], dtype=np.float64)
        return held["at"], CLOSE

    return [
        ("above", lambda env: (obj(env) + [0.0, 0.0, 0.08], OPEN), near(0.01)),
        ("down", lambda env: (obj(env) + [0.0, 0.0, -0.005], OPEN), near(reach)),
        ("close", grasp, after(8)),
    ]


def pick_and_place(
    obj: Callable, goal: Callable, lift: float, release_height: float, reach: float = 0.01
) -> list:
    """The grasp (:func:`grasp_phases`), up ``lift`` metres, over ``goal(env)``, down to
    ``release_height`` above it, open, and back up."""
    held: dict[str, np.ndarray] = {}

    def over_goal(env):
        target = goal(env)
        return np.array([target[0], target[1], held["at"][2] + lift]), CLOSE

    return [
        *grasp_phases(obj, held, reach),
        ("up", lambda env: (held["at"] + [0.0, 0.0, lift], CLOSE), near(0.02)),
        ("over", over_goal, near(0.01, xy_only=True)),
        ("lower", lambda env: (goal(env) + [0.0, 0.0, release_height], CLOSE), near(0.01)),
        ("open", lambda env: (goal(env) + [0.0, 0.0, release_height], OPEN), after(6)),
        ("away", lambda env: (goal(env) + [0.0, 0.0, release_height + 0.1], OPEN), after(1_000_000)),
    ]


def lift_phases() -> list:
    """The grasp of the cube, then up 0.25 m until the episode ends."""
    held: dict[str, np.ndarray] = {}
    return [
        *grasp_phases(_pos("cube_pos"), held),
        ("up", lambda env: (held["at"] + [0.0, 0.0, 0.25], CLOSE), after(1_000_000)),
    ]


def make_expert(task: str, env) -> Callable[[dict[str, np.ndarray]], np.ndarray]:
    """The scripted expert of ``task`` acting in ``env`` (a :class:`RobosuiteEnv`)."""
    if task == "Lift":
        phases = lift_phases()
    elif task == "PickPlaceCan":
        raw = env._env

        def bin_of_can(env):
            return np.asarray(raw.target_bin_placements[raw.object_to_id["can"]], dtype=np.float64)

        phases = pick_and_place(_pos("Can_pos"), bin_of_can, lift=0.15, release_height=0.12, reach=0.02)
    elif task == "Stack":
        phases = pick_and_place(_pos("cubeA_pos"), _pos("cubeB_pos"), lift=0.1, release_height=0.05)
    else:
        raise ValueError(f"no scripted expert for robosuite task {task!r}")
    return PhaseExpert(env, phases)
