"""Classifying a whole video with a recognizer trained on short clips."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from embodied.recognizers.base import Recognizer


def sample_clip_indices(num_frames: int, clip_len: int, stride: int, num_clips: int) -> np.ndarray:
    """(num_clips, clip_len) frame indices of clips spread uniformly over the video.

    A clip spans ``(clip_len - 1) * stride + 1`` frames. Clip starts are evenly spaced from
    the first frame to the last start that still fits, so the first clip begins the video and
    the last one ends it. A video shorter than one span gets indices past its end clipped to
    its last frame: the last frame is repeated, as if the robot held still after finishing
    (every clip is then the same one).
    """
    if num_frames < 1 or clip_len < 1 or stride < 1 or num_clips < 1:
        got = f"num_frames={num_frames}, clip_len={clip_len}, stride={stride}, num_clips={num_clips}"
        raise ValueError(f"all of these must be >= 1: {got}")
    span = (clip_len - 1) * stride + 1
    starts = np.linspace(0, max(num_frames - span, 0), num_clips).round().astype(np.int64)  # (num_clips,)
    idx = starts[:, None] + stride * np.arange(clip_len)[None, :]  # (num_clips, clip_len)
    return np.minimum(idx, num_frames - 1)


def video_clips(
    frames: np.ndarray,
    clip_len: int,
    stride: int,
    num_clips: int,
    size: int,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(N, H, W, 3) uint8 frames -> ``num_clips`` clips (K, T, 3, size, size) uint8 spread
    uniformly over the video (:func:`sample_clip_indices`; a video shorter than one clip
    repeats its last frame), each frame resized to ``size`` (bilinear, antialiased) as the
    dataset holds frames. Each needed frame is resized once, however many clips share it."""
    idx = sample_clip_indices(len(frames), clip_len, stride, num_clips)  # (K, T)
    used = np.unique(idx)
    video = torch.from_numpy(np.ascontiguousarray(frames[used])).to(device)  # (U, H, W, 3) uint8
    video = rearrange(video, "u h w c -> u c h w").float()  # (U, 3, H, W)
    if video.shape[-2:] != (size, size):
        video = F.interpolate(video, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    video = video.round().clamp(0, 255).to(torch.uint8)  # (U, 3, S, S)
    return video[torch.from_numpy(np.searchsorted(used, idx)).to(device)]  # (K, T, 3, S, S)


def classify_video(
    model: Recognizer,
    frames: np.ndarray,
    clip_len: int,
    stride: int = 1,
    num_clips: int = 4,
    head: str = "class",
) -> tuple[np.ndarray, int]:
    """Class probabilities of a video, averaged over ``num_clips`` clips, and the top class
    (with ``head="instruction"``: the instruction head's, and the top instruction).

    ``frames``: (N, H, W, 3) uint8, e.g. one episode from the observer camera. Frames are
    resized to the size of the model's training frames with ``torch.nn.functional.interpolate`` (bilinear,
    antialiased), ``num_clips`` clips of ``clip_len`` frames at ``stride`` are sampled
    uniformly over the video (see :func:`sample_clip_indices`; a video shorter than one clip is
    padded by repeating its last frame), each is classified, and the softmax probabilities are
    averaged. The model runs in eval mode (centre crop, no jitter, batch-norm statistics) and
    is put back in the mode it was in. Returns ``(probabilities (num_classes,) float32, top
    class index)``, or of the instructions.
    """
    if head not in ("class", "instruction"):
        raise ValueError(f"head must be class or instruction, got {head!r}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    clips = video_clips(
        frames, clip_len, stride, num_clips, model.spec.image_size, next(model.parameters()).device
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model.predict(clips) if head == "class" else model(clips)[f"{head}_logits"]
            probs = logits.float().softmax(dim=-1).mean(dim=0)  # (num_classes,) or (num_instructions,)
    finally:
        model.train(was_training)
    probs = probs.cpu().numpy()
    return probs, int(probs.argmax())
