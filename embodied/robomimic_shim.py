"""What robomimic 0.3.0 needs to roll policies out in embodied's robosuite files' environments.

robomimic's robosuite wrapper (``robomimic/envs/env_robosuite.py``) imports ``mujoco_py`` at its
top for one name, the exception class its rollouts catch
(``EnvRobosuite.rollout_exceptions``: ``mujoco_py.builder.MujocoException``). robosuite 1.5 runs on
the ``mujoco`` bindings, and mujoco_py (MuJoCo 2.1, built at install) is neither needed nor
installable beside them. Call :func:`install` before importing robomimic's environment
utilities::

    import embodied.robomimic_shim
    embodied.robomimic_shim.install()
    from robomimic.utils import env_utils   # robomimic's train.py, run_trained_agent.py, ...

The stand-in's exception is raised by nothing, so a simulator fault stops a rollout instead of
being caught and printed as a warning. Only robosuite files (``env_args.type`` 1) have an
environment robomimic can build: Meta-World files are for robomimic's training (its
``SequenceDataset`` reads them), not for its rollouts, as robomimic has no Meta-World environment
type.
"""

from __future__ import annotations

import importlib.util
import sys
import types


class MujocoException(Exception):
    """mujoco_py's simulation error; raised by nothing here."""


def stub() -> types.ModuleType:
    """A ``mujoco_py`` module holding what robomimic 0.3.0 reads of it."""
    module = types.ModuleType("mujoco_py")
    module.__doc__ = "embodied's stand-in for mujoco_py (embodied.robomimic_shim)"
    module.builder = types.SimpleNamespace(MujocoException=MujocoException)
    return module


def install() -> None:
    """Put :func:`stub` in ``sys.modules`` as ``mujoco_py``, unless a mujoco_py is importable."""
    if "mujoco_py" in sys.modules or importlib.util.find_spec("mujoco_py") is not None:
        return
    sys.modules["mujoco_py"] = stub()
