"""Rollout videos: one or several cameras side by side, with the task, step and outcome drawn on.

Each frame is a caption strip above the camera images, scaled up by a whole factor (nearest
neighbour, so pixels stay sharp) until they are at least :data:`MIN_SIDE` pixels high::

    +------------------------------------------+
    | drawer-open-v3  seed 1000000             |   caption: task and seed,
    | step 37/120  success                     |   step and outcome (green once succeeded)
    +---------------------+--------------------+
    |   camera 1          |   camera 2         |
    +---------------------+--------------------+

The caption's text grows with the camera images (1/16 of their height, at least the 11 px of
Pillow's bitmap font), so a 256 px rendering gets a legible caption too, and shrinks where a line
would be wider than the frame (a long task name over one camera); it is drawn with
Pillow's default font (no font files needed). MP4 (H.264, yuv420p, so
frame sides are padded to even numbers) or GIF; the file is written to a temporary name
beside the target and renamed, so a video is there whole or not at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from embodied.errors import UserError

MIN_SIDE = 192
"""Camera images are scaled by a whole factor to at least this height, for legible videos."""
MAX_CAMERAS = 8
"""Cameras side by side that :func:`camera_region` looks for."""
GREEN, RED, WHITE = (80, 220, 100), (235, 80, 70), (235, 235, 235)


def scale_for(height: int) -> int:
    """The whole factor that brings ``height`` to at least :data:`MIN_SIDE`."""
    return max(1, math.ceil(MIN_SIDE / height))


def font_size(height: int) -> int:
    """Caption text size over camera images ``height`` pixels high (as shown, after scaling)."""
    return max(11, round(height / 16))


def caption_height(height: int) -> int:
    """Height of the caption strip (two lines) over camera images ``height`` pixels high as shown."""
    return 2 * round(1.3 * font_size(height)) + 6


def frame_shape(height: int, width: int, n_cameras: int) -> tuple[int, int]:
    """(H, W) of a video frame built from ``n_cameras`` images of ``height`` x ``width``."""
    s = scale_for(height)
    h, w = caption_height(height * s) + height * s, width * s * n_cameras
    return h + h % 2, w + w % 2  # even sides for yuv420p


def camera_region(height: int, width: int) -> tuple[int, int, int] | None:
    """Where the cameras lie in a (height, width) frame made by :func:`compose_frame` from square
    cameras: (top, side as shown, number of cameras); None when no such layout gives that shape."""
    for n in range(1, MAX_CAMERAS + 1):
        for shown in dict.fromkeys((width // n, (width - 1) // n)):  # unpadded first, then padded to even
            for s in range(1, min(shown, MIN_SIDE) + 1):  # the whole factor it was scaled by
                side = shown // s
                if (
                    side * s == shown
                    and scale_for(side) == s
                    and frame_shape(side, side, n) == (height, width)
                ):
                    return caption_height(shown), shown, n
    return None


Segment = tuple[str, tuple[int, int, int]]
"""A piece of caption text and its RGB colour."""


def compose_frame(images: Sequence[np.ndarray], lines: Sequence[Sequence[Segment]]) -> np.ndarray:
    """Camera images (H, W, 3) uint8 side by side under caption lines of coloured segments -> (H', W', 3)."""
    from PIL import Image, ImageDraw

    h = images[0].shape[0]
    s = scale_for(h)
    scaled = [img.repeat(s, axis=0).repeat(s, axis=1) for img in images]  # n x (H*s, W*s, 3)
    row = np.concatenate(scaled, axis=1)  # (H*s, W*s*n, 3)
    out_h, out_w = frame_shape(h, images[0].shape[1], len(images))
    top = caption_height(h * s)
    canvas = np.zeros((out_h, out_w, 3), dtype=np.uint8)
    canvas[top : top + row.shape[0], : row.shape[1]] = row
    pil = Image.fromarray(canvas)
    draw = ImageDraw.Draw(pil)
    y = 3
    for segments in lines:
        font = _font(draw, "".join(text for text, _ in segments), font_size(h * s), out_w - 8)
        x = 4
        for text, colour in segments:
            draw.text((x, y), text, fill=colour, font=font)
            x += int(draw.textlength(text, font=font))
        y += (top - 4) // 2
    return np.asarray(pil)


MIN_FONT = 7
"""The smallest caption text a line is shrunk to so that it fits the frame's width."""


