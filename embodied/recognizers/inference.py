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


def as_frames(frames) -> np.ndarray:
    """``frames`` as an (N, H, W, 3) uint8 array with N >= 1, or a ValueError saying what it is."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be (N, H, W, 3) uint8 with N >= 1, got {frames.shape} {frames.dtype}")
    return frames


def _device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def clip_probabilities(
    model: torch.nn.Module, clips: torch.Tensor | np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax of the class (K, C) and instruction (K, I) logits of clips (K, T, 3, H, W) uint8:
    the one place a recognizer is run on clips for inference.

    The model is called as a recognizer is (``model(video)`` -> ``class_logits``,
    ``instruction_logits``), in whatever mode it is in; instruction probabilities are None when
    it gives no instruction logits.
    """
    clips = torch.as_tensor(clips)
    device = _device(model)
    cls, ins = [], []
    for lo in range(0, len(clips), batch_size):
        out = model(clips[lo : lo + batch_size].to(device))
        if not isinstance(out, dict):  # a bare logits model
            out = {"class_logits": out}
        cls.append(out["class_logits"].float().softmax(-1).cpu())  # (b, C)
        if "instruction_logits" in out:
            ins.append(out["instruction_logits"].float().softmax(-1).cpu())  # (b, I)
    class_p = torch.cat(cls).numpy()
    return class_p, (torch.cat(ins).numpy() if ins else None)


def video_probabilities(
    model: torch.nn.Module,
    frames: np.ndarray,
    clip_len: int,
    stride: int,
    num_clips: int,
    size: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Class (C,) and instruction (I,) probabilities of a whole video: the softmax averaged over
    ``num_clips`` clips spread over it (:func:`video_clips`, frames resized to ``size``). The
    model runs in eval mode (centre crop, no jitter, batch-norm statistics) and is put back in
    its mode. Instruction probabilities are None for a model without instruction logits."""
    frames = as_frames(frames)
    clips = video_clips(frames, clip_len, stride, num_clips, size, _device(model))  # (K, T, 3, S, S)
    was_training = model.training
    model.eval()
    try:
        class_p, ins_p = clip_probabilities(model, clips)
    finally:
        model.train(was_training)
    return class_p.mean(0), (ins_p.mean(0) if ins_p is not None else None)


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

    ``frames``: (N, H, W, 3) uint8, e.g. one episode from the observer camera, resized to the
    size of the model's training frames (see :func:`video_probabilities`; a video shorter than
    one clip is padded by repeating its last frame). Returns ``(probabilities (num_classes,)
    float32, top class index)``, or of the instructions.
    """
    if head not in ("class", "instruction"):
        raise ValueError(f"head must be class or instruction, got {head!r}")
    class_p, ins_p = video_probabilities(model, frames, clip_len, stride, num_clips, model.spec.image_size)
    probs = class_p if head == "class" else ins_p
    if probs is None:
        raise ValueError("head 'instruction' needs a model with instruction logits")
    return probs, int(probs.argmax())


def instruction_head_trained(model) -> bool:
    """Whether ``model``'s instruction head was trained (its loss weight above 0)."""
    return getattr(getattr(model, "config", None), "instruction_loss_weight", 1.0) > 0


def top_indices(probs: np.ndarray, k: int) -> np.ndarray:
    """(N, C) probabilities -> (N, k) class indices by falling probability (ties: the lower
    index first)."""
    return np.argsort(-probs, axis=-1, kind="stable")[:, :k]
