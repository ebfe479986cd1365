"""Batch keys, in one place (design.md, "Batches").

An execution window holds ``obs/<key>`` (B, To, d) or (B, To, 3, H, W) uint8, ``actions``
(B, Ta, A) with ``action_mask`` (B, Ta) (True for real steps, False for padding past the
episode's end), and the labels. An observation clip holds ``video`` (B, T, 3, H, W) uint8
and the same labels. A paired batch holds both, row i of each from the same episode.
"""

OBS = "obs"
"""dict of observation streams, key -> (B, To, d) float32 or (B, To, 3, H, W) uint8."""
ACTIONS = "actions"
"""(B, Ta, A) float32 action chunk, in [-1, 1]."""
ACTION_MASK = "action_mask"
"""(B, Ta) bool: True where the action is real, False where the chunk ran past the episode."""
VIDEO = "video"
"""(B, T, 3, H, W) uint8 clip from the observer camera."""
LABEL = "label"
"""(B,) int64 task class, contiguous over the dataset's tasks."""
INSTRUCTION = "instruction_id"
"""(B,) int64 instruction, contiguous over the dataset's instructions."""
EPISODE = "episode_id"
"""(B,) int64 episode index over all files of the dataset."""

IMAGE_SIZE = 84
"""Side in pixels of a camera's square images where no setting and no data say otherwise (the
common size of Meta-World's and robomimic's image observations): the one default."""
