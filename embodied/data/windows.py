"""Where an execution window and an observation clip sit in an episode: the index arithmetic the
reader serves batches with and the rollout judge reads recorded episodes with, written once.

Timeline of one window (To = 2, Ta = 4) at step t, and of one clip (T = 3, stride 2) around t::

    obs:      |t-1| t |                      the first frame repeated before the episode starts
    actions:      | t |t+1|t+2|t+3|          the last action repeated (and masked) past its end
    clip:     |s| . |s+2| . |s+4|            s = t - span // 2, kept inside the episode

All functions take arrays of B steps (episode-relative) and return integer arrays.
"""

from __future__ import annotations

import numpy as np


def observation_steps(t: np.ndarray, obs_horizon: int) -> np.ndarray:
    """(B,) -> (B, To): the steps ``t-To+1 .. t`` of each window, the first step repeated before 0."""
    return np.clip(t[:, None] - obs_horizon + 1 + np.arange(obs_horizon), 0, None)


def action_steps(t: np.ndarray, action_horizon: int) -> np.ndarray:
    """(B,) -> (B, Ta): the steps ``t .. t+Ta-1`` of each action chunk (past the end: see the mask)."""
    return t[:, None] + np.arange(action_horizon)


def clip_span(clip_len: int, stride: int) -> int:
    """Steps from a clip's first frame to its last, both included."""
    return (clip_len - 1) * stride + 1


def last_clip_start(length: np.ndarray, clip_len: int, stride: int) -> np.ndarray:
    """(B,) episode lengths -> the latest start whose clip fits (0 when none does)."""
    return np.maximum(length - clip_span(clip_len, stride), 0)


def clip_start_around(t: np.ndarray, length: np.ndarray, clip_len: int, stride: int) -> np.ndarray:
    """(B,) -> (B,): the start of the clip centred on step ``t``, kept inside the episode."""
    return np.clip(t - clip_span(clip_len, stride) // 2, 0, last_clip_start(length, clip_len, stride))


def clip_steps(start: np.ndarray, length: np.ndarray, clip_len: int, stride: int) -> np.ndarray:
    """(B,) starts -> (B, T): the frames of each clip; past an episode's end its last frame repeats."""
    return np.minimum(start[:, None] + stride * np.arange(clip_len), np.asarray(length)[..., None] - 1)
