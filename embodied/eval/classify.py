"""Classify any video with a recognizer: a file (:func:`classify_file`, mp4 or gif) or frames
(:func:`classify_frames`), such as a policy's rollout, never in a dataset. The verdict
(:class:`VideoPrediction`) is the softmax averaged over clips spread over the video, as
:func:`~embodied.recognizers.classify_video` places them; a frame larger than the recognizer's
input is cropped to the region the evaluation videos give the observer camera
(:func:`eval_video_region`), else resized."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from embodied.errors import UserError
from embodied.recognizers.inference import (
    as_frames,
    instruction_head_trained,
    top_indices,
    video_probabilities,
)


class VideoPrediction(NamedTuple):
    """A video's verdict: the first three fields are (task, probability, top-k)."""

    task: str
    """The most probable task class."""
    probability: float
    """Its probability (softmax averaged over the clips)."""
    top: list[tuple[str, float]]
    """The top-k (task, probability) pairs, most probable first."""
    instruction: str | None
    """The most probable instruction; None when the instruction head was not trained."""
    instruction_probability: float | None


Crop = tuple[int, int, int, int]
"""(top, left, height, width) in pixels."""


def eval_video_region(height: int, width: int, image_size: int) -> tuple[Crop, int | None] | None:
    """Where the first camera's image lies in a frame of an ``embodied-eval`` rollout video.

    Those frames are a caption strip above the camera images, rendered at the video's size or
    scaled up by a whole factor (see :mod:`embodied.video`). If a (height, width) frame has that
    layout (one or more cameras side by side, of any size), returns the first image's crop and
    the whole factor between it and ``image_size`` (None when it is not a multiple); else None.
    """
    from embodied.video import camera_region

    found = camera_region(height, width)
    if found is None:
        return None
    top, side, _ = found
    return (top, 0, side, side), (side // image_size if side % image_size == 0 else None)


def _crop_frames(frames: np.ndarray, image_size: int, crop: Crop | str | None) -> np.ndarray:
    """The part of each frame (N, H, W, 3) the recognizer should see (see :func:`classify_frames`)."""
    h, w = frames.shape[1:3]
    if crop == "auto":
        found = eval_video_region(h, w, image_size)
        if found is None:
            return frames
        (top, left, side, _), scale = found
        if scale is None:  # rendered at its own size (--video-size): resized like any frame below
            return frames[:, top : top + side, left : left + side]
        image = frames[:, top : top + side, left : left + side].astype(np.float32)  # (N, S*s, S*s, 3)
        # undo the whole-factor upscaling by averaging each s x s block (exact on lossless video,
        # and it averages out compression noise)
        blocks = image.reshape(len(frames), image_size, scale, image_size, scale, 3)
        return blocks.mean(axis=(2, 4)).round().astype(np.uint8)  # (N, S, S, 3)
    if crop is None or crop == "none":
        return frames
    if isinstance(crop, str):
        raise ValueError(f"crop must be 'auto', 'none', None or (top, left, height, width), got {crop!r}")
    top, left, ch, cw = (int(v) for v in crop)
    if top < 0 or left < 0 or ch < 1 or cw < 1 or top + ch > h or left + cw > w:
        raise UserError(
            f"crop (top {top}, left {left}, height {ch}, width {cw}) is outside the {h} x {w} frames"
        )
    return frames[:, top : top + ch, left : left + cw]


@torch.no_grad()
def classify_frames(
    model: torch.nn.Module,
    frames: np.ndarray,
    spec,
    *,
    clip_stride: int,
    num_clips: int = 5,
    top_k: int = 5,
    crop: Crop | str | None = "auto",
) -> VideoPrediction:
    """Classify a video given as frames (N, H, W, 3) uint8, e.g. a policy's rollout.

    ``spec``: the model's :class:`~embodied.models.common.DataSpec` (class and instruction names,
    clip length, frame size); ``clip_stride``: the training stride (``config.data.clip_stride``
    of the checkpoint). One frame per environment step, as the demonstrations were recorded.

    ``crop``: which part of each frame to use. ``"auto"``: a frame with the exact layout of an
    ``embodied-eval`` rollout video (a caption strip, cameras scaled up side by side) gives its
    first camera's image at its original size, anything else is used whole; ``None`` or
    ``"none"``: the whole frame; or ``(top, left, height, width)``. The frames are then resized
    to the training frame size (bilinear, antialiased; a non-square frame is squashed, not
    cropped), and ``num_clips`` clips are spread over the video and their softmax averaged, as
    :func:`evaluate_recognizer` does for a video (a video shorter than a clip's span repeats
    its last frame). The model runs in eval mode and is put back in its mode.
    """
    size = int(spec.image_size)
    frames = _crop_frames(as_frames(frames), size, crop)  # checked before the crop reads its shape
    probs, ins = video_probabilities(model, frames, spec.clip_len, clip_stride, num_clips, size)  # (C,), (I,)
    names = list(spec.classes) or [str(i) for i in range(len(probs))]
    top = [(names[i], float(probs[i])) for i in top_indices(probs[None], min(top_k, len(probs)))[0]]
    instruction, instruction_p = None, None
    if ins is not None and instruction_head_trained(model):
        best = int(ins.argmax())
        instruction = spec.instructions[best] if best < len(spec.instructions) else str(best)
        instruction_p = float(ins[best])
    return VideoPrediction(top[0][0], top[0][1], top, instruction, instruction_p)


def read_video_file(path: str | Path) -> np.ndarray:
    """Every frame of a video file (MP4, GIF, anything imageio reads) as (N, H, W, 3) uint8.

    Grey frames are repeated to RGB, an alpha channel is dropped. A missing, unreadable or empty
    file is a :class:`~embodied.errors.UserError` naming it.
    """
    import imageio.v2 as imageio

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such video file")
    try:
        if path.suffix.lower() == ".gif":
            frames = [np.asarray(f) for f in imageio.mimread(path, memtest=False)]
        else:  # iterate: the ffmpeg reader's length may be unknown (a huge number)
            with imageio.get_reader(path) as reader:
                frames = [np.asarray(f) for f in reader]
    except Exception as err:  # imageio and its plugins raise many kinds of error for a bad file
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path}: cannot read the video ({first})") from None
    if not frames:
        raise UserError(f"{path}: the video has no frames")
    if len({f.shape for f in frames}) > 1:
        raise UserError(f"{path}: frames of different sizes")
    video = np.stack(frames)
    if video.dtype != np.uint8:
        raise UserError(f"{path}: {video.dtype} pixels; only 8-bit video is read")
    if video.ndim == 3:  # (N, H, W) grey
        video = video[..., None]
    if video.ndim != 4 or video.shape[-1] not in (1, 3, 4):
        raise UserError(f"{path}: frames of shape {video.shape[1:]} are not images")
    if video.shape[-1] == 1:
        video = np.repeat(video, 3, axis=-1)
    return np.ascontiguousarray(video[..., :3])


def classify_file(
    model: torch.nn.Module,
    path: str | Path,
    spec,
    *,
    clip_stride: int,
    num_clips: int = 5,
    top_k: int = 5,
    crop: Crop | str | None = "auto",
) -> VideoPrediction:
    """Classify a video file (see :func:`read_video_file` and :func:`classify_frames`)."""
    frames = read_video_file(path)
    return classify_frames(
        model, frames, spec, clip_stride=clip_stride, num_clips=num_clips, top_k=top_k, crop=crop
    )


__all__ = ["VideoPrediction", "classify_file", "classify_frames", "eval_video_region", "read_video_file"]
