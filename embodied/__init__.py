"""embodied: mirror-neuron representation alignment for robot imitation learning in MuJoCo.

The package layout follows the pipeline: ``sim`` (suites behind one factory) -> ``data``
(scripted collection, the robomimic-format HDF5 files, the dataset reader) -> models ->
training -> evaluation -> ``cli`` (the console scripts).
"""

__version__ = "0.1.0"

# Every task of every suite as a gymnasium id, embodied/<suite>-<task> (embodied.sim.gym_ids):
# gymnasium.make reaches the adapters after `import embodied`, as Meta-World's and robosuite's do.
from embodied.sim.gym_ids import register_gym_ids  # noqa: E402

register_gym_ids()
