"""Videos and frames where users look first: captions that fit, training's rollout videos and the
data's sample frames in TensorBoard and W&B (as LeRobot and robomimic log theirs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embodied.video import episode_frames, write_video


def tensorboard_images(folder: Path) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0})
    events.Reload()
    return {tag: events.Images(tag) for tag in events.Tags()["images"]}


def test_a_long_task_name_fits_the_caption():
    """Over one 64 px camera (shown at 192 px) the caption of the longest Meta-World name used to
    run past the frame's right edge."""
    frames = {"corner": np.full((3, 64, 64, 3), 90, np.uint8)}
    last = list(episode_frames(frames, "button-press-topdown-v3", 1000010, None, "horizon"))[-1]
    caption = last[:28]  # the two caption lines over the camera
    text_columns = np.flatnonzero((caption > 0).any(axis=(0, 2)))
    assert text_columns.max() < last.shape[1] - 4, "caption cut at the right edge"
    assert text_columns.max() > last.shape[1] * 0.6  # shrunk to fit, not to nothing


def gif(path: Path, n: int = 3) -> Path:
    frames = [np.full((16, 24, 3), 40 * i, np.uint8) for i in range(n)]
    return write_video(path, frames, fps=10)


def test_rollout_videos_and_sample_frames_reach_tensorboard(tmp_path):
    import torch

    from embodied.train.runlog import RunLog, sample_frames

    video = gif(tmp_path / "videos" / "reach-v3_seed1000000.gif")
    log = RunLog(tmp_path, 0, 10)
    batch = {
        "video": torch.randint(0, 255, (6, 3, 3, 8, 8), dtype=torch.uint8),  # (B, T, 3, H, W)
        "obs": {"corner_image": torch.zeros(6, 2, 3, 8, 8, dtype=torch.uint8), "goal": torch.zeros(6, 2, 3)},
    }
    log.images(0, sample_frames(batch))
    log.videos("rollout", 5, [video])
    log.close()
    images = tensorboard_images(tmp_path)
    assert set(images) == {"rollout/video/reach-v3_seed1000000", "samples/clip", "samples/corner_image"}
    (played,) = images["rollout/video/reach-v3_seed1000000"]
    assert played.step == 5 and played.encoded_image_string == video.read_bytes()  # the GIF, animated
    (clips,) = images["samples/clip"]
    assert (clips.height, clips.width) == (4 * 8, 3 * 8)  # 4 samples, one per row, their 3 frames


def test_sample_frames_match_the_batch():
    import torch

    from embodied.train.runlog import sample_frames

    video = torch.randint(0, 255, (2, 3, 3, 4, 5), dtype=torch.uint8)  # (B, T, 3, H, W)
    grid = sample_frames({"video": video})["samples/clip"]
    assert grid.shape == (2 * 4, 3 * 5, 3)
    assert np.array_equal(grid[4:8, 10:15], video[1, 2].permute(1, 2, 0).numpy())  # sample 1, frame 2


def test_rollout_videos_reach_wandb(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from embodied.train.config import WandbConfig
    from embodied.train.runlog import RunLog

    monkeypatch.setenv("WANDB_SILENT", "true")
    video = gif(tmp_path / "videos" / "reach-v3_seed1000000.gif")
    log = RunLog(tmp_path, 0, 10, wandb=WandbConfig(mode="offline", project="embodied-test"))
    log.videos("rollout", 5, [video])
    log.images(0, {"samples/clip": np.zeros((8, 8, 3), np.uint8)})
    log.close()
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    assert [p.read_bytes() for p in run.glob("files/media/videos/**/*.gif")] == [video.read_bytes()]
    assert len(list(run.glob("files/media/images/**/*.png"))) == 1


def test_training_rollouts_log_their_videos(tiny_run, monkeypatch):
    """The rollout hook asks the simulator's rollouts for GIFs (one episode per task by default)
    and logs what they wrote; the simulator is stood in for, to keep this fast."""
    import embodied.train.rollouts as rollouts
    from embodied.eval.results import build_results

    asked = []

    def evaluate_policy(policy, spec, settings, videos):
        asked.append(videos)
        for task in settings.tasks:
            gif(Path(videos.folder) / f"{task}_seed{settings.seed_start}.gif")
        return build_results(
            [], suite="metaworld", tasks=settings.tasks, episodes=1, seed_start=0, workers=1, protocol={}
        )

    monkeypatch.setattr(rollouts, "evaluate_policy", evaluate_policy)
    run = tiny_run("policy_quick", "rollout_every=2", "rollout_episodes=1")
    (videos,) = asked
    assert videos.episodes == 1 and videos.gif and Path(videos.folder) == run / "videos" / "step_2"
    tags = set(tensorboard_images(run))
    assert tags == {f"rollout/video/{p.stem}" for p in (run / "videos" / "step_2").glob("*.gif")} and tags
