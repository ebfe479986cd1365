"""Fault injection: bad files, damaged checkpoints and failing disks, made here on the fly.

Every case asserts what a user sees (exit status 2 and one ``error:`` line, never a
traceback) and what is left on disk (nothing half-written, finished work kept). The data are
tiny synthetic demonstration files (2 tasks x 3 demos x 12 steps, an 8 px camera) and the
models a few thousand parameters, so the whole module takes seconds.
"""

from __future__ import annotations

import errno
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from embodied.cli.eval import main as eval_main
from embodied.cli.train import main as train_main
from embodied.data.schema import DemoFileWriter

ROOT = Path(__file__).resolve().parents[1]

REPO = Path(__file__).resolve().parents[1]
TASKS = ("reach-v3", "push-v3")
STEPS = 12
IMAGE = 8

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- helpers
def write_demos(path: Path, task: int, image: int = IMAGE, edit=None) -> Path:
    """A small valid demonstration file; ``edit(demo index, arrays, obs)`` may spoil it before writing."""
    rng = np.random.default_rng(task)
    env_args = {"env_name": TASKS[task], "type": "metaworld", "env_kwargs": {"cameras": ["corner"]}}
    with DemoFileWriter(path, env_args, "metaworld") as w:
        for demo in range(3):
            arrays = {
                "actions": np.tanh(rng.normal(size=(STEPS, 4))).astype(np.float32),
                "rewards": np.zeros(STEPS),
                "dones": np.zeros(STEPS),
                "states": np.zeros((STEPS, 5)),
            }
            obs = {
                "robot_state": rng.normal(size=(STEPS, 4)).astype(np.float32),
                "goal": np.full((STEPS, 3), task, np.float32),
                "corner_image": rng.integers(0, 255, (STEPS, image, image, 3), dtype=np.uint8),
            }
            if edit is not None:
                edit(demo, arrays, obs)
            attrs = {"task": TASKS[task], "class": TASKS[task][:-3], "instruction": f"do {TASKS[task]}"}
            attrs |= {"label": task, "instruction_id": task}
            w.add_demo(arrays, obs, attrs | {"seed": demo, "success": 1})
        w.finish(valid_fraction=0.34, split_seed=0)
    return path


def write_dataset(folder: Path, edit=None, image: int = IMAGE) -> Path:
    """Both tasks' files in ``folder``; ``edit`` spoils the second file only."""
    folder.mkdir(parents=True, exist_ok=True)
    write_demos(folder / f"{TASKS[0]}.hdf5", 0, image)
    write_demos(folder / f"{TASKS[1]}.hdf5", 1, image, edit)
    return folder


def policy_config(path: Path, data: Path, out: Path, **extra) -> Path:
    cfg = {
        "mode": "policy",
        "data": {"paths": [str(data)], "batch_size": 4},
        "policy": {"name": "bc_mlp", "obs_keys": ["robot_state", "goal"], "hidden_dim": 16, "num_layers": 1},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "steps": 2,
        "log_every": 1,
        "val_every": 2,
        "ckpt_every": 2,
        "out": str(out),
    }
    cfg.update(extra)
    path.write_text(yaml.safe_dump(cfg))
    return path


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def one_error(capsys, rc: int, *needles: str) -> str:
    """The command exited 2 with one ``error:`` line, the last on stderr (before it only what a
    long command prints as it goes: progress bars, its log), and no traceback."""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = [line for line in captured.err.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert rc == 2 and len(errors) == 1 and lines[-1] == errors[0], (rc, captured.err)
    assert "\x1b[" not in errors[0]  # no terminal colour codes
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("faults") / "data")


@pytest.fixture(scope="module")
def run(data, tmp_path_factory) -> Path:
    """A trained tiny policy run (read only: tests copy what they damage)."""
    root = tmp_path_factory.mktemp("run")
    out = root / "policy"
    assert train_main([str(policy_config(root / "policy.yaml", data, out))]) == 0
    return out


