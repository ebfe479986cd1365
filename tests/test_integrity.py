"""Integrity of what is written: Fletcher-32 checksums on every dataset (a changed byte is an
error naming the demo and key, in validate, the training reader and replay), files without
them noted and upgraded; a full disk while collecting, writing a video or the first
checkpoint ends in one line and leaves nothing half-written."""

from __future__ import annotations

import shutil
import subprocess

import h5py
import numpy as np
import pytest
from hdf5_contents import hdf5_arrays, hdf5_attrs

from embodied.cli.data import main as data_main
from embodied.data import inspect, schema
from embodied.data.reader import DemoDataset
from embodied.errors import UserError

IMAGE = "data/demo_1/obs/corner_image"
ACTIONS = "data/demo_0/actions"


def flip_byte(path, key: str, chunk: int = 0, at: int = 5) -> None:
    """Invert one byte inside chunk ``chunk`` of dataset ``key``, where its stored bytes lie."""
    with h5py.File(path, "r") as f:
        offset = f[key].id.get_chunk_info(chunk).byte_offset + at
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 0xFF]))


def test_collected_files_carry_a_checksum_on_every_dataset(demo_file):
    with h5py.File(demo_file, "r") as f:
        have, total = schema.checksummed(f)
    assert total > 10 and have == total
    assert inspect.checksum_notes([demo_file]) == []


@pytest.mark.parametrize("key", [IMAGE, ACTIONS])
def test_a_flipped_byte_is_named_by_demo_and_key(demo_copy, key, capsys):
    """The reader would otherwise return the changed number or pixel without a word."""
    flip_byte(demo_copy, key, chunk=1 if key == IMAGE else 0)
    where = key.removeprefix("data/")
    problems = inspect.validate([demo_copy])
    assert len(problems) == 1 and f"{demo_copy}: {where}: " in problems[0] and "checksum" in problems[0]
    assert data_main(["validate", str(demo_copy)]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "Traceback" not in err
    # the training reader: frames held in memory and read from disk per sample; actions at load
    mode = "clip" if key == IMAGE else "window"
    for cache in (4 << 30, 0):
        with pytest.raises(UserError, match=f"{where}: checksum mismatch"):
            ds = DemoDataset(demo_copy, split="all", mode=mode, clip_len=4, image_cache_bytes=cache)
            ds.__getitems__(list(range(len(ds))))


def test_replay_refuses_changed_actions_by_checksum(demo_copy, capsys):
    flip_byte(demo_copy, ACTIONS)
    assert data_main(["replay", str(demo_copy), "--demo", "demo_0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "demo_0/actions: checksum mismatch" in err


def test_files_without_checksums_validate_with_a_note_and_upgrade_adds_them(demo_file, tmp_path, capsys):
    """Files written before checksums (and robomimic's) still validate; ``upgrade --checksums``
    rewrites them with the same arrays and attributes, and a flipped byte is caught after."""
    plain = tmp_path / "plain.hdf5"
    with h5py.File(demo_file, "r") as src, h5py.File(plain, "w") as dst:
        for key in src:
            src.copy(src[key], dst)  # h5py copies the filters; strip them below
        for name in list(hdf5_arrays(plain)):
            data, ds_attrs = dst[name][()], dict(dst[name].attrs)
            del dst[name]
            dst.create_dataset(name, data=data)
            dst[name].attrs.update(ds_attrs)
        for key in src.attrs:
            dst.attrs[key] = src.attrs[key]
    before_arrays, before_attrs = hdf5_arrays(plain), hdf5_attrs(plain)
    with h5py.File(plain, "r") as f:
        assert schema.checksummed(f)[0] == 0
    assert data_main(["validate", str(plain)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid") and f"{plain}: no checksums" in out and "--checksums" in out

    assert data_main(["upgrade", str(plain), "--checksums"]) == 0
    assert "checksums (Fletcher-32) on every dataset" in capsys.readouterr().out
    with h5py.File(plain, "r") as f:
        have, total = schema.checksummed(f)
    assert have == total
    after = hdf5_arrays(plain)
    assert after.keys() == before_arrays.keys()
    for name, value in before_arrays.items():
        np.testing.assert_array_equal(after[name], value)
        assert after[name].dtype == value.dtype
    assert hdf5_attrs(plain) == before_attrs
    assert inspect.validate([plain]) == [] and inspect.checksum_notes([plain]) == []
    assert data_main(["upgrade", str(plain), "--checksums"]) == 0
    assert "unchanged" in capsys.readouterr().out
    flip_byte(plain, IMAGE)
    assert any("demo_1/obs/corner_image" in p and "checksum" in p for p in inspect.validate([plain]))


# -- a full disk ----------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A function ``kib -> folder`` on a tmpfs of that size (unmounted after the test); the test is
    skipped, with the reason, where one cannot be mounted (not root, no tmpfs)."""
    mounted = []

    def mount(kib: int):
        where = tmp_path / f"disk{len(mounted)}"
        where.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(where)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            pytest.skip(f"cannot mount a small tmpfs: {done.stderr.strip() or done.returncode}")
        mounted.append(where)
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", str(where)], check=False)


def one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.replace("\r", "\n").splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, captured.err
    return errors[0]


def test_collect_overwriting_onto_a_full_disk_is_one_line_and_keeps_the_old_file(
    demo_file, small_disk, collect_argv, capsys
):
    disk = small_disk(demo_file.stat().st_size // 1024 + 256)  # the old file and less than a demo
    old = disk / "reach-v3.hdf5"
    shutil.copyfile(demo_file, old)
    before = old.read_bytes()
    assert data_main([*collect_argv(disk, ("reach-v3",)), "--overwrite"]) == 2
    line = one_error_line(capsys)
    assert f"{disk}: cannot write (No space left on device)" in line
    assert old.read_bytes() == before  # the old file kept whole
    assert sorted(p.name for p in disk.iterdir()) == ["reach-v3.hdf5"]  # no partial file


def test_a_video_on_a_full_disk_is_one_line_and_never_written(demo_file, small_disk, capsys):
    """ffmpeg that cannot write exits and imageio says nothing: the frames are counted back."""
    disk = small_disk(16)
    out = disk / "demo.mp4"
    assert data_main(["video", str(demo_file), "--demo", "demo_0", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"{out}: cannot write (No space left on device" in line
    assert list(disk.iterdir()) == []  # neither the video nor its temporary file


def test_videos_are_written_atomically(tmp_path):
    from embodied.video import write_video

    frames = [np.full((16, 16, 3), i, np.uint8) for i in range(4)]

    def broken():
        yield from frames[:2]
        raise ValueError("the renderer failed")

    target = tmp_path / "v.mp4"
    with pytest.raises(ValueError):
        write_video(target, broken())
    assert list(tmp_path.iterdir()) == []
    assert write_video(target, frames) == target and list(tmp_path.iterdir()) == [target]


def test_a_full_disk_at_the_first_checkpoint_says_there_is_none(demo_dir, small_disk, capsys):
    from embodied.cli.train import main as train_main

    disk = small_disk(64)  # the run's config and log fit, its first checkpoint does not
    out = disk / "run"
    argv = [f"data.paths=[{demo_dir}]", "steps=2", "ckpt_every=2", "val_every=0", "data.batch_size=4"]
    assert train_main(["policy_quick", "--out", str(out), *argv]) == 2
    line = one_error_line(capsys)
    # torch's zip writer tells a full disk as a short write
    assert "cannot write (" in line and ("No space left" in line or "is the disk full?" in line)
    assert "no checkpoint was written" in line
    assert "--resume" not in line and not (out / "checkpoints" / "last.pt").exists()
