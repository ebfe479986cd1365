"""What a user can get wrong ends in one line and exit status 2, and the commands do what they
say: YAML that is not UTF-8, bad --seeds, files of mixed image sizes to export, --videos-only
with no videos, a malformed --crop, and data a user named that cannot be read."""

from __future__ import annotations

import shutil

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