@pytest.fixture
def run_copy(run, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


# --------------------------------------------------------------------------- checkpoint integrity
def flip_tensor_bytes(path: Path) -> None:
    """Change bytes inside the stored tensor data of a checkpoint, as a failing disk would: the
    zip and pickle structure stay intact, so ``torch.load`` reads it without complaint."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        header = info.header_offset
    raw = bytearray(path.read_bytes())
    name_len, extra_len = (
        int.from_bytes(raw[header + 26 : header + 28], "little"),
        int.from_bytes(raw[header + 28 : header + 30], "little"),
    )
    start = header + 30 + name_len + extra_len  # the stored (uncompressed) bytes of the largest tensor
    for i in range(start, start + 64):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_checkpoint_carries_a_hash_that_matches(run):
    from embodied.train.checkpoint import content_hash, read_checkpoint

    for name in ("last.pt", "best.pt"):
        payload = read_checkpoint(run / "checkpoints" / name)
        assert payload["hash"].startswith("sha256:") and payload["hash"] == content_hash(payload)


def test_flipped_bytes_refused_by_eval_resume_and_probe(run_copy, tmp_path, capsys):
    last = run_copy / "checkpoints" / "last.pt"
    flip_tensor_bytes(last)
    torch.load(last, weights_only=True)  # still loads: only the hash can tell
    before = files_under(run_copy)
    rc = eval_main([str(run_copy), "--episodes", "1", "--workers", "0"])
    one_error(capsys, rc, str(last), "corrupted")
    rc = train_main(["--resume", str(run_copy), "steps=4"])
    one_error(capsys, rc, str(last), "corrupted")
    probe = {
        "mode": "probe",
        "probe": {"policy_ckpt": str(last), "recognizer_ckpt": str(last)},
        "mirror": {"dim": 8},
        "out": str(tmp_path / "probe"),
    }
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(probe))
    rc = train_main([str(tmp_path / "probe.yaml")])
    one_error(capsys, rc, str(last), "corrupted")
    assert files_under(run_copy) == before and not (tmp_path / "probe").exists()


def test_a_changed_number_is_refused_too(run_copy, capsys):
    from embodied.train.checkpoint import read_checkpoint

    last = run_copy / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    payload["train"]["step"] = 1  # a re-saved file whose stored hash no longer fits
    torch.save(payload, last)
    with pytest.raises(Exception, match="corrupted"):
        read_checkpoint(last)


def test_checkpoint_without_a_hash_still_loads(run_copy):
    from embodied.train.checkpoint import load_model

    last = run_copy / "checkpoints" / "last.pt"
    payload = torch.load(last, weights_only=True)
    del payload["hash"]  # as written before checkpoints carried one
    torch.save(payload, last)
    kind, models, _, _ = load_model(last)
    assert kind == "policy" and "policy" in models


def test_resume_removes_the_temporary_file_of_a_killed_save(run_copy, capsys):
    dead = run_copy / "checkpoints" / ".last.pt.4194305.tmp"  # above Linux's pid_max: no live process
    dead.write_bytes(b"half a checkpoint")
    summary = run_copy / ".summary.json.4194305.tmp"
    summary.write_text('{"steps": ')
    foreign = run_copy / ".notes.4194305.tmp"  # not a file a run writes: not ours to remove
    foreign.write_text("mine")
    assert train_main(["--resume", str(run_copy), "steps=4", "val_every=0"]) == 0
    assert not dead.exists() and not summary.exists() and foreign.exists()
    assert [p.name for p in run_copy.rglob(".*tmp")] == [foreign.name]
    assert "removed" in capsys.readouterr().err


# --------------------------------------------------------------------------- foreign checkpoint files
def _text(path: Path) -> None:
    path.write_text("step,loss\n1,0.5\n")


def _hdf5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3)


def _pickle(path: Path) -> None:
    path.write_bytes(pickle.dumps({"weights": [1.0, 2.0], "f": Path("x")}))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _tensor(path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, path)


@pytest.mark.parametrize("make", [_text, _hdf5, _pickle, _empty, _tensor], ids=lambda f: f.__name__[1:])
def test_a_foreign_file_as_checkpoint_is_one_plain_line(make, tmp_path, capsys):
    path = tmp_path / "model.pt"
    make(path)
    rc = eval_main([str(path), "--episodes", "1", "--out", str(tmp_path / "eval")])
    line = one_error(capsys, rc, str(path))
    assert "weights_only" not in line and "(105)" not in line and len(line) < 200, line
    assert not (tmp_path / "eval").exists()


# --------------------------------------------------------------------------- one data checker
def _replace(f: h5py.File, key: str, make) -> None:
    value = make(f[key][()])
    del f[key]
    f[key] = value


def _set(key: str, make):
    return lambda f: _replace(f, f"data/demo_1/{key}", make)


def _poke(key: str, index, value):
    def edit(f):
        f[f"data/demo_1/{key}"][index] = value

    return edit


def _drop(key: str):
    def edit(f):
        del f[f"data/demo_1/{key}"]

    return edit


BAD_DATA = {
    # case: (edit of the second file's demo_1, what the line names, replay refuses it too)
    "no-actions": (_drop("actions"), "demo_1/actions: missing", True),
    "actions-wrong-width": (
        _set("actions", lambda a: np.zeros((len(a), 5), a.dtype)),
        "demo_1/actions: width 5",
        False,
    ),
    "obs-shorter-than-actions": (
        _set("obs/robot_state", lambda a: a[:-1]),
        "demo_1/obs/robot_state: 11 steps, expected 12",
        True,
    ),
    "nan-in-obs": (
        _poke("obs/robot_state", (3, 1), np.nan),
        "demo_1/obs/robot_state: 1 values not finite",
        True,
    ),
    "inf-in-actions": (_poke("actions", (2, 0), np.inf), "demo_1/actions: 1 values not finite", True),
    "actions-outside-range": (
        _poke("actions", (0, 0), 1.5),
        "demo_1/actions: 1 values outside [-1, 1]",
        True,
    ),
    "actions-strings": (
        _set("actions", lambda a: a.astype("S12")),
        "demo_1/actions: dtype |S12, expected real numbers",
        True,
    ),
    "obs-complex": (
        _set("obs/goal", lambda a: a.astype(np.complex64)),
        "demo_1/obs/goal: dtype complex64",
        True,
    ),
    "obs-key-missing": (_drop("obs/goal"), "demo_1", False),
}


@pytest.fixture
def bad_data(request, tmp_path) -> tuple[Path, Path, str, bool]:
    """(folder, spoiled file, needle, replay refuses) for the BAD_DATA case ``request.param``."""
    edit, needle, replayed = BAD_DATA[request.param]
    folder = write_dataset(tmp_path / "data")
    spoiled = folder / f"{TASKS[1]}.hdf5"
    with h5py.File(spoiled, "r+") as f:
        edit(f)
    return folder, spoiled, needle, replayed


@pytest.mark.parametrize("bad_data", sorted(BAD_DATA), indirect=True)
def test_what_validate_refuses_training_and_replay_refuse(bad_data, tmp_path, capsys):
    from embodied.cli.data import main as data_main

    folder, spoiled, needle, replayed = bad_data
    rc = data_main(["validate", str(folder)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert any(line.startswith(f"{spoiled}: ") and needle in line for line in err.splitlines()), err

    out = tmp_path / "run"
    rc = train_main([str(policy_config(tmp_path / "p.yaml", folder, out))])
    one_error(capsys, rc, str(spoiled), needle)
    assert not out.exists()  # refused before anything was written: the rerun is not blocked

    if replayed:
        rc = data_main(["replay", str(spoiled), "--demo", "demo_1"])
        one_error(capsys, rc, str(spoiled), needle)


def test_mixed_image_sizes_refused_by_validate_and_training(tmp_path, capsys):
    from embodied.cli.data import main as data_main

    folder = tmp_path / "data"
    folder.mkdir()
    write_demos(folder / f"{TASKS[1]}.hdf5", 1, image=8)  # push-v3: read first
    spoiled = write_demos(folder / f"{TASKS[0]}.hdf5", 0, image=16)
    needle = "demo_0/obs/corner_image: 16x16 frames, but"
    rc = data_main(["validate", str(folder)])
    err = capsys.readouterr().err
    assert rc == 2 and any(line.startswith(f"{spoiled}: ") and needle in line for line in err.splitlines())
    out = tmp_path / "run"
    cfg = policy_config(
        tmp_path / "r.yaml",
        folder,
        out,
        mode="recognizer",
        policy=None,
        recognizer={"name": "conv3d", "width": 4, "depth": 2},
    )
    one_error(capsys, train_main([str(cfg)]), str(spoiled), needle, "8x8 frames")
    assert not out.exists()


def test_float64_data_are_valid_for_every_reader(tmp_path, capsys):
    """robomimic's own files hold float64: validate and training agree that they are fine."""
    from embodied.cli.data import main as data_main

    folder = write_dataset(tmp_path / "data")
    with h5py.File(folder / f"{TASKS[1]}.hdf5", "r+") as f:
        for demo in f["data"]:
            _replace(f, f"data/{demo}/actions", lambda a: a.astype(np.float64))
            _replace(f, f"data/{demo}/obs/robot_state", lambda a: a.astype(np.float64))
    assert data_main(["validate", str(folder)]) == 0
    assert train_main([str(policy_config(tmp_path / "p.yaml", folder, tmp_path / "run"))]) == 0


# --------------------------------------------------------------------------- bad numbers, unwritable places
@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--action-noise", "-1"], "action_noise must be a finite number >= 0"),
        (["--action-noise", "nan"], "action_noise must be a finite number"),
        (["--horizon", "-1"], "horizon (0: the task's default) must be in [0, 10000]"),
        (["--episodes", "0"], "episodes must be at least 1"),
    ],
)
def test_collect_refuses_bad_numbers_at_once(flags, needle, tmp_path, capsys):
    from embodied.cli.data import main as data_main

    rc = data_main(["collect", "--tasks", "reach-v3", *flags, "--out", str(tmp_path / "out")])
    one_error(capsys, rc, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--episodes", "0"], "--episodes must be at least 1"),
        (["--horizon", "-1"], "--horizon must be at least 0"),
        (["--seed-start", "-1"], "--seed-start must be at least 0"),
        (["--workers", "-2"], "--workers must be at least 0"),
    ],
)
def test_eval_refuses_bad_numbers_at_once(flags, needle, run, tmp_path, capsys):
    rc = eval_main([str(run), *flags, "--out", str(tmp_path / "eval")])
    one_error(capsys, rc, needle)
    assert not (tmp_path / "eval").exists()


