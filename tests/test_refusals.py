"""What a user can get wrong ends in one line and exit status 2, and the commands do what they
say: YAML that is not UTF-8, bad --seeds, files of mixed image sizes to export, --videos-only
with no videos, a malformed --crop, and data a user named that cannot be read; and what
tools/fuzz_cli.py found (issue 30 item 5): NaN and infinity in settings, seeds, threads and step
counts past their range, an output folder that cannot be made, W&B refusing to start, a video
transformer's patch or tubelet larger than its input, --data that would go unread."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from embodied.cli.data import main as data_main
from embodied.data.schema import DemoFileWriter


def one_line(capsys, *needles: str) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, captured.err
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def latin1_yaml(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("mode: policy\nnote: caf\u00e9\n".encode("latin-1"))
    return path


def test_yaml_that_is_not_utf8_is_one_line_everywhere(latin1_yaml, tmp_path, capsys):
    from embodied.cli.bench import main as bench_main
    from embodied.cli.train import main as train_main

    assert train_main([str(latin1_yaml), "--out", str(tmp_path / "run")]) == 2
    one_line(capsys, str(latin1_yaml), "not UTF-8")
    assert data_main(["collect", str(latin1_yaml)]) == 2
    one_line(capsys, str(latin1_yaml), "not UTF-8")
    assert bench_main(["--preset", str(latin1_yaml)]) == 2
    one_line(capsys, str(latin1_yaml), "not UTF-8")


@pytest.mark.parametrize("seeds", ["0", "-2"])
def test_bench_seeds_below_one_are_one_line(seeds, tmp_path, capsys):
    from embodied.cli.bench import main as bench_main

    assert bench_main(["--preset", "quick", "--seeds", seeds, "--out", str(tmp_path / "b")]) == 2
    one_line(capsys, f"--seeds {seeds}", "seeds must be at least 1")
    assert not (tmp_path / "b").exists()


def write_images(path, side: int) -> None:
    """A one-demo Meta-World-shaped file with ``side`` px corner images."""
    env_args = {"env_name": "reach-v3", "type": "metaworld", "env_kwargs": {"cameras": ["corner"]}}
    n = 5
    with DemoFileWriter(path, env_args, "metaworld") as w:
        w.add_demo(
            {
                "actions": np.zeros((n, 4)),
                "rewards": np.zeros(n),
                "dones": np.zeros(n),
                "states": np.zeros((n, 3)),
            },
            {"robot_state": np.zeros((n, 4)), "corner_image": np.zeros((n, side, side, 3), np.uint8)},
            {"task": "reach-v3", "instruction": "reach", "class": "reach", "label": 0, "instruction_id": 0}
            | {"seed": 0, "success": 1},
        )
        w.finish(0.0, split_seed=0)


def test_export_refuses_files_of_mixed_image_sizes(tmp_path, capsys):
    write_images(tmp_path / "a.hdf5", 16)
    write_images(tmp_path / "b.hdf5", 24)
    out = tmp_path / "export"
    argv = [
        "export",
        str(tmp_path / "a.hdf5"),
        str(tmp_path / "b.hdf5"),
        "--format",
        "lerobot",
        "--out",
        str(out),
    ]
    assert data_main([*argv, "--fps", "10"]) == 2
    one_line(capsys, "b.hdf5", "corner_image", "24x24 frames", "files read together must agree")
    assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--videos-only", "--videos", "0"], "--videos-only --videos 0 would render nothing"),
        (["--crop", "1,2,x"], "--crop '1,2,x'"),
        (["--crop", "0,0,0,5"], "--crop '0,0,0,5'"),
    ],
)
def test_eval_refuses_what_it_would_not_do(flags, needle, tmp_path, capsys):
    from embodied.cli.eval import main as eval_main

    # refused before the checkpoint is looked for: no run needed
    assert eval_main([str(tmp_path / "no-such-run"), *flags]) == 2
    one_line(capsys, needle)


def test_eval_data_a_user_named_is_read_or_refused(tiny_run, demo_file, tmp_path, capsys):
    """Only the run's own data, which may have moved since training, is skipped with a note;
    a file given with --data that cannot be read is an error."""
    from embodied.cli.eval import main as eval_main

    run = tiny_run("joint_quick")
    truncated = tmp_path / "truncated.hdf5"
    shutil.copyfile(demo_file, truncated)
    with open(truncated, "r+b") as fh:
        fh.truncate(truncated.stat().st_size // 2)
    argv = [str(run), "--episodes", "1", "--workers", "0", "--horizon", "2", "--out", str(tmp_path / "e")]
    assert eval_main([*argv, "--data", str(truncated)]) == 2
    one_line(capsys, str(truncated))
    assert not (tmp_path / "e" / "results.json").exists()


# --------------------------------------------------------------------------- found by tools/fuzz_cli.py
@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.lr=.inf", "optim.lr must be a finite number, got inf"),
        ("optim.grad_clip=.nan", "optim.grad_clip must be a finite number, got nan"),
        ("mirror.temperature=.nan", "mirror.temperature must be a finite number"),
        ("optim.betas=[0.9,.inf]", "optim.betas[1] must be a finite number"),
        ("seed=-1", "seed must be in [0, 4294967295], got -1"),
        ("seed=1180591620717411303424", "seed must be in [0, 4294967295]"),
        ("threads=100000", "threads must be in [0, 1024], got 100000"),
        ("steps=100000000000000000000", "steps must be in [1, 1000000000]"),
        ("data.image_cache_bytes=-1", "image_cache_bytes must be >= 0"),
    ],
)
def test_train_values_past_their_range_are_one_line(override, needle, tmp_path, capsys):
    """NaN and infinity in any float setting (no setting means either), a seed torch and NumPy
    cannot take, more threads than OpenMP can start, a step count past int64: one line each,
    before any data is read, and no run folder."""
    from embodied.cli.train import main as train_main

    out = tmp_path / "run"
    assert train_main(["joint_quick", "--out", str(out), override]) == 2
    one_line(capsys, needle)
    assert not out.exists()


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"episodes": 10**12}, "episodes must be at most 100000"),
        ({"seed_start": 2**64}, "seed_start must be at most 4294967286 for 10 episodes"),
        ({"episodes": 10, "seed_start": 2**32 - 5}, "the last episode's seed at most 4294967295"),
        ({"protocol_seed": 2**40}, "protocol_seed must be at most 4294967295"),
    ],
)
def test_eval_settings_have_upper_ends(fields, needle):
    """A trillion episodes ran for ever; a seed past 2**32 - 1 was taken and wrapped."""
    import re

    from embodied.eval.settings import EvalSettings

    with pytest.raises(ValueError, match=re.escape(needle)):
        EvalSettings(**fields)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_train_output_folder_that_cannot_be_made_is_one_line(demo_dir, capsys):
    """/proc passes the writability check (it is a folder root may write to) but refuses new
    folders: the run's first write is one line, not a FileNotFoundError."""
    from embodied.cli.train import main as train_main

    out = "/proc/embodied-no-such-run"
    argv = ["policy_quick", "--out", out, f"data.paths=[{demo_dir}]", "steps=1", "data.batch_size=4"]
    assert train_main(argv) == 2
    one_line(capsys, out, "cannot write the run's outputs")


