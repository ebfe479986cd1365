"""embodied: mirror-neuron representation alignment for robot imitation learning in MuJoCo.

The package layout follows the pipeline: ``sim`` (suites behind one factory) -> ``data``
(scripted collection, the robomimic-format HDF5 files, the dataset reader) -> models ->
training -> evaluation -> ``cli`` (the console scripts).

Importing the package imports nothing heavy (no torch, no simulator), so that the commands
answer ``--help`` and report a missing file at once. Every task of every suite is a gymnasium
id, ``embodied/<suite>-<task>``, once :mod:`embodied.sim` is imported (:mod:`embodied.sim.gym_ids`).
"""

import os
import sys
import warnings

__version__ = "0.1.0"

# Headless rendering by default: MuJoCo reads MUJOCO_GL when it is first imported, by
# embodied.sim or by a simulator (robosuite) imported after embodied.
if "mujoco" in sys.modules and "MUJOCO_GL" not in os.environ:
    warnings.warn(
        "mujoco was imported before embodied with MUJOCO_GL unset: headless rendering may fail; "
        "set MUJOCO_GL=egl or import embodied first",
        RuntimeWarning,
        stacklevel=2,
    )
os.environ.setdefault("MUJOCO_GL", "egl")
