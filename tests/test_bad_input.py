"""Bad input through the ``embodied-data`` command: exit status 2, one clear line, no traceback,
nothing written. Each bad file is a copy of a good collected file, edited with h5py."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from embodied.cli.data import main

# -- helpers --------------------------------------------------------------------------------------


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(capsys, folder: Path, argv: list[str]) -> tuple[int, list[str]]:
    """Run the command; check that it wrote nothing into ``folder`` and printed no traceback."""
    before = _snapshot(folder)
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(folder) == before, "the command changed or left files behind"
    return rc, captured.err.strip().splitlines()


def _expect_error(capsys, folder: Path, argv: list[str], *needles: str) -> str:
    rc, err = _run(capsys, folder, argv)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err
    for needle in needles:
        assert needle in err[0], err[0]
    return err[0]


def _expect_invalid(capsys, path: Path, *needles: str) -> list[str]:
    """``validate`` lists one line per problem, each naming the file, then a count line."""
    rc, err = _run(capsys, path.parent, ["validate", path])
    assert rc == 2 and len(err) >= 2, err
    problems, summary = err[:-1], err[-1]
    assert summary == f"invalid: {len(problems)} problem(s)"
    assert all(line.startswith(f"{path}: ") for line in problems), problems
    for needle in needles:
        assert any(needle in line for line in problems), (needle, problems)
    return problems


def _replace(f: h5py.File, key: str, value) -> None:
    del f[key]
    f[key] = value


# -- files that are not demonstration files at all ------------------------------------------------
def _truncated(good: Path) -> None:
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])


def _not_hdf5(good: Path) -> None:
    good.write_text("demo_0,actions\n0.1,0.2\n")


@pytest.mark.parametrize("damage", [_truncated, _not_hdf5], ids=["truncated", "not-hdf5"])
def test_unreadable_file_is_one_line_for_every_verb(damage, demo_copy, capsys):
    damage(demo_copy)
    folder = demo_copy.parent
    problems = _expect_invalid(capsys, demo_copy, "not a readable HDF5 file")
    assert len(problems) == 1
    for argv in (
        ["info", demo_copy],
        ["replay", demo_copy, "--demo", "demo_0"],
        ["video", demo_copy, "--demo", "demo_0", "--out", folder / "v.mp4"],
    ):
        _expect_error(capsys, folder, argv, str(demo_copy), "not a readable HDF5 file")


def test_folder_without_files_and_missing_path(tmp_path, capsys):
    _expect_error(capsys, tmp_path, ["info", tmp_path], "holds no *.hdf5 files")
    _expect_error(capsys, tmp_path, ["validate", tmp_path / "nope.hdf5"], "no such file")


# -- schema violations ----------------------------------------------------------------------------
def _bad_range(f):
    a = f["data/demo_0/actions"]
    a[0, 0], a[3, 2] = 1.5, -3.0


def _empty_demo(f):
    g = f["data/demo_1"]
    for key in ("actions", "rewards", "dones", "states", *(f"obs/{k}" for k in g["obs"])):
        _replace(g, key, g[key][:0])
    g.attrs["num_samples"] = 0
    f["data"].attrs["total"] = f["data/demo_0"].attrs["num_samples"]


def _nan_obs(f):
    f["data/demo_0/obs/robot_state"][4, 1] = np.nan


def _inf_obs(f):
    f["data/demo_1/obs/goal"][0, 0] = np.inf


def _set(key, value):
    def edit(f):
        if value is None:
            del f[key]
        else:
            _replace(f, key, value(f[key][()]))

    return edit


def _attr(group, name, value):
    def edit(f):
        if value is None:
            del f[group].attrs[name]
        else:
            f[group].attrs[name] = value

    return edit


BAD_FILES = {
    # name: (edit, needles that some problem line contains)
    "no-data-group": (_set("data", None), ["/data: group missing"]),
    "no-obs-group": (_set("data/demo_0/obs", None), ["demo_0/obs: group missing"]),
    "no-actions": (_set("data/demo_1/actions", None), ["demo_1/actions: missing"]),
    "actions-strings": (  # float64 is fine (robomimic's own files hold it); text is not
        _set("data/demo_0/actions", lambda a: a.astype("S12")),
        ["demo_0/actions: dtype |S12, expected real numbers"],
    ),
    "obs-complex": (
        _set("data/demo_0/obs/goal", lambda a: a.astype(np.complex64)),
        ["demo_0/obs/goal: dtype complex64, expected real numbers"],
    ),
    "actions-1d": (_set("data/demo_0/actions", lambda a: a[:, 0]), ["demo_0/actions: shape"]),
    "obs-short": (
        _set("data/demo_0/obs/object_state", lambda a: a[:-1]),
        ["demo_0/obs/object_state: ", "steps, expected"],
    ),
    "image-float": (
        _set("data/demo_0/obs/corner_image", lambda a: a.astype(np.float32)),
        ["demo_0/obs/corner_image: dtype float32, expected uint8"],
    ),
    "image-gray": (
        _set("data/demo_0/obs/corner_image", lambda a: a[..., 0]),
        ["demo_0/obs/corner_image: shape"],
    ),
    "nan-in-obs": (_nan_obs, ["demo_0/obs/robot_state: 1 values not finite"]),
    "inf-in-obs": (_inf_obs, ["demo_1/obs/goal: 1 values not finite"]),
    "actions-outside": (_bad_range, ["demo_0/actions: 2 values outside [-1, 1]"]),
    "empty-demo": (_empty_demo, ["demo_1: empty demo"]),
    "no-seed": (_attr("data/demo_0", "seed", None), ["demo_0: attribute seed missing"]),
    "total-wrong": (_attr("data", "total", 3), ["/data: attribute total is 3 but"]),
    "env-args-not-json": (
        _attr("data", "env_args", "{env_name: x"),
        ["/data: attribute env_args is not a JSON"],
    ),
    "env-args-no-name": (
        _attr("data", "env_args", '{"type": "metaworld", "env_kwargs": {}}'),
        ["/data: env_args.env_name missing"],
    ),
    # (no /mask at all is valid: the demos are split when read; tests/test_robomimic_files.py)
    "mask-unknown-demo": (
        _set("mask/valid", lambda a: np.array([b"demo_9"])),
        ["mask/valid: names 1 demos that do not exist (demo_9)"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_validate_names_file_demo_and_key(case, demo_copy, capsys):
    edit, needles = BAD_FILES[case]
    with h5py.File(demo_copy, "r+") as f:
        edit(f)
    _expect_invalid(capsys, demo_copy, *needles)


@pytest.mark.parametrize(
    ("case", "verb", "needle"),
    [
        ("no-data-group", "info", "no /data group"),
        ("no-data-group", "replay", "no /data group"),
        ("no-actions", "replay", "demo_1/actions: missing"),
        ("env-args-not-json", "replay", "/data: attribute env_args is not JSON"),
        ("no-obs-group", "video", "demo_0/obs: no camera streams"),
        ("image-float", "video", "demo_0/obs/corner_image: shape"),
    ],
)
def test_other_verbs_on_bad_files(case, verb, needle, demo_copy, capsys):
    with h5py.File(demo_copy, "r+") as f:
        BAD_FILES[case][0](f)
    demo = "demo_1" if case == "no-actions" else "demo_0"
    argv = {
        "info": ["info", demo_copy],
        "replay": ["replay", demo_copy, "--demo", demo],
        "video": ["video", demo_copy, "--demo", demo, "--out", demo_copy.parent / "v.gif"],
    }[verb]
    _expect_error(capsys, demo_copy.parent, argv, str(demo_copy), needle)


# -- unknown names ----------------------------------------------------------------------------------
def test_unknown_demo_for_replay_and_video(demo_copy, capsys):
    folder = demo_copy.parent
    for argv in (
        ["replay", demo_copy, "--demo", "demo_42"],
        ["video", demo_copy, "--demo", "demo_42", "--out", folder / "x.mp4"],
    ):
        _expect_error(capsys, folder, argv, str(demo_copy), "no demo 'demo_42'", "demo_0, demo_1")


def test_unknown_camera_and_video_type(demo_copy, capsys):
    folder = demo_copy.parent
    _expect_error(
        capsys,
        folder,
        ["video", demo_copy, "--demo", "demo_0", "--camera", "topview", "--out", folder / "x.mp4"],
        "no stream topview_image; stored: corner",
    )
    _expect_error(
        capsys,
        folder,
        ["video", demo_copy, "--demo", "demo_0", "--out", folder / "x.avi"],
        "unknown video type .avi",
    )


# -- collect ----------------------------------------------------------------------------------------
def test_collect_unknown_task(tmp_path, capsys):
    argv = ["collect", "--tasks", "fly-to-the-moon-v3", "--episodes", "1", "--out", tmp_path / "out"]
    _expect_error(capsys, tmp_path, argv, "unknown metaworld task 'fly-to-the-moon-v3'", "reach-v3")
    assert not (tmp_path / "out").exists()


def test_collect_unknown_camera(tmp_path, capsys):
    argv = [
        "collect",
        "--tasks",
        "reach-v3",
        "--cameras",
        "helmet",
        "--episodes",
        "1",
        "--out",
        tmp_path / "out",
    ]
    _expect_error(capsys, tmp_path, argv, "unknown metaworld camera 'helmet'", "corner")
    assert not (tmp_path / "out").exists()


def test_collect_bad_number(tmp_path, capsys):
    argv = ["collect", "--tasks", "reach-v3", "--episodes", "0", "--out", tmp_path / "out"]
    _expect_error(capsys, tmp_path, argv, "episodes must be at least 1")


def test_collect_output_folder_not_writable(tmp_path, capsys):
    # Tests may run as root, where a chmod 0o500 folder stays writable; a path below a regular
    # file cannot be created by anyone.
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    argv = ["collect", "--tasks", "reach-v3", "--episodes", "1", "--out", blocker / "sub"]
    _expect_error(capsys, tmp_path, argv, f"output folder {blocker / 'sub'} is not writable")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_collect_read_only_folder(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        argv = ["collect", "--tasks", "reach-v3", "--episodes", "1", "--out", out]
        _expect_error(capsys, tmp_path, argv, "is not writable")
    finally:
        out.chmod(0o700)