def test_wandb_that_does_not_start_is_one_line_and_leaves_nothing(demo_dir, tmp_path, monkeypatch, capsys):
    """wandb.mode=online without an API key raised W&B's UsageError as a traceback, after the run
    folder had its config.yaml, metrics.jsonl and TensorBoard file: now one line, and no folder."""
    wandb = pytest.importorskip("wandb")
    from embodied.cli.train import main as train_main

    def refuse(**_):
        raise wandb.errors.UsageError("No API key configured. Use `wandb login` to log in.")

    monkeypatch.setattr(wandb, "init", refuse)
    out = tmp_path / "run"
    argv = ["policy_quick", "--out", str(out), f"data.paths=[{demo_dir}]", "steps=1", "data.batch_size=4"]
    assert train_main([*argv, "wandb.mode=online"]) == 2
    one_line(capsys, "wandb.mode online", "No API key configured", "wandb.mode=offline")
    assert not out.exists()


def test_video_transformer_refuses_patches_past_the_frame_and_tubelets_past_the_clip():
    """Both were accepted: a 1000 px patch enlarged 16 px frames to 1000 px (12 s a step), a
    100-frame tubelet padded 4-frame clips with 96 copies of their last frame."""
    from embodied.config import from_dict
    from embodied.data.spec import DataSpec
    from embodied.errors import UserError
    from embodied.recognizers import RecognizerConfig, build_recognizer

    spec = DataSpec(num_classes=3, num_instructions=5, clip_len=4, image_size=16)
    tiny = {"name": "video_transformer", "width": 8, "heads": 2, "depth": 1}
    with pytest.raises(UserError, match="patch_size 32 is larger than the 16 px frames"):
        build_recognizer(from_dict(RecognizerConfig, {**tiny, "patch_size": 32}), spec)
    with pytest.raises(UserError, match=r"tubelet_frames 8 is longer than the clips \(data.clip_len 4\)"):
        build_recognizer(from_dict(RecognizerConfig, {**tiny, "patch_size": 8, "tubelet_frames": 8}), spec)
    build_recognizer(from_dict(RecognizerConfig, {**tiny, "patch_size": 16, "tubelet_frames": 4}), spec)


def test_eval_data_for_a_checkpoint_without_recognizer_is_refused(tiny_run, demo_file, tmp_path, capsys):
    """--data feeds the recognizer's report only; with a policy checkpoint it went unread, even
    a path that did not exist, and the command said nothing."""
    from embodied.cli.eval import main as eval_main

    run = tiny_run("policy_quick")
    out = tmp_path / "e"
    argv = [str(run), "--episodes", "1", "--workers", "0", "--horizon", "2", "--out", str(out)]
    assert eval_main([*argv, "--data", str(demo_file)]) == 2
    one_line(capsys, "--data", "holds no recognizer")
    assert not out.exists()


def test_bench_seeds_past_the_most_are_one_line(tmp_path, capsys):
    """--seeds 1000000000 looked for a billion seeds' runs, for ever, even with --report-only."""
    from embodied.cli.bench import main as bench_main

    argv = ["--preset", "quick", "--seeds", "1000000000", "--out", str(tmp_path / "b"), "--report-only"]
    assert bench_main(argv) == 2
    one_line(capsys, "--seeds 1000000000", "seeds must be at most 1000")
    assert not (tmp_path / "b").exists()
