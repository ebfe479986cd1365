"""embodied: mirror-neuron representation alignment for robot imitation learning in MuJoCo.

The package layout follows the pipeline: ``sim`` (suites behind one factory) -> ``data``
(scripted collection, the robomimic-format HDF5 files, the dataset reader) -> models ->
training -> evaluation -> ``cli`` (the console scripts).
"""

__version__ = "0.1.0"
