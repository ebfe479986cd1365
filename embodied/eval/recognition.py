"""How well a recognizer recognizes: held-out demonstrations, early recognition, any video file.

:func:`evaluate_recognizer` reads every episode of a clip-mode
:class:`~embodied.data.reader.DemoDataset` (the ``valid`` split, ``training=False``) and
classifies clips of ``clip_len`` frames at the dataset's ``clip_stride``, all cut from that one
episode's observer stream:

- **clip level**: ``clips_per_episode`` clips with evenly spaced starts, from the episode's
  first frame to the last start that fits (duplicates dropped, so a short episode counts fewer
  clips); every clip counts once, wherever it lies in the episode;
- **video level**: the softmax averaged over ``clips_per_video`` evenly spaced clips (the
  placement of :func:`~embodied.recognizers.classify_video`), one verdict per episode; from it
  the per-class accuracy and the confusion matrix (rows: true class, columns: predicted);
- **early recognition**: for each fraction f the model sees only the first ceil(f * L) frames
  of an episode of L frames, and the video-level verdict is taken from ``clips_per_video``
  clips spread over that prefix. Recognizing an action before it ends is what makes it useful
  to a robot.

Padding (the one policy everywhere, the dataset reader's too): when the frames available (the
episode, or the prefix) are fewer than a clip's span ``(clip_len - 1) * stride + 1``, the clip's
frame indices past the last available frame are clamped to it: **the last frame is repeated**,
as if the robot held still. No clip ever takes a frame from another episode or, in early
recognition, from beyond the prefix.

Level: a recognizer says which instruction (the action: "open the drawer") and which class
(the object family: "drawer") a clip shows. With a task hierarchy (instructions not one per
class) and a trained instruction head, every number above is taken at the **instruction**
level, from the instruction head, and the class head's clip- and video-level accuracy is
reported beside it (``class_level``); otherwise (one instruction per class, or ``level="class"``)
at the class level, with the instruction head's accuracy beside it when it says more
(``instruction``). Top-k accuracy uses k = min(``top_k``, number of categories), so with 5 or
fewer top-5 is 1 by definition.

:func:`write_report` writes ``recognition.json`` (every number), ``confusion.png``,
``early_recognition.json`` (fraction -> accuracy) and ``early_recognition.png``, each
atomically. A video that was never in a dataset, such as a policy's rollout, is classified by
:mod:`embodied.eval.classify`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from embodied.errors import UserError
from embodied.fileio import write_user_file
from embodied.recognizers.inference import (
    clip_probabilities,
    instruction_head_trained,
    sample_clip_indices,
    top_indices,
)

FRACTIONS = (0.1, 0.25, 0.5, 1.0)
"""Fractions of an episode seen, for the early-recognition curve."""
FORMAT = "embodied-recognizer-report"
FORMAT_VERSION = 1
REPORT_FILES = ("recognition.json", "confusion.png", "early_recognition.json", "early_recognition.png")
"""What :func:`write_report` writes."""


# --------------------------------------------------------------------------- which frames
def prefix_length(length: int, fraction: float) -> int:
    """Frames seen after ``fraction`` of an episode of ``length`` frames: ceil(f * L), at least 1."""
    return max(1, min(length, math.ceil(fraction * length - 1e-9)))  # 1e-9: 0.1 * 30 is 3.0000000000000004


@dataclass
class ClipPlan:
    """Frame indices (K, T) into one episode of every clip the evaluation classifies."""

    clip: np.ndarray
    """Clip level: distinct evenly spaced clips over the whole episode."""
    video: np.ndarray
    """Video level: ``clips_per_video`` evenly spaced clips over the whole episode."""
    early: dict[float, np.ndarray]
    """Fraction -> ``clips_per_video`` clips within the first :func:`prefix_length` frames."""


def plan_clips(
    length: int,
    clip_len: int,
    stride: int,
    clips_per_episode: int = 10,
    clips_per_video: int = 5,
    fractions: Sequence[float] = FRACTIONS,
) -> ClipPlan:
    """The clips of an episode of ``length`` frames (see the module doc; padding repeats the last frame)."""
    clip = np.unique(sample_clip_indices(length, clip_len, stride, clips_per_episode), axis=0)
    video = sample_clip_indices(length, clip_len, stride, clips_per_video)
    early = {
        f: sample_clip_indices(prefix_length(length, f), clip_len, stride, clips_per_video) for f in fractions
    }
    return ClipPlan(clip, video, early)


# --------------------------------------------------------------------------- the report
@dataclass
class RecognizerReport:
    """Everything :func:`evaluate_recognizer` measured; :meth:`to_json` is ``recognition.json``."""

    classes: list[str]
    """Names of the categories at the reported ``level``, in id order (the model's
    ``spec.instructions`` or ``spec.classes``)."""
    camera: str | None
    """Observer camera the clips came from."""
    clip_len: int
    clip_stride: int
    clips_per_video: int
    top_k: int
    """k of the top-k numbers: min(the requested k, number of classes)."""
    clips: int
    """Clips counted at the clip level."""
    clip_accuracy: float
    """Clip-level top-1."""
    clip_topk: float
    """Clip-level top-k."""
    videos: int
    """Episodes (videos) counted at the video level."""
    video_accuracy: float
    """Video-level top-1."""
    video_accuracy_ci: list[float]
    """95 % Wilson interval of the video-level top-1."""
    video_topk: float
    """Video-level top-k."""
    per_class: dict[str, dict]
    """Class -> ``videos``, ``correct``, ``accuracy`` (video level; None without a video)."""
    confusion: list[list[int]]
    """Video-level counts: ``confusion[true][predicted]``."""
    early_recognition: list[dict]
    """Per fraction: ``fraction``, ``mean_frames`` seen, ``accuracy`` (top-1), ``topk`` (video level)."""
    instruction: dict | None = None
    """At the class level: the instruction head's ``clip_accuracy``, ``video_accuracy``, if
    instructions are not one per class and the head was trained."""
    level: str = "class"
    """What the numbers above recognise: ``instruction`` (the action) or ``class``."""
    class_level: dict | None = None
    """At the instruction level: the class head's ``clip_accuracy``, ``video_accuracy``."""

    def to_json(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, **asdict(self)}

    def early_json(self) -> dict:
        """The content of ``early_recognition.json``: fraction -> accuracy (and top-k, frames seen)."""
        return {
            "format": "embodied-early-recognition",
            "format_version": FORMAT_VERSION,
            "videos": self.videos,
            "clips_per_video": self.clips_per_video,
            "clip_len": self.clip_len,
            "clip_stride": self.clip_stride,
            "top_k": self.top_k,
            "accuracy": {str(e["fraction"]): e["accuracy"] for e in self.early_recognition},
            "topk": {str(e["fraction"]): e["topk"] for e in self.early_recognition},
            "mean_frames": {str(e["fraction"]): e["mean_frames"] for e in self.early_recognition},
        }


