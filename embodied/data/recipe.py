"""The settings of a collection, :class:`CollectConfig`: what a recipe under ``datasets/recipes/``
holds and ``embodied-data collect`` takes as flags (:mod:`embodied.data.collect` runs them).

Apart from the collection, which imports the simulators, so that ``embodied-data collect --help``
lists them at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embodied.keys import IMAGE_SIZE
from embodied.limits import MAX_EPISODE_STEPS, MAX_WORKERS, check_image_side, check_range
from embodied.seeds import EVAL_SEED_START

VALID_FRACTION = 0.1
"""The share of demos in the valid split: collect's default (``--valid-fraction``), and the split
made at read time of a file without ``/mask`` (:func:`embodied.data.files.split_names`)."""


@dataclass
class CollectConfig:
    suite: str = "metaworld"
    """Simulation suite (a spec under envs/)."""
    tasks: list[str] = field(default_factory=lambda: ["quick"])
    """Task names or named sets (mt10, mt50, quick)."""
    episodes: int = 50
    """Demonstrations to keep per task."""
    cameras: list[str] = field(default_factory=list)
    """Camera streams to record; the first is the observer camera used for recognition. Empty:
    the suite's observer camera (Meta-World: corner; robosuite: agentview)."""
    image_size: int = IMAGE_SIZE
    """Side of the square camera images, in pixels (8 to 1024)."""
    mesh_detail: str = "full"
    """How the cameras draw meshes: ``full`` (the suite's own look) or ``low`` (large meshes
    simplified: small frames 3-5x cheaper, about 1.2/255 off per pixel; ``embodied.sim.meshes``).
    Recorded in each file's ``env_args.env_kwargs``, from which replay and evaluation rebuild
    the environment."""
    seed: int = 0
    """First episode seed; episode i of a task uses seed + i."""
    out: str = ""
    """Output folder; one <task>.hdf5 per task. Empty: datasets/<suite>."""
    workers: int = 2
    """Worker processes (one task per worker at a time; 1 to 256)."""
    keep_failures: bool = False
    """Also keep episodes where the expert failed (marked success=0)."""
    next_obs: bool = False
    """Also store ``next_obs/<key>``, the observation after each step (``obs`` shifted by one, with
    the observation after the last step at the end), which robomimic's offline-RL algorithms
    (BCQ, CQL, IQL) read."""
    max_attempts: int = 3
    """Give up on a task after max_attempts x episodes tries."""
    action_noise: float = 0.0
    """Std of Gaussian noise added to the expert's actions (recorded as executed)."""
    valid_fraction: float = VALID_FRACTION
    """Share of demos in mask/valid."""
    horizon: int = 0
    """Episode step limit (at most 10000); 0 uses the task's default horizon from the suite spec."""

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"episodes must be at least 1, got {self.episodes}")
        check_image_side("image_size", self.image_size)
        from embodied.sim.meshes import MESH_DETAILS  # the simulator: when a collection is set up

        if self.mesh_detail not in MESH_DETAILS:
            raise ValueError(
                f"mesh_detail must be one of {', '.join(MESH_DETAILS)}, got {self.mesh_detail!r}"
            )
        check_range("workers", self.workers, 1, MAX_WORKERS)
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0.0 <= self.action_noise < float("inf"):  # NaN fails too
            raise ValueError(f"action_noise must be a finite number >= 0, got {self.action_noise}")
        check_range("horizon (0: the task's default)", self.horizon, 0, MAX_EPISODE_STEPS)
        if not 0.0 <= self.valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must be in [0, 1), got {self.valid_fraction}")
        if self.seed < 0 or self.seed + self.episodes * self.max_attempts > EVAL_SEED_START:
            raise ValueError(f"collection seeds must stay in [0, {EVAL_SEED_START}) (evaluation seeds)")