def _font(draw, text: str, size: int, width: int):
    """Pillow's default font at ``size``, or smaller, down to :data:`MIN_FONT`, where ``text`` would
    run past ``width`` pixels: a long task name (``button-press-topdown-v3  seed 1000010``) over
    one camera was cut. Without FreeType, Pillow's one 11 px bitmap font."""
    from PIL import ImageFont

    try:  # a scalable font where Pillow has FreeType (Pillow >= 10.1)
        font = ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()
    while size > MIN_FONT and draw.textlength(text, font=font) > width:
        size -= 1
        font = ImageFont.load_default(size=size)
    return font


def episode_frames(
    frames: dict[str, np.ndarray],
    task: str,
    seed: int,
    steps_to_success: int | None,
    failure: str | None,
) -> Iterable[np.ndarray]:
    """The captioned video frames of an episode: frame t shows the observation after t steps.

    ``frames``: camera -> (L + 1, H, W, 3) uint8 (the initial observation and one per step).
    """
    streams = list(frames.values())
    n = len(streams[0])
    if any(len(s) != n for s in streams):
        raise ValueError(f"camera streams differ in length: {[len(s) for s in streams]}")
    steps = n - 1
    for t in range(n):
        if steps_to_success is not None and t >= steps_to_success:
            status = ("success", GREEN)
        elif t == steps and failure is not None:
            status = ("failed: no success" if failure == "horizon" else f"failed: {failure}"[:60], RED)
        else:
            status = ("", WHITE)
        lines = [[(f"{task}  seed {seed}", WHITE)], [(f"step {t}/{steps}  ", WHITE), status]]
        yield compose_frame([s[t] for s in streams], lines)


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: int = 20) -> Path:
    """Write frames (H, W, 3) uint8 as MP4 or GIF (by ``path``'s suffix), atomically."""
    import imageio.v2 as imageio

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise UserError(f"{path}: unknown video type {suffix or '(none)'}; use .mp4 or .gif")
    if fps <= 0:
        raise UserError(f"fps must be positive, got {fps}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{path}: cannot create its folder ({err.strerror or err})") from None
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.part{suffix}")  # the suffix tells imageio the format
    try:
        if suffix == ".mp4":
            written = 0
            writer = imageio.get_writer(
                tmp,
                format="FFMPEG",
                fps=fps,
                codec="libx264",
                macro_block_size=1,
                pixelformat="yuv420p",
                quality=8,
                ffmpeg_log_level="quiet",  # its failures are told below, in one line
            )
            try:
                for frame in frames:
                    writer.append_data(frame)
                    written += 1
            finally:
                # not imageio's ``with``: after an error it leaves ffmpeg running, which would make
                # the file after the clean-up below
                writer.close()
            _check_complete(tmp, written)
        else:
            imageio.mimwrite(tmp, list(frames), format="GIF", duration=1000.0 / fps, loop=0)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:  # a folder in the way, no permission, a full disk
        raise UserError(f"{path}: cannot write ({_reason(err, tmp)})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_complete(tmp: Path, frames: int) -> None:
    """Raise OSError unless the MP4 at ``tmp`` holds all ``frames``: ffmpeg that cannot write (a
    full disk) says so on its own stderr and exits, and imageio closes the writer without an error,
    so a truncated file would otherwise be renamed into place as if it were whole."""
    import imageio_ffmpeg

    try:
        found = imageio_ffmpeg.count_frames_and_secs(str(tmp))[0]
    except (RuntimeError, OSError):  # not even a header: nothing readable was written
        found = 0
    if found != frames:
        raise OSError(f"the video came out truncated, {found} of {frames} frames")


def _reason(err: BaseException, tmp: Path) -> str:
    """Why a video could not be written, in a few words: the OS's reason, else the first line of
    imageio's message (the rest is ffmpeg's whole command line), and a full disk named as such."""
    import shutil

    text = getattr(err, "strerror", None) or next((ln for ln in str(err).splitlines() if ln.strip()), "")
    try:
        full = shutil.disk_usage(tmp.parent).free < (1 << 20)
    except OSError:
        full = False
    if full and "No space left" not in text:
        text = f"No space left on device: {text}" if text else "No space left on device"
    return " ".join(text.split())[:200] or type(err).__name__


def write_episode_video(
    path: str | Path,
    frames: dict[str, np.ndarray],
    task: str,
    seed: int,
    steps_to_success: int | None,
    failure: str | None,
    fps: int = 20,
) -> Path:
    """One episode's captioned video (see :func:`episode_frames`) at ``path`` (.mp4 or .gif)."""
    return write_video(path, episode_frames(frames, task, seed, steps_to_success, failure), fps)
