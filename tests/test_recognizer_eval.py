"""Recognizer evaluation: clip/video accuracy, confusion, early recognition, any video file.

A tiny synthetic dataset whose frames say what they show: channel 0 encodes the class the
frame *shows* (which the test chooses, so some episodes mislead), channel 1 the time step,
channel 2 the episode (row 0) and the instruction shown (the other rows). A stand-in oracle
recognizer reads the class off the last frame of each clip, so every accuracy below is a hand
count. The command-line test trains a real recognizer for 2 steps on the shared dataset.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from embodied.data.schema import DemoFileWriter
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.eval.classify import classify_file, classify_frames, eval_video_region, read_video_file
from embodied.eval.recognition import (
    REPORT_FILES,
    evaluate_recognizer,
    open_clips,
    plan_clips,
    prefix_length,
    report_table,
    write_report,
)

CLASSES = ["task-a", "task-b", "task-c"]
INSTRUCTIONS = ["do a", "do a again", "do b", "do c"]  # 4 instructions for 3 classes: reported too
SIZE, CLIP_LEN, STRIDE = 8, 4, 2  # a clip spans (4 - 1) * 2 + 1 = 7 frames
DECOY_UNTIL = 8
"""Episode 4 (task-c) shows task-b before this step: recognizable only from halfway."""


def class_code(c: int) -> int:
    return 40 + 80 * c


def instruction_code(i: int) -> int:
    return 40 + 50 * i


# (task, length, class shown at step t, true instruction, instruction shown)
EPISODES = [
    ("task-a", 21, lambda t: 0, 0, 0),
    ("task-a", 21, lambda t: 0, 1, 1),
    ("task-b", 21, lambda t: 1, 2, 0),  # the wrong instruction shown
    ("task-b", 21, lambda t: 2, 2, 2),  # looks like task-c throughout: a confusion
    ("task-c", 25, lambda t: 1 if t < DECOY_UNTIL else 2, 3, 3),  # starts like task-b
    ("task-c", 5, lambda t: 2, 3, 3),  # shorter than a clip's span: padded
]


def episode_frames_for(ep_id: int, length: int, shown, ins_shown: int) -> np.ndarray:
    frames = np.zeros((length, SIZE, SIZE, 3), dtype=np.uint8)  # (L, H, W, 3)
    for t in range(length):
        frames[t, :, :, 0] = class_code(shown(t))
        frames[t, :, :, 1] = t
        frames[t, 0, :, 2] = 10 * ep_id
        frames[t, 1:, :, 2] = instruction_code(ins_shown)
    return frames


def write_dataset(folder: Path, cameras: bool = True) -> Path:
    """One file per task, every demo in the valid split; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for task in CLASSES:
        env_args = {"env_name": task, "type": 1, "env_kwargs": {"cameras": ["corner"]} if cameras else {}}
        with DemoFileWriter(folder / f"{task}.hdf5", env_args, suite="synthetic") as w:
            for ep_id, (ep_task, length, shown, ins, ins_shown) in enumerate(EPISODES):
                if ep_task != task:
                    continue
                obs = {"robot_state": np.zeros((length, 4), np.float32)}
                if cameras:
                    obs["corner_image"] = episode_frames_for(ep_id, length, shown, ins_shown)
                arrays = {
                    "actions": np.zeros((length, 4), np.float32),
                    "rewards": np.zeros(length),
                    "dones": np.zeros(length),
                    "states": np.zeros((length, 3)),
                }
                attrs = {"task": task, "instruction": INSTRUCTIONS[ins], "label": 0, "seed": ep_id}
                w.add_demo(arrays, obs, attrs)
            w.finish(valid_fraction=1.0, split_seed=0)  # all valid
    return folder


SPEC = DataSpec(
    num_classes=len(CLASSES),
    num_instructions=len(INSTRUCTIONS),
    clip_len=CLIP_LEN,
    image_size=SIZE,
    classes=CLASSES,
    instructions=INSTRUCTIONS,
)