def test_eval_checks_out_before_rolling_out(run, tmp_path, capsys, monkeypatch):
    import embodied.eval.rollout as rollout

    def no_rollouts(*args, **kwargs):
        raise AssertionError("rolled out before checking --out")

    monkeypatch.setattr(rollout, "evaluate_policy", no_rollouts)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    rc = eval_main([str(run), "--episodes", "1", "--out", str(blocker / "eval")])
    one_error(capsys, rc, str(blocker / "eval"), "is a file")
    assert blocker.read_text() == "a file, not a folder"


def test_train_checks_out_before_reading_data(data, tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    rc = train_main([str(policy_config(tmp_path / "p.yaml", data, blocker / "run"))])
    one_error(capsys, rc, str(blocker / "run"), "is a file")


# --------------------------------------------------------------------------- a full disk mid-run
def _full_disk_after(calls: int, real, kind: str = "oserror"):
    """A stand-in for a writer that works ``calls`` times, then writes half a file and fails as a
    full disk does (an OSError, or torch's RuntimeError from its zip writer)."""
    count = {"n": 0}

    def write(obj, path, *args, **kwargs):
        count["n"] += 1
        if count["n"] <= calls:
            return real(obj, path, *args, **kwargs)
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        if kind == "oserror":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4352 vs 4288")

    return write


@pytest.mark.parametrize("kind", ["oserror", "torch"])
def test_full_disk_while_saving_a_checkpoint(kind, data, tmp_path, capsys, monkeypatch):
    import embodied.train.checkpoint as ckpt
    from embodied.train.checkpoint import read_checkpoint

    out = tmp_path / "run"
    cfg = policy_config(tmp_path / "p.yaml", data, out, steps=4, val_every=0)
    # step 2 saves last.pt; step 4 finds the disk full
    monkeypatch.setattr(ckpt.torch, "save", _full_disk_after(1, torch.save, kind))
    one_error(capsys, train_main([str(cfg)]), "cannot write", "is kept", f"--resume {out}")
    assert read_checkpoint(out)["train"]["step"] == 2  # the finished work, whole
    assert not [p for p in (out / "checkpoints").iterdir() if p.name != "last.pt"]  # nothing half-written
    monkeypatch.undo()
    assert train_main(["--resume", str(out)]) == 0  # room again: the rerun goes on
    assert read_checkpoint(out)["train"]["step"] == 4


FULL_DISK_UNDER_TENSORBOARD = """
import errno, os, sys
from pathlib import Path
from tensorboard.summary.writer import record_writer
from embodied.cli.train import main

out, real = Path(sys.argv[2]), record_writer.RecordWriter.write

def write(self, data):
    if (out / "checkpoints" / "last.pt").exists():  # the disk fills up after the first checkpoint
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real(self, data)

record_writer.RecordWriter.write = write
sys.exit(main([sys.argv[1]]))
"""


def test_full_disk_under_the_tensorboard_writer(data, tmp_path):
    """TensorBoard's own writer thread finds the disk full: one line, exit 2, and no traceback
    from that thread (a real process: pytest would catch a thread's exception itself); the last
    checkpoint whole, and the run resumes once there is room."""
    from embodied.train.checkpoint import read_checkpoint

    out = tmp_path / "run"
    cfg = policy_config(tmp_path / "p.yaml", data, out, steps=6, val_every=0, log_every=1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_UNDER_TENSORBOARD, str(cfg), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert lines[-1].startswith("error: ") and "No space left on device" in lines[-1], lines[-1]
    assert f"--resume {out}" in lines[-1]
    assert read_checkpoint(out)["train"]["step"] in (2, 4)  # whole, where the disk filled
    assert train_main(["--resume", str(out)]) == 0  # room again: the rerun goes on
    assert read_checkpoint(out)["train"]["step"] == 6


def test_full_disk_while_writing_a_video(run, tmp_path, capsys, monkeypatch):
    """The second video finds the disk full: one line, exit 2, the first video and the finished
    episode kept in results.json, no part of a video left."""
    import imageio.v2 as imageio

    real = imageio.get_writer
    count = {"n": 0}

    class FullDisk:
        def __init__(self, path, **kwargs):
            self.path = Path(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def close(self):
            pass

        def append_data(self, frame):
            self.path.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def get_writer(path, **kwargs):
        count["n"] += 1
        return real(path, **kwargs) if count["n"] == 1 else FullDisk(path, **kwargs)

    monkeypatch.setattr(imageio, "get_writer", get_writer)
    out = tmp_path / "eval"
    argv = [
        str(run),
        "--tasks",
        "reach-v3",
        "--episodes",
        "3",
        "--videos",
        "3",
        "--horizon",
        "4",
        "--workers",
        "0",
    ]
    rc = eval_main([*argv, "--out", str(out)])
    line = one_error(capsys, rc, "No space left on device", "finished episode(s) are in")
    import json

    results = json.loads((out / "results.json").read_text())
    assert len(results["episodes"]) == 1 and results["interrupted"] is True, line
    videos = sorted(p.name for p in (out / "videos").iterdir())
    assert len(videos) == 1 and videos[0].endswith(".mp4") and not videos[0].startswith(".")


def test_full_disk_while_collecting(tmp_path, capsys, monkeypatch):
    """A worker's write fails on a full disk: one line, exit 2, its partial file removed."""
    import concurrent.futures as cf

    import embodied.data.collect as collect
    from embodied.cli.data import main as data_main

    class FullDiskPool:  # in process: a worker that wrote half a file, then found the disk full
        def __init__(self, *args, **kwargs):
            pass

        def submit(self, fn, cfg, task, path, progress):
            Path(path + ".part").write_bytes(b"\x89HDF half a file")
            fut = cf.Future()
            fut.set_exception(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
            return fut

        def shutdown(self, *args, **kwargs):
            pass

    monkeypatch.setattr(collect, "ProcessPoolExecutor", FullDiskPool)
    out = tmp_path / "out"
    rc = data_main(["collect", "--tasks", "reach-v3", "--episodes", "1", "--out", str(out)])
    one_error(capsys, rc, str(out), "No space left on device", "no partial file left")
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- process hygiene
def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_collect_leaves_no_process_and_a_rerun_copes(tmp_path):
    """SIGKILL of collect's main process takes its worker and Manager with it (the issue saw
    them writing for over a minute); a rerun at once replaces the stale .part."""
    out = tmp_path / "out"
    argv = ["collect", "--tasks", "reach-v3", "--image-size", "8", "--workers", "1", "--out", str(out)]
    cmd = [sys.executable, "-m", "embodied.cli.data", *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*cmd, "--episodes", "40"], cwd=REPO, env=env, stderr=subprocess.DEVNULL)
    part = out / "reach-v3.hdf5.part"
    deadline = time.monotonic() + 120
    while not part.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)  # until the worker is writing
    assert part.exists(), "the worker never started"
    children = _children(proc.pid)
    assert children
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while any(map(_running, children)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_running, children)), "a child of the killed collect lives on"
    done = subprocess.run([*cmd, "--episodes", "1"], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["reach-v3.hdf5"]


def test_diverged_training_is_one_line_and_keeps_the_checkpoint(data, tmp_path, capsys, monkeypatch):
    """A loss that turns NaN (here from step 3 on) used to end in KeyError: 'loss'."""
    import embodied.train.loop as loop
    from embodied.train.checkpoint import read_checkpoint

    real, steps = loop.update_step, []

    def update_step(*args, **kwargs):
        metrics = real(*args, **kwargs)
        steps.append(1)
        return {**metrics, "loss": float("nan")} if len(steps) > 2 else metrics

    monkeypatch.setattr(loop, "update_step", update_step)
    out = tmp_path / "run"
    cfg = policy_config(tmp_path / "p.yaml", data, out, steps=4, val_every=0, log_every=2)
    one_error(capsys, train_main([str(cfg)]), "training diverged", "step 4", f"checkpoint in {out} is kept")
    assert read_checkpoint(out)["train"]["step"] == 2
    # diverged before the first checkpoint: the line does not promise one
    steps.clear()
    early = tmp_path / "early"
    cfg = policy_config(tmp_path / "q.yaml", data, early, steps=4, val_every=0, log_every=1, ckpt_every=4)
    one_error(capsys, train_main([str(cfg)]), "training diverged", f"no checkpoint was written to {early}")


def test_bench_refuses_an_output_folder_it_cannot_make_before_any_work(tmp_path, capsys):
    from embodied.cli.bench import main as bench_main

    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    rc = bench_main(["--preset", "quick", "--out", str(blocker / "bench")])
    one_error(capsys, rc, str(blocker / "bench"), "is a file")
    assert blocker.read_text() == "a file, not a folder"
