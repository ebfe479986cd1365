"""What a model must know about its data to be built: :class:`DataSpec`, made by the reader
(:meth:`embodied.data.reader.DemoDataset.data_spec`) and saved in every checkpoint as JSON, so a
model is rebuilt and checked without the dataset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from embodied.keys import IMAGE_SIZE


@dataclass
class DataSpec:
    """What a model is built for, read off the data: shapes, vocabularies, and the window and clip
    lengths the batches had. The reader makes it; a checkpoint keeps it, so a model is rebuilt
    and checked without the data. Not a setting: the training config's ``data`` section
    (:class:`~embodied.train.config.DataConfig`) asks for windows and clips, and the spec
    records what was read, including the three lengths both name."""

    obs_shapes: dict[str, list[int]] = field(default_factory=dict)
    """Low-dim keys -> [d]; image keys (``<camera>_image``) -> [3, H, W]."""
    action_dim: int = 0
    """Size of one action."""
    num_classes: int = 1
    """Classes in the dataset (``label`` runs over 0..num_classes-1)."""
    num_instructions: int = 1
    """Distinct instructions in the dataset (``instruction_id``)."""
    obs_horizon: int = 1
    """To: observation steps in an execution window."""
    action_horizon: int = 1
    """Ta: actions in a chunk."""
    clip_len: int = 8
    """T: frames in an observation clip."""
    image_size: int = IMAGE_SIZE
    """Side of the observer camera's square frames."""
    mesh_detail: str = "full"
    """How the data's cameras drew meshes (``embodied.sim.meshes``): evaluation renders a policy's
    observations the same way."""
    classes: list[str] = field(default_factory=list)
    """Name of each class label: the demos' ``class`` (``drawer``), or their task where the files
    have no class (format_version 1, robomimic's own files)."""
    instructions: list[str] = field(default_factory=list)
    """Text of each instruction id."""
    tasks: list[str] = field(default_factory=list)
    """Task names in the order the data first shows them. Empty in specs saved before the task
    hierarchy, whose ``classes`` were the tasks: use :attr:`task_names`."""
    task_labels: list[int] = field(default_factory=list)
    """Class label (index into ``classes``) of each task of ``tasks``."""
    task_instructions: list[int] = field(default_factory=list)
    """Instruction id (index into ``instructions``) of each task of ``tasks`` (its first demo's)."""

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> DataSpec:
        return cls(**raw)  # JSON saved before a field was added takes that field's default

    @property
    def task_names(self) -> list[str]:
        """The tasks of the data: ``tasks``, or, for a spec saved before it existed, ``classes``."""
        return list(self.tasks) if self.tasks else list(self.classes)

    def task_label(self, task: str) -> int:
        """The class label of ``task`` (old specs: its position in ``classes``)."""
        if self.tasks and len(self.task_labels) == len(self.tasks):
            return self.task_labels[self.tasks.index(task)]
        return self.classes.index(task)

    @property
    def low_dim_keys(self) -> list[str]:
        return [k for k, s in self.obs_shapes.items() if len(s) == 1]

    @property
    def image_keys(self) -> list[str]:
        return [k for k, s in self.obs_shapes.items() if len(s) == 3]