class Oracle(nn.Module):
    """Reads the class and instruction shown off each clip's last frame; remembers every clip.

    Class logits: 10 for the class shown, 5 for the one before it (so top-2 is known), else 0.
    """

    def __init__(self, spec: DataSpec = SPEC) -> None:
        super().__init__()
        self.spec = spec
        self.config = SimpleNamespace(instruction_loss_weight=0.5)
        self.input_size = spec.image_size
        self.seen: list[torch.Tensor] = []

    def forward(self, video: torch.Tensor) -> dict[str, torch.Tensor]:
        assert video.dtype == torch.uint8 and video.dim() == 5  # (B, T, 3, H, W)
        assert not self.training  # evaluation runs in eval mode
        self.seen.append(video.clone())
        b, c, n = len(video), self.spec.num_classes, self.spec.num_instructions
        last = video[:, -1].float()  # (B, 3, H, W)
        shown = ((last[:, 0].mean((1, 2)) - 40) / 80).round().long().clamp(0, c - 1)  # (B,)
        rows = torch.arange(b)
        logits = torch.zeros(b, c)
        logits[rows, shown] = 10.0
        logits[rows, (shown - 1) % c] = 5.0
        ins = ((last[:, 2, 1:].mean((1, 2)) - 40) / 50).round().long().clamp(0, n - 1)  # (B,)
        ins_logits = torch.zeros(b, n)
        ins_logits[rows, ins] = 10.0
        return {"class_logits": logits, "instruction_logits": ins_logits}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="module")
def evaluated(data_dir):
    """(report, oracle) of the oracle on the synthetic valid split."""
    oracle = Oracle()
    ds = open_clips(data_dir, SPEC, None, STRIDE)
    try:
        assert ds.camera == "corner" and list(ds.ep_len) == [e[1] for e in EPISODES]
        report = evaluate_recognizer(
            oracle, ds, clips_per_video=5, clips_per_episode=3, top_k=2, level="class"
        )
    finally:
        ds.close()
    return report, oracle


# --------------------------------------------------------------------------- which frames
def test_prefix_length():
    assert prefix_length(30, 0.1) == 3  # 0.1 * 30 is 3.0000000000000004 in floating point
    assert prefix_length(25, 0.1) == 3 and prefix_length(25, 0.25) == 7 and prefix_length(25, 0.5) == 13
    assert prefix_length(5, 0.1) == 1 and prefix_length(40, 1.0) == 40


@pytest.mark.parametrize("length", [1, 5, 7, 8, 25, 200])
def test_clip_plan_stride_padding_and_prefix(length):
    plan = plan_clips(length, CLIP_LEN, STRIDE, clips_per_episode=10, clips_per_video=5)
    assert plan.video.shape == (5, CLIP_LEN)
    assert len(np.unique(plan.clip, axis=0)) == len(plan.clip) <= 10
    for name, idx in [("clip", plan.clip), ("video", plan.video), *plan.early.items()]:
        seen = length if name in ("clip", "video") else prefix_length(length, name)
        assert idx.min() >= 0 and idx.max() < seen, name  # never beyond the episode or the prefix
        # at the stride from the clip's start, the last frame seen repeated past it
        assert (idx == np.minimum(idx[:, :1] + STRIDE * np.arange(CLIP_LEN), seen - 1)).all(), name
    if length >= 7:  # clips cover the episode from its first to its last frame
        assert plan.clip[0, 0] == 0 and plan.clip[-1, -1] == length - 1
    assert plan.early[1.0].tolist() == plan.video.tolist()


