"""Scripted experts for the robosuite tasks (robosuite ships none): phase controllers on the
end effector, written here.

Each moves the gripper through a few phases (above the object, down, close, up, over the
target, down, open), steering with OSC_POSE position deltas proportional to the error
(:func:`towards`); a phase ends when the gripper is close enough to its target or after a fixed
count of steps. Only the square nut needs the gripper turned (about the vertical: onto the
nut's handle, then the nut square to its peg); elsewhere the orientation is left alone. They
read object poses from robosuite's own observation (:meth:`RobosuiteEnv.positions`) and start
again at every reset.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

OPEN, CLOSE = -1.0, 1.0
FULL_SCALE = 0.05
"""Metres of end-effector motion an action of 1 asks for (the OSC_POSE controller's output_max)."""
FULL_TURN = 0.5
"""Radians of end-effector rotation an action of 1 asks for."""
TURN_TOLERANCE = 0.05
"""Radians about the vertical a turning phase may be off when it ends."""


def towards(
    eef: np.ndarray, target: np.ndarray, grip: float, turn: float = 0.0, gain: float = 1.0
) -> np.ndarray:
    """The action (7,) moving the end effector towards ``target`` and turning it ``turn``
    radians about the vertical (the controller's base frame: the world's axes)."""
    action = np.zeros(7, dtype=np.float32)
    action[:3] = np.clip(gain * (target - eef) / FULL_SCALE, -1.0, 1.0)
    action[5] = np.clip(gain * turn / FULL_TURN, -1.0, 1.0)
    action[6] = grip
    return action


class PhaseExpert:
    """Runs ``phases`` in order, each ``(name, target(env) -> (xyz, grip[, turn]), done(eef,
    target, steps in the phase) -> bool)``; a phase that turns also waits for its turn to be
    within :data:`TURN_TOLERANCE`; the last runs until the episode ends."""

    def __init__(self, env, phases: list[tuple[str, Callable, Callable]]) -> None:
        self.env, self.phases = env, phases
        self.phase, self.steps_in_phase, self.episode = 0, 0, None

    def __call__(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        if self.episode != self.env.episode:  # reset since the last call: start again
            self.phase, self.steps_in_phase, self.episode = 0, 0, self.env.episode
        eef = np.asarray(self.env.positions()["robot0_eef_pos"], dtype=np.float64)
        while True:
            _, target_fn, done_fn = self.phases[self.phase]
            target, grip, *turn = target_fn(self.env)
            turn = turn[0] if turn else 0.0
            last = self.phase == len(self.phases) - 1
            if last or not (done_fn(eef, target, self.steps_in_phase) and abs(turn) < TURN_TOLERANCE):
                break
            self.phase, self.steps_in_phase = self.phase + 1, 0
        self.steps_in_phase += 1
        return towards(eef, target, grip, turn)


def near(tolerance: float, xy_only: bool = False) -> Callable:
    def done(eef: np.ndarray, target: np.ndarray, steps: int) -> bool:
        error = (eef - target)[:2] if xy_only else eef - target
        return bool(np.linalg.norm(error) < tolerance)

    return done


def near_after(tolerance: float, n: int) -> Callable:
    """Within ``tolerance`` once ``n`` steps of the phase have passed."""
    close = near(tolerance)
    return lambda eef, target, steps: steps >= n and close(eef, target, steps)


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


def _axes(quat_xyzw: np.ndarray) -> np.ndarray:
    """(3, 3): the columns are the frame's x, y, z axes in the world (robosuite's quaternions
    are x, y, z, w)."""
    x, y, z, w = np.asarray(quat_xyzw, dtype=np.float64)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _heading(v: np.ndarray) -> float:
    return float(np.arctan2(v[1], v[0]))


def _wrap(angle: float, period: float) -> float:
    """``angle`` brought into [-period / 2, period / 2)."""
    return float((angle + period / 2) % period - period / 2)


HANDLE = np.array([0.054, 0.0, 0.0])
"""The square nut's handle in the nut's frame (robosuite's square-nut.xml: handle_site)."""


def nut_phases(env) -> list:
    """NutAssemblySquare: the fingers turned across the nut's handle (they close along the
    gripper's y axis, the handle is narrow along the nut's), the grasp, up over the peg's top,
    the nut turned square to the peg (a square: a quarter turn is the same) and its centre over
    the peg, down around it, open, up."""
    raw = env._env
    peg = np.asarray(raw.sim.data.body_xpos[raw.peg1_body_id], dtype=np.float64).copy()
    table_z = float(raw.table_offset[2])
    held: dict[str, np.ndarray] = {}

    def nut(env):
        p = env.positions()
        return np.asarray(p["SquareNut_pos"], dtype=np.float64), _axes(p["SquareNut_quat"])

    def handle(env):
        pos, axes = nut(env)
        return pos + axes @ HANDLE

    def onto_handle(env) -> float:  # fingers along the nut's y axis; either way round
        fingers = _axes(env.positions()["robot0_eef_quat"])[:, 1]
        return _wrap(_heading(nut(env)[1][:, 1]) - _heading(fingers), np.pi)

    def square_to_peg(env) -> float:  # the nut's sides along the world's axes
        return -_wrap(_heading(nut(env)[1][:, 0]), np.pi / 2)

    def over_peg(env, nut_z: float):
        """Where the gripper goes for the nut's centre to be over the peg at height ``nut_z``."""
        eef = np.asarray(env.positions()["robot0_eef_pos"], dtype=np.float64)
        pos, _ = nut(env)
        return eef + np.array([peg[0] - pos[0], peg[1] - pos[1], nut_z - pos[2]])

    def grasp(env):
        held["at"] = np.asarray(env.positions()["robot0_eef_pos"], dtype=np.float64)
        return held["at"], CLOSE

    def above_handle(env):
        return handle(env) + [0.0, 0.0, 0.08], OPEN, onto_handle(env)

    clear = table_z + 0.2  # the nut's height over the peg's top (table + 0.13)
    return [
        ("above", above_handle, near(0.01)),
        # The arm arrives fast and overshoots by up to 2 cm; the handle is 3 cm wide: wait for it.
        ("settle", above_handle, near_after(0.004, 4)),
        ("down", lambda env: (handle(env) + [0.0, 0.0, -0.005], OPEN, onto_handle(env)), near(0.01)),
        ("close", grasp, after(10)),
        ("up", lambda env: (over_peg(env, clear) * [0, 0, 1] + held["at"] * [1, 1, 0], CLOSE), near(0.02)),
        ("over", lambda env: (over_peg(env, clear), CLOSE, square_to_peg(env)), near(0.005, xy_only=True)),
        ("lower", lambda env: (over_peg(env, table_z + 0.02), CLOSE, square_to_peg(env)), after(40)),
        ("open", lambda env: (np.asarray(env.positions()["robot0_eef_pos"]), OPEN), after(8)),
        ("away", lambda env: (over_peg(env, table_z + 0.2), OPEN), after(1_000_000)),
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
    elif task == "NutAssemblySquare":
        phases = nut_phases(env)
    else:
        raise ValueError(f"no scripted expert for robosuite task {task!r}")
    return PhaseExpert(env, phases)