@torch.no_grad()
def evaluate_recognizer(
    model: torch.nn.Module,
    dataset,
    clips_per_video: int = 5,
    fractions: Sequence[float] = FRACTIONS,
    clips_per_episode: int = 10,
    top_k: int = 5,
    batch_size: int = 64,
    level: str = "auto",
) -> RecognizerReport:
    """Clip- and video-level top-1/top-k, per-category accuracy, confusion and early recognition.

    ``dataset``: a :class:`~embodied.data.reader.DemoDataset` in clip (or paired) mode, usually
    the ``valid`` split with ``training=False``, built with the model's ``classes`` (see
    :func:`open_clips`). Every episode is read once; each distinct clip is classified once,
    in eval mode (the model is put back in its mode). ``level``: ``instruction``, ``class`` or
    ``auto`` (the instruction when the data has a hierarchy and the instruction head was
    trained). See the module doc for the protocol.
    """
    if dataset.video_key is None:
        raise ValueError("the dataset gives no clips: build it with mode='clip' (or 'paired')")
    if clips_per_video < 1 or clips_per_episode < 1 or top_k < 1:
        raise ValueError("clips_per_video, clips_per_episode and top_k must be at least 1")
    if level not in ("auto", "instruction", "class"):
        raise ValueError(f"level must be auto, instruction or class, got {level!r}")
    fractions = sorted({float(f) for f in fractions})
    if not all(0.0 < f <= 1.0 for f in fractions):
        raise ValueError(f"fractions must lie in (0, 1], got {fractions}")
    classes = list(dataset.classes)
    spec = getattr(model, "spec", None)
    if spec is not None and spec.classes and list(spec.classes) != classes:
        raise UserError(
            "the dataset's classes are not the model's (build it with classes=spec.classes): "
            f"{', '.join(classes)} vs {', '.join(spec.classes)}"
        )
    hierarchy = len(dataset.instructions) != len(classes) and instruction_head_trained(model)
    if level == "auto":
        level = "instruction" if hierarchy else "class"
    by_instruction = level == "instruction"
    names = list(dataset.instructions) if by_instruction else classes
    targets = np.asarray(dataset.ep_instruction if by_instruction else dataset.ep_label, dtype=np.int64)
    with_other = hierarchy  # the other head's accuracy beside the reported level's
    n_names = len(names)
    k = min(top_k, n_names)

    clip_hit, clip_hitk, n_clips = 0, 0, 0
    other_clip_hit, other_video_hit = 0, 0
    video_pred, video_hitk = [], []
    early_hit = {f: [0, 0] for f in fractions}  # fraction -> [top-1 hits, top-k hits]
    early_frames = {f: [] for f in fractions}
    was_training = model.training
    model.eval()
    try:
        for e in range(len(dataset.episodes)):
            length = int(dataset.ep_len[e])
            label, instruction = int(dataset.ep_label[e]), int(dataset.ep_instruction[e])
            target, other = (instruction, label) if by_instruction else (label, instruction)
            plan = plan_clips(
                length, dataset.clip_len, dataset.clip_stride, clips_per_episode, clips_per_video, fractions
            )
            sets = [plan.clip, plan.video, *(plan.early[f] for f in fractions)]
            # each distinct clip once: the video clips are the 100 % clips, early ones often repeat
            unique, inverse = np.unique(np.concatenate(sets), axis=0, return_inverse=True)  # (U, T), (N,)
            frames = dataset.episode_video(e)  # (L, 3, H, W)
            class_p, ins_p = clip_probabilities(model, torch.from_numpy(frames[unique]), batch_size)
            if by_instruction and ins_p is None:
                raise ValueError("level 'instruction' needs a model with instruction logits")
            probs, other_p = (ins_p, class_p) if by_instruction else (class_p, ins_p)
            bounds = np.cumsum([0, *(len(s) for s in sets)])
            per_set = [inverse.reshape(-1)[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            clip_rows, video_rows, early_rows = per_set[0], per_set[1], per_set[2:]

            tops = top_indices(probs[clip_rows], k)  # (K, k)
            clip_hit += int((tops[:, 0] == target).sum())
            clip_hitk += int((tops == target).any(-1).sum())
            n_clips += len(clip_rows)
            video = top_indices(probs[video_rows].mean(0, keepdims=True), k)[0]  # (k,)
            video_pred.append(int(video[0]))
            video_hitk.append(bool(target in video))
            for f, rows in zip(fractions, early_rows, strict=True):
                top = top_indices(probs[rows].mean(0, keepdims=True), k)[0]
                early_hit[f][0] += int(top[0] == target)
                early_hit[f][1] += int(target in top)
                early_frames[f].append(prefix_length(length, f))
            if with_other and other_p is None:  # a model without an instruction head
                with_other = False
            if with_other:
                other_clip_hit += int((other_p[clip_rows].argmax(-1) == other).sum())
                other_video_hit += int(other_p[video_rows].mean(0).argmax() == other)
    finally:
        model.train(was_training)

    from embodied.stats import wilson_interval  # numpy only (embodied.eval imports no torch)

    preds = np.asarray(video_pred, dtype=np.int64)
    n_videos = len(preds)
    confusion = np.zeros((n_names, n_names), dtype=np.int64)
    np.add.at(confusion, (targets, preds), 1)
    per_class = {}
    for c, name in enumerate(names):
        n, hit = int(confusion[c].sum()), int(confusion[c, c])
        per_class[name] = {"videos": n, "correct": hit, "accuracy": hit / n if n else None}
    video_hit = int((preds == targets).sum())
    other = (
        {"clip_accuracy": other_clip_hit / n_clips, "video_accuracy": other_video_hit / n_videos}
        if with_other
        else None
    )
    return RecognizerReport(
        classes=names,
        camera=dataset.camera,
        clip_len=dataset.clip_len,
        clip_stride=dataset.clip_stride,
        clips_per_video=clips_per_video,
        top_k=k,
        clips=n_clips,
        clip_accuracy=clip_hit / n_clips,
        clip_topk=clip_hitk / n_clips,
        videos=n_videos,
        video_accuracy=video_hit / n_videos,
        video_accuracy_ci=list(wilson_interval(video_hit, n_videos)),
        video_topk=sum(video_hitk) / n_videos,
        per_class=per_class,
        confusion=confusion.tolist(),
        early_recognition=[
            {
                "fraction": f,
                "mean_frames": float(np.mean(early_frames[f])),
                "accuracy": early_hit[f][0] / n_videos,
                "topk": early_hit[f][1] / n_videos,
            }
            for f in fractions
        ],
        instruction=None if by_instruction else other,
        level=level,
        class_level=other if by_instruction else None,
    )


def open_clips(paths, spec, camera: str | None, clip_stride: int, split: str = "valid"):
    """The clip-mode :class:`~embodied.data.reader.DemoDataset` to evaluate a recognizer of ``spec`` on.

    Clip length from ``spec``, the model's classes and instructions (a task the model does not
    know is a UserError); a missing file, split or camera stream is a UserError too.
    """
    from embodied.data.reader import DemoDataset

    return DemoDataset(
        [paths] if isinstance(paths, (str, Path)) else list(paths),
        split=split,
        mode="clip",
        obs_keys=[],
        clip_len=spec.clip_len,
        clip_stride=clip_stride,
        camera=camera,
        training=False,
        classes=list(spec.classes) or None,
        instructions=list(spec.instructions) or None,
    )


# --------------------------------------------------------------------------- tables and files
def report_table(report: RecognizerReport) -> str:
    """The report as Markdown tables: accuracy by level, early recognition, per class."""
    k = report.top_k
    low, high = report.video_accuracy_ci
    lines = [
        f"| level | top-1 | top-{k} | n |",
        "|---|---:|---:|---:|",
        f"| clip | {report.clip_accuracy:.3f} | {report.clip_topk:.3f} | {report.clips} clips |",
        f"| video ({report.clips_per_video} clips) | {report.video_accuracy:.3f} [{low:.2f}, {high:.2f}] "
        f"| {report.video_topk:.3f} | {report.videos} videos |",
    ]
    for name, other in (("instruction", report.instruction), ("class", report.class_level)):
        if other:
            clip, video = other["clip_accuracy"], other["video_accuracy"]
            lines.append(f"| {name} (clip / video) | {clip:.3f} / {video:.3f} | | |")
    early = report.early_recognition
    lines += [
        "",
        "| episode seen | " + " | ".join(f"{e['fraction']:.0%}" for e in early) + " |",
        "|---|" + "---:|" * len(early),
        "| top-1 | " + " | ".join(f"{e['accuracy']:.3f}" for e in early) + " |",
        f"| top-{k} | " + " | ".join(f"{e['topk']:.3f}" for e in early) + " |",
        "| mean frames | " + " | ".join(f"{e['mean_frames']:.1f}" for e in early) + " |",
        "",
        f"| {report.level} | videos | correct | accuracy | most often taken for |",
        "|---|---:|---:|---:|---|",
    ]
    confusion = np.asarray(report.confusion)
    for c, (name, entry) in enumerate(report.per_class.items()):
        row = confusion[c].copy()
        row[c] = 0
        other = f"{report.classes[int(row.argmax())]} ({int(row.max())})" if row.max() > 0 else ""
        acc = "–" if entry["accuracy"] is None else f"{entry['accuracy']:.3f}"
        lines.append(f"| {name} | {entry['videos']} | {entry['correct']} | {acc} | {other} |")
    return "\n".join(lines)


def _json_writer(payload: dict) -> Callable[[Path], None]:
    text = json.dumps(payload, indent=1, allow_nan=False) + "\n"
    return lambda tmp: tmp.write_text(text)


def _figure_writer(fig) -> Callable[[Path], None]:
    return lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")


def confusion_figure(report: RecognizerReport):
    """A matplotlib Figure of the video-level confusion matrix: counts in the cells, colour by row share."""
    from matplotlib.figure import Figure  # a bare Figure draws with Agg; no pyplot global state

    counts = np.asarray(report.confusion)  # (C, C) rows true, columns predicted
    n = len(counts)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)  # (C, C) each row sums to 1 (or 0)
    side = max(4.0, 0.4 * n + 2.5)
    font = 9 if n <= 12 else max(4, 9 - (n - 12) // 6)
    fig = Figure(figsize=(side + 1.2, side))
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=f"share of the true {report.level}'s videos")
    ticks = np.arange(n)
    ax.set_xticks(ticks, labels=report.classes, rotation=60, ha="right", fontsize=font)
    ax.set_yticks(ticks, labels=report.classes, fontsize=font)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                colour = "white" if share[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=font)
    ax.set_xlabel(f"predicted {report.level}")
    ax.set_ylabel(f"true {report.level}")
    ax.set_title(
        f"Video-level confusion ({report.videos} videos, {report.clips_per_video} clips each): "
        f"top-1 {report.video_accuracy:.1%}",
        fontsize=10,
    )
    return fig


def early_figure(report: RecognizerReport):
    """A matplotlib Figure of video-level accuracy against the share of the episode seen."""
    from matplotlib.figure import Figure

    x = [100 * e["fraction"] for e in report.early_recognition]
    top1 = [e["accuracy"] for e in report.early_recognition]
    topk = [e["topk"] for e in report.early_recognition]
    fig = Figure(figsize=(6.0, 4.0))
    ax = fig.add_subplot()
    ax.plot(x, top1, "o-", label="top-1")
    if report.top_k > 1:
        ax.plot(x, topk, "s--", alpha=0.7, label=f"top-{report.top_k}")
    for xi, yi in zip(x, top1, strict=True):
        ax.annotate(f"{yi:.2f}", (xi, yi), textcoords="offset points", xytext=(0, -14), ha="center")
    ax.set_xlim(0, 105)
    ax.set_ylim(0, 1.05)
    ax.set_xticks(x, labels=[f"{v:g}%" for v in x])
    ax.set_xlabel("share of the episode seen (first frames)")
    ax.set_ylabel("video-level accuracy")
    ax.set_title(f"Early recognition ({report.videos} videos)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def write_report(report: RecognizerReport, out_dir: str | Path) -> list[Path]:
    """Write :data:`REPORT_FILES` into ``out_dir``, each atomically; returns their paths."""
    out = Path(out_dir)
    return [
        write_user_file(out / "recognition.json", _json_writer(report.to_json())),
        write_user_file(out / "confusion.png", _figure_writer(confusion_figure(report))),
        write_user_file(out / "early_recognition.json", _json_writer(report.early_json())),
        write_user_file(out / "early_recognition.png", _figure_writer(early_figure(report))),
    ]