def test_clips_never_mix_episodes_and_pad_short_ones(evaluated):
    """What the model actually saw: frames of one episode, at the stride, the last repeated."""
    _, oracle = evaluated
    clips = torch.cat(oracle.seen)  # (N, T, 3, H, W)
    episode = clips[:, :, 2, 0, 0].long() // 10  # (N, T)
    t = clips[:, :, 1, 0, 0].long()  # (N, T)
    assert (episode == episode[:, :1]).all()
    # at the stride, clamped to the last frame available (the episode's or the prefix's end)
    assert (t == torch.minimum(t[:, :1] + STRIDE * torch.arange(CLIP_LEN), t[:, -1:])).all()
    lengths = torch.tensor([e[1] for e in EPISODES])
    assert (t < lengths[episode]).all()
    # the 5-frame episode: one whole-episode clip, padded; the prefixes of 1, 2 and 3 frames
    # (10, 25, 50 %) pad with their own last frame
    short = {tuple(row) for row in t[episode[:, 0] == 5].tolist()}
    assert short == {(0, 2, 4, 4), (0, 0, 0, 0), (0, 1, 1, 1), (0, 2, 2, 2)}


# --------------------------------------------------------------------------- the numbers
def test_accuracies_are_hand_counts(evaluated):
    report, _ = evaluated
    assert report.classes == CLASSES and report.camera == "corner" and report.top_k == 2
    # clip level: 3 clips per 21/25-frame episode, 1 distinct clip of the 5-frame one: 16.
    # Wrong: all 3 of episode 3 (shows task-c), episode 4's first clip (frames 0..6, the decoy)
    assert report.clips == 16
    assert report.clip_accuracy == pytest.approx(12 / 16)
    assert report.clip_topk == pytest.approx(15 / 16)  # episode 3's second guess is task-b
    # video level: only episode 3 is wrong; its top-2 holds task-b
    assert report.videos == 6
    assert report.video_accuracy == pytest.approx(5 / 6) and report.video_topk == 1.0
    low, high = report.video_accuracy_ci
    assert 0 < low < 5 / 6 < high <= 1
    assert report.confusion == [[2, 0, 0], [0, 1, 1], [0, 0, 2]]
    assert report.per_class["task-b"] == {"videos": 2, "correct": 1, "accuracy": 0.5}
    assert report.per_class["task-a"]["accuracy"] == 1.0
    # instructions: episode 2 shows the wrong one (its 3 clips and its video)
    assert report.instruction == {
        "clip_accuracy": pytest.approx(13 / 16),
        "video_accuracy": pytest.approx(5 / 6),
    }


def test_early_recognition_sees_only_the_prefix(evaluated):
    """Episode 4 shows task-b until step 8: with 10 % (3 frames) or 25 % (7 frames) seen it is
    taken for task-b, which frames beyond the prefix would have corrected; from 50 % (13 frames:
    clips ending at 6, 8, 9, 10, 12) it is recognized."""
    report, _ = evaluated
    early = {e["fraction"]: e for e in report.early_recognition}
    assert list(early) == [0.1, 0.25, 0.5, 1.0]
    assert [early[f]["accuracy"] for f in early] == pytest.approx([4 / 6, 4 / 6, 5 / 6, 5 / 6])
    assert [early[f]["topk"] for f in early] == pytest.approx([5 / 6, 5 / 6, 1.0, 1.0])
    assert early[0.1]["mean_frames"] == pytest.approx((3 * 5 + 1) / 6)
    assert early[1.0]["accuracy"] == report.video_accuracy


def test_with_a_hierarchy_the_instruction_is_recognised_and_the_class_reported_beside(data_dir):
    """Two instructions of task-a's class: by default the numbers are the instruction head's."""
    ds = open_clips(data_dir, SPEC, None, STRIDE)
    try:
        report = evaluate_recognizer(Oracle(), ds, clips_per_video=5, clips_per_episode=3, top_k=2)
    finally:
        ds.close()
    assert report.level == "instruction" and report.classes == INSTRUCTIONS
    # episode 2 shows the wrong instruction ("do a" for "do b"): its 3 clips and its video
    assert report.clip_accuracy == pytest.approx(13 / 16) and report.video_accuracy == pytest.approx(5 / 6)
    assert report.confusion[2] == [1, 0, 1, 0] and report.per_class["do a again"]["accuracy"] == 1.0
    assert report.class_level == {
        "clip_accuracy": pytest.approx(12 / 16),
        "video_accuracy": pytest.approx(5 / 6),
    }
    assert report.instruction is None
    assert "| class (clip / video) | 0.750 / 0.833 | | |" in report_table(report)


