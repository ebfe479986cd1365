"""The range of every size a user can set, in one place, each checked before any work starts.

A size past its range does not fail where it is set but minutes later, far away and in many
lines: a 100000-pixel camera ends in an EGL error, a 100000-frame clip reads for ever at step 0,
a recognizer twelve stages deep allocates 24 GB before its first step. The bounds are wide
enough for every preset and well past what this project trains (64-256 px frames, 8-16 frame
clips, 2-4 stages); what a machine cannot hold inside them is refused by the memory estimate
(:mod:`embodied.train.memory`).
"""

from __future__ import annotations

from pathlib import Path

MIN_IMAGE_SIDE = 8
MAX_IMAGE_SIDE = 1024
"""Side in pixels of any frame rendered or resampled: camera images, rollout and demo videos, the
recognizer's input (one 1024 px RGB frame is 3 MiB; an episode of them is gigabytes)."""
MAX_CLIP_LEN = 256
"""Frames in an observation clip (clips of 8-16 frames are what recognizers train on)."""
MAX_HORIZON_STEPS = 256
"""Observations in a policy's history, actions in its chunk (ACT uses 100)."""
MAX_STRIDE = 64
"""Steps between a clip's frames."""
MAX_BATCH = 1 << 16
"""Samples in a batch."""
MAX_WIDTH = 8192
"""Channels, hidden units or embedding width of any layer."""
MAX_DEPTH = 64
"""Layers, stages or blocks of any model part (width doubles per conv3d stage, which
:data:`MAX_CONV3D_DEPTH` bounds)."""
MAX_CONV3D_DEPTH = 8
"""Stages of the conv3d recognizer: each halves the frame and doubles the channels, so stage 9
of a 16-wide stem would have 4096 channels on a frame smaller than a pixel."""
MAX_WORKERS = 256
"""Worker processes of any pool."""
MAX_FPS = 1000
"""Frames per second of a video or export."""
MAX_EPISODE_STEPS = 10000
"""Steps of an episode (Meta-World's tasks take 150-500)."""
MAX_ENVS_PER_WORKER = 256
"""Environments one worker process steps."""
MAX_SEED = 2**32 - 1
"""Largest seed of training or evaluation: NumPy's legacy seeding and the simulators' take
unsigned 32-bit seeds (torch's own goes to 2**64 - 1, and a negative one is refused deep inside)."""
MAX_STEPS = 10**9
"""Optimiser steps of a run, and any step count or interval of it (a billion steps at a
millisecond each is eleven days)."""
MAX_EPISODES = 100_000
"""Evaluation episodes per task (Meta-World's protocol runs 50; a million would take days)."""
MAX_BENCH_SEEDS = 1000
"""Training seeds of a benchmark (the protocol asks for at least 5; each seed is a run of every
method, so a thousand is already thousands of runs)."""
MAX_THREADS = 1024
"""CPU threads per operation (OpenMP's runtime fails to allocate its team far above this)."""


def check_range(name: str, value: int, low: int, high: int) -> None:
    """Refuse ``value`` outside [``low``, ``high``] with a ValueError naming ``name`` and the range
    (configs turn it into one line naming the file or flag)."""
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def check_image_side(name: str, value: int, zero_ok: bool = False) -> None:
    """A frame side: in [:data:`MIN_IMAGE_SIDE`, :data:`MAX_IMAGE_SIDE`] (or 0 with ``zero_ok``, where
    0 means another size: the data's, the observations')."""
    if not (zero_ok and value == 0):
        check_range(name, value, MIN_IMAGE_SIDE, MAX_IMAGE_SIDE)


def available_memory() -> int | None:
    """Bytes of memory this process could still allocate: the kernel's ``MemAvailable``, or less
    where a cgroup (a container, a SLURM job) limits it; None where neither can be read."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            found.append(max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None
