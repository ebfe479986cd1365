"""The recognizer (U) as a judge: its own accuracy, and its verdict on the policy's rollouts.

1. its accuracy: the report on the validation split of the demonstrations
   (:func:`~embodied.eval.recognition.evaluate_recognizer`, which
   :func:`~embodied.eval.checkpoint.evaluate_checkpoint` runs): clip- and video-level
   top-1/top-5, per-class accuracy, the confusion matrix and early recognition;
2. :class:`RolloutJudge`, an ``on_episode`` callback of
   :func:`~embodied.eval.rollout.evaluate_policy`: it classifies each recorded rollout's
   observer-camera video (the initial frame and one per step) and says whether the recognized
   task is the instructed one (with a class/instruction hierarchy: whether the recognized
   instruction is, named by its task); with a mirror head (and the policy) it also scores the
   episode's alignment.
3. :func:`judge_summary`: the agreement rate, and how agreement and alignment relate to
   success (among successful vs failed episodes).

Alignment pairing (per episode of L steps). K anchor steps t_k are spread evenly over
0..L-1 (K = min(``windows``, L)). Pair k is

- the execution window ending at t_k: observations t_k - To + 1 .. t_k (the first repeated
  before the episode's start), with the instruction the policy was given, through f_e;
- the observation clip around t_k: ``clip_len`` frames at the training stride starting at
  t_k - span // 2, clamped into the episode (a short episode repeats its last frame),
  through f_u;

the pairing :class:`~embodied.data.reader.DemoDataset` makes for a paired batch at evaluation
(``training=False``), so a rollout is scored as the demonstrations were aligned. Frame and
observation t are those before action t, as in the demonstrations; the observation after the
last action is left out of the pairs (the classification uses it). The episode's alignment
is the mean over k of ``pair_alignment(T_u(f_u(clip_k)), T_e(f_e(window_k)))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange

from embodied import keys
from embodied.data.spec import DataSpec
from embodied.data.windows import clip_start_around, clip_steps, observation_steps
from embodied.eval.envs import Recording
from embodied.eval.results import EpisodeRecord
from embodied.mirror import pair_alignment
from embodied.recognizers import classify_video
from embodied.stats import wilson_interval


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


# --------------------------------------------------------------------------- accuracy
# --------------------------------------------------------------------------- rollouts
class RolloutJudge:
    """An ``on_episode`` callback: the recognizer's verdict (and the alignment) of each recorded rollout.

    Adds to ``record.extra``: ``recognized_task``, ``recognized_prob``, ``instructed_prob``,
    ``agrees`` (recognized == instructed); with ``mirror`` and ``policy``: ``alignment``.
    Episodes recorded without the observer camera are left alone.
    """

    def __init__(
        self,
        recognizer,
        spec: DataSpec,
        observer: str,
        clip_stride: int,
        num_clips: int = 4,
        policy=None,
        mirror=None,
        instruction_ids: dict[str, int] | None = None,
        windows: int = 8,
    ) -> None:
        if (mirror is None) != (policy is None):
            raise ValueError("alignment needs both the policy and the mirror head")
        self.recognizer = recognizer
        self.spec = spec
        self.observer = observer
        self.clip_stride = clip_stride
        self.num_clips = num_clips
        self.policy = policy
        self.mirror = mirror
        self.instruction_ids = instruction_ids or {}
        self.windows = windows
        # With a class/instruction hierarchy the recognizer's instruction head says which action a
        # rollout shows (open or close the drawer); the class head only which object family.
        trained = getattr(getattr(recognizer, "config", None), "instruction_loss_weight", 0.0) > 0
        self.by_instruction = bool(
            trained and len(spec.instructions) != len(spec.classes) and spec.task_instructions
        )
        if self.by_instruction:  # each instruction named by its task
            tasks, ids = spec.task_names, spec.task_instructions
            self.names = [
                tasks[ids.index(i)] if i in ids else spec.instructions[i]
                for i in range(len(spec.instructions))
            ]
        else:
            self.names = list(spec.classes)

    def __call__(self, record: EpisodeRecord, recording: Recording | None) -> None:
        if recording is None or self.observer not in recording.frames:
            return
        frames = recording.frames[self.observer]  # (L + 1, H, W, 3)
        head = "instruction" if self.by_instruction else "class"
        probs, top = classify_video(
            self.recognizer, frames, self.spec.clip_len, self.clip_stride, self.num_clips, head=head
        )
        names = self.names
        if self.by_instruction:  # the action recognised: which of the instructions
            instructed = self.instruction_ids.get(record.task)
        else:
            trained = self.spec.task_names
            instructed = self.spec.task_label(record.task) if record.task in trained else None
        record.extra.update(
            recognized_task=names[top] if top < len(names) else str(top),
            recognized_prob=float(probs[top]),
            instructed_prob=float(probs[instructed]) if instructed is not None else None,
            agrees=bool(instructed == top),
        )
        if self.mirror is not None and recording.obs and record.length > 0:
            record.extra["alignment"] = self.alignment(record, frames, recording.obs)

    @torch.no_grad()
    def alignment(self, record: EpisodeRecord, frames: np.ndarray, obs: dict[str, np.ndarray]) -> float:
        """Mean pair alignment over the episode's anchor steps (the pairing of the module doc)."""
        length = record.length  # L steps: frames/obs 0..L-1 precede an action
        k = min(self.windows, length)
        anchors = np.unique(np.linspace(0, length - 1, k).round().astype(np.int64))  # (K,)
        rows = observation_steps(anchors, self.spec.obs_horizon)  # (K, To)
        device = _device(self.policy)
        window = {}
        for key in self.policy.config.obs_keys:
            x = torch.from_numpy(np.ascontiguousarray(obs[key][rows]))  # (K, To, d) or (K, To, H, W, 3)
            if x.dim() == 5:
                x = rearrange(x, "k t h w c -> k t c h w")
            window[key] = x.to(device)
        instruction = torch.full((len(anchors),), self.instruction_ids.get(record.task, 0), device=device)
        f_e = self.policy.features({keys.OBS: window, keys.INSTRUCTION: instruction})  # (K, D_e)

        t, stride = self.spec.clip_len, self.clip_stride
        starts = clip_start_around(anchors, np.full_like(anchors, length), t, stride)  # (K,)
        frame_t = clip_steps(starts, length, t, stride)  # (K, T)
        clips = rearrange(frames[frame_t], "k t h w c -> k t c h w")  # (K, T, H, W, 3) -> (K, T, 3, H, W)
        clips = torch.from_numpy(clips.copy())
        was_training = self.recognizer.training
        self.recognizer.eval()
        try:
            f_u = self.recognizer.features(clips.to(_device(self.recognizer)))  # (K, D_u)
        finally:
            self.recognizer.train(was_training)
        z_u, z_e = self.mirror.embed(f_u.to(_device(self.mirror)), f_e.to(_device(self.mirror)))
        return float(pair_alignment(z_u, z_e).mean())