def test_instruction_accuracy_only_when_it_says_more_than_the_class(data_dir):
    ds = open_clips(data_dir, SPEC, None, STRIDE)
    try:
        untrained = Oracle()
        untrained.config.instruction_loss_weight = 0.0  # an instruction head that was not trained
        report = evaluate_recognizer(untrained, ds, fractions=(0.5,))
        assert report.instruction is None and [e["fraction"] for e in report.early_recognition] == [0.5]
        assert report.top_k == 3 and report.video_topk == 1.0  # top-5 of 3 classes: k = 3
        ds.instructions = INSTRUCTIONS[:3]  # as a dataset with one instruction per task has
        assert evaluate_recognizer(Oracle(), ds, fractions=(1.0,)).instruction is None
    finally:
        ds.close()


def test_dataset_classes_must_be_the_models(data_dir):
    ds = open_clips(data_dir, SPEC, None, STRIDE)
    try:
        other = DataSpec(**{**SPEC.to_json(), "classes": ["task-c", "task-b", "task-a"]})
        with pytest.raises(UserError, match="classes"):
            evaluate_recognizer(Oracle(other), ds)
    finally:
        ds.close()


# --------------------------------------------------------------------------- the files
def test_report_files_are_written_and_well_formed(evaluated, tmp_path):
    report, _ = evaluated
    out = tmp_path / "eval"
    paths = write_report(report, out)
    assert [p.name for p in paths] == list(REPORT_FILES)
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)  # no temporary file left
    for name in ("confusion.png", "early_recognition.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        from PIL import Image

        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 200
    full = json.loads((out / "recognition.json").read_text())
    assert full["format"] == "embodied-recognizer-report" and full["format_version"] == 1
    expected = {"clip_accuracy", "clip_topk", "video_accuracy", "video_topk", "video_accuracy_ci"}
    assert expected | {"per_class", "confusion", "early_recognition", "instruction"} <= set(full)
    assert full["confusion"] == [[2, 0, 0], [0, 1, 1], [0, 0, 2]] and full["classes"] == CLASSES
    early = json.loads((out / "early_recognition.json").read_text())
    assert set(early["accuracy"]) == {"0.1", "0.25", "0.5", "1.0"}
    assert early["accuracy"]["0.5"] == pytest.approx(5 / 6) and early["videos"] == 6
    table = report_table(report)
    assert "| clip | 0.750 | 0.938 | 16 clips |" in table
    assert "| task-b | 2 | 1 | 0.500 | task-c (1) |" in table


def test_unwritable_report_folder_is_a_user_error(evaluated, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(UserError, match="cannot write"):
        write_report(evaluated[0], blocker / "eval")


# --------------------------------------------------------------------------- bad data
def test_missing_camera_stream_is_a_user_error(data_dir, tmp_path):
    with pytest.raises(UserError, match="top_image"):
        open_clips(data_dir, SPEC, "top", STRIDE)
    bare = write_dataset(tmp_path / "bare", cameras=False)
    with pytest.raises(UserError, match="camera|_image"):
        open_clips(bare, SPEC, None, STRIDE)


def test_evaluate_checkpoint_reports_the_recognizer_and_writes_its_files(data_dir, tmp_path):
    """The recognizer's report as embodied-eval and the bench get it (evaluate_checkpoint)."""
    from types import SimpleNamespace

    from embodied.eval.checkpoint import evaluate_checkpoint
    from embodied.eval.settings import EvalSettings

    def loaded(camera):
        data = SimpleNamespace(paths=[str(data_dir)], camera=camera, clip_stride=STRIDE)
        return "recognizer", {"recognizer": Oracle()}, SPEC, SimpleNamespace(data=data)

    out = tmp_path / "eval"
    ev = evaluate_checkpoint(loaded(None), EvalSettings(episodes=1), report_dir=out)
    assert ev.results is None  # no policy: nothing rolled out
    rec = ev.recognition.to_json()
    assert rec["videos"] == 6 and rec["video_accuracy"] == pytest.approx(5 / 6)
    assert {"camera", "clips", "clip_accuracy", "video_accuracy_ci"} <= set(rec)  # results.md reads these
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    with pytest.raises(UserError, match="top_image"):
        evaluate_checkpoint(
            loaded("top"), EvalSettings(episodes=1), report_dir=tmp_path / "x", skip_missing_data=True
        )
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- any video
def flat_video(shown: int, ins_shown: int, n: int = 12, side: int = 32) -> np.ndarray:
    frames = np.zeros((n, side, side, 3), dtype=np.uint8)
    frames[..., 0] = class_code(shown)
    frames[..., 1] = np.arange(n)[:, None, None]  # no two frames alike: GIF writers merge equal ones
    frames[..., 2] = instruction_code(ins_shown)
    return frames


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_classify_file_returns_a_probability(tmp_path, suffix):
    from embodied.video import write_video

    path = write_video(tmp_path / f"rollout{suffix}", flat_video(shown=1, ins_shown=2), fps=10)
    assert read_video_file(path).shape == (12, 32, 32, 3)
    task, p, top, instruction, ins_p = classify_file(Oracle(), path, SPEC, clip_stride=STRIDE)
    assert task == "task-b" and instruction == "do b"
    softmax = np.exp([10.0, 5.0, 0.0]) / np.exp([10.0, 5.0, 0.0]).sum()
    assert p == pytest.approx(softmax[0], abs=1e-6) and 0.0 < p <= 1.0
    assert [name for name, _ in top] == ["task-b", "task-a", "task-c"]
    assert sum(q for _, q in top) == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < ins_p <= 1.0


def test_classify_frames_pads_a_short_video_and_reads_rollout_videos(tmp_path):
    from embodied.video import caption_height, write_episode_video

    short = flat_video(shown=2, ins_shown=3, n=2, side=SIZE)  # 2 frames < a clip's 7
    oracle = Oracle()
    assert classify_frames(oracle, short, SPEC, clip_stride=STRIDE).task == "task-c"
    assert oracle.seen[-1].shape == (5, CLIP_LEN, 3, SIZE, SIZE)
    # an embodied-eval rollout video: caption strip, camera scaled up; the camera is found
    camera = flat_video(shown=0, ins_shown=1, n=6, side=SIZE)
    camera[..., 1] = 255  # unlike the caption strip's black
    path = write_episode_video(tmp_path / "r.mp4", {"corner": camera}, "task-a", 0, None, "horizon")
    frames = read_video_file(path)
    (top, left, side, _), scale = eval_video_region(*frames.shape[1:3], SIZE)
    assert (top, left, side // scale) == (caption_height(side), 0, SIZE)
    pred = classify_frames(oracle, frames, SPEC, clip_stride=STRIDE)
    assert pred.task == "task-a" and pred.instruction == "do a again"
    seen = oracle.seen[-1].float()  # the camera image back at its size, not the caption
    assert seen.shape[-2:] == (SIZE, SIZE) and (seen[:, :, 1] > 200).all()
    with pytest.raises(UserError, match="outside"):
        classify_frames(oracle, frames, SPEC, clip_stride=STRIDE, crop=(0, 0, 10_000, 5))
    # rendered for watching (embodied-eval --video-size), at a size no multiple of the
    # recognizer's, two cameras side by side: the first camera is found and resized
    big = flat_video(shown=0, ins_shown=1, n=6, side=100)
    big[..., 1] = 255
    other = np.zeros_like(big)  # the second camera is black: seeing it would fail the check below
    path = write_episode_video(tmp_path / "big.mp4", {"a": big, "b": other}, "task-a", 0, None, "horizon")
    frames = read_video_file(path)
    (top, left, side, _), scale = eval_video_region(*frames.shape[1:3], SIZE)
    assert (top, left, side, scale) == (caption_height(200), 0, 200, 25)
    assert classify_frames(oracle, frames, SPEC, clip_stride=STRIDE).task == "task-a"
    assert (oracle.seen[-1].float()[:, :, 1] > 200).all()
    rendered = flat_video(shown=0, ins_shown=1, n=6, side=250)  # 250: shown as is, not a multiple of 8
    rendered[..., 1] = 255
    path = write_episode_video(tmp_path / "r250.mp4", {"a": rendered}, "task-a", 0, None, "horizon")
    frames = read_video_file(path)
    assert eval_video_region(*frames.shape[1:3], SIZE) == ((caption_height(250), 0, 250, 250), None)
    assert classify_frames(oracle, frames, SPEC, clip_stride=STRIDE).task == "task-a"
    assert (oracle.seen[-1].float()[:, :, 1] > 200).all()


@pytest.mark.parametrize("content", [None, b"", b"certainly not a video" * 50])
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_unreadable_video_is_a_user_error_naming_it(tmp_path, content, suffix):
    path = tmp_path / f"broken{suffix}"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match="broken") as err:
        classify_file(Oracle(), path, SPEC, clip_stride=STRIDE)
    assert "\n" not in str(err.value)


# --------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def recognizer_run(tiny_run):
    """A recognizer trained for 2 steps on the shared tiny dataset."""
    return tiny_run("recognizer_quick", "recognizer.width=4", "recognizer.depth=2")


def test_cli_classify_prints_task_probability_and_top5(
    recognizer_run, demo_file, demo_tasks, tmp_path, capsys
):
    import h5py

    from embodied.cli.eval import main as eval_main
    from embodied.sim import load_suite
    from embodied.video import write_video

    with h5py.File(demo_file, "r") as f:
        frames = f["data/demo_0/obs/corner_image"][()]  # (T, 32, 32, 3)
    video = write_video(tmp_path / "demo.mp4", frames, fps=20)
    capsys.readouterr()
    assert eval_main([str(recognizer_run), "--classify", str(video), "--clips", "3"]) == 0
    first, second = capsys.readouterr().out.strip().splitlines()
    task = first.split(": ", 1)[1].split(" (p=")[0]  # the class: the object family of a task
    classes = {load_suite("metaworld").task(t).class_name for t in demo_tasks}
    assert first.startswith(f"{video}: ") and task in classes
    p = float(first.split("(p=")[1].split(")")[0])
    assert 0.0 < p <= 1.0 and "instruction" in first
    assert second.startswith("  top 2: ") and task in second  # 2 classes: the top 2

    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00" * 100)
    assert eval_main([str(recognizer_run), "--classify", str(garbage)]) == 2
    assert eval_main([str(recognizer_run), "--classify", str(tmp_path / "missing.gif")]) == 2
    assert eval_main([str(recognizer_run), "--classify", str(video), "--crop", "1,2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "garbage.mp4" in err[0] and "missing.gif" in err[1] and "--crop" in err[2]


def test_cli_recognizer_checkpoint_writes_the_report(recognizer_run, demo_copy, tmp_path, capsys):
    import h5py

    from embodied.cli.eval import main as eval_main

    out = tmp_path / "eval"
    assert eval_main([str(recognizer_run), "--out", str(out), "--clips", "2"]) == 0
    assert set(REPORT_FILES) | {"results.json", "results.md"} == {p.name for p in out.iterdir()}
    data = json.loads((out / "results.json").read_text())
    assert data["kind"] == "recognizer" and data["recognizer"]["clips_per_video"] == 2
    assert len(data["recognizer"]["early_recognition"]) == 4
    assert "early recognition" in capsys.readouterr().out
    # data without the camera the run was trained on: one line, exit 2, nothing written
    with h5py.File(demo_copy, "a") as f:
        for demo in f["data"].values():
            del demo["obs/corner_image"]
    capsys.readouterr()
    assert eval_main([str(recognizer_run), "--out", str(tmp_path / "x"), "--data", str(demo_copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "corner_image" in err[0]
    assert not (tmp_path / "x").exists()