def _rate(flags: list[bool]) -> dict:
    n, k = len(flags), int(sum(flags))
    low, high = wilson_interval(k, n)
    return {"n": n, "rate": k / n if n else None, "ci": [low, high]}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a random positive scores above a random negative), ties counting half; None if a side is empty."""
    if not positive or not negative:
        return None
    pos = np.asarray(positive, dtype=np.float64)[:, None]
    neg = np.asarray(negative, dtype=np.float64)[None, :]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


def judge_summary(records: Sequence[EpisodeRecord]) -> dict:
    """Agreement (recognized == instructed task) overall, among successes and among failures;
    with alignment scores: their mean among successes and failures, the difference, and the
    AUROC of alignment as a predictor of success. Empty when no episode was judged."""
    judged = [r for r in records if "agrees" in r.extra]
    if not judged:
        return {}
    out = {
        "episodes": len(judged),
        "agreement": _rate([r.extra["agrees"] for r in judged]),
        "agreement_success": _rate([r.extra["agrees"] for r in judged if r.success]),
        "agreement_failure": _rate([r.extra["agrees"] for r in judged if not r.success]),
    }
    aligned = [r for r in judged if r.extra.get("alignment") is not None]
    if aligned:
        succ = [r.extra["alignment"] for r in aligned if r.success]
        fail = [r.extra["alignment"] for r in aligned if not r.success]
        ms, mf = _mean(succ), _mean(fail)
        out["alignment"] = {
            "episodes": len(aligned),
            "mean": _mean([r.extra["alignment"] for r in aligned]),
            "success_mean": ms,
            "success_n": len(succ),
            "failure_mean": mf,
            "failure_n": len(fail),
            "difference": ms - mf if ms is not None and mf is not None else None,
            "auroc": auroc(succ, fail),
        }
    return out


def per_task_agreement(records: Sequence[EpisodeRecord]) -> dict[str, dict]:
    """Agreement rate (and mean alignment when scored) of each task's judged episodes."""
    out: dict[str, dict] = {}
    for task in dict.fromkeys(r.task for r in records):
        judged = [r for r in records if r.task == task and "agrees" in r.extra]
        if judged:
            entry = _rate([r.extra["agrees"] for r in judged])
            scores = [r.extra["alignment"] for r in judged if r.extra.get("alignment") is not None]
            entry["alignment"] = _mean(scores)
            out[task] = entry
    return out


__all__ = ["RolloutJudge", "auroc", "judge_summary", "per_task_agreement"]
