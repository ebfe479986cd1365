"""Faults under DDP: ``torchrun --nproc_per_node=2`` on gloo, on the CPU, with tiny data and models.

What a user must see when one or every process of a DDP run meets a fault: every process stops
within seconds (gloo would otherwise wait 30 minutes in the next collective), one ``error:``
line (from the process that failed; the others exit 2 quietly), no worker traceback, exit
status 2 from every process, the last whole checkpoint kept and nothing half-written, and
``torchrun ... --resume`` going on from it. torchrun prints its own report (a traceback of its
own ending in ChildFailedError, and a table of the ranks' exit codes) after ours; that part is
torchrun's. Each case is a real torchrun of 2 processes (about 6-10 s each here); the data
and configs are those of tests/test_faults.py and tests/test_train.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import pytest
from test_faults import BAD_DATA, TASKS, files_under, policy_config, write_dataset
from test_train import assert_same_training, config_dict, events, write_config, write_task

from embodied.errors import Stopped, run_cli
from embodied.train.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

# Runs ``embodied.cli.train`` in each process with the faults the environment asks for, and
# writes the process's exit status to <STATUS_DIR>/rank<R> (torchrun's report of it is torchrun's).
RUNNER = textwrap.dedent("""
    import errno, os, signal, sys, time
    from pathlib import Path
    import embodied.train.checkpoint as ckpt
    import embodied.train.loop as loop

    rank, env = int(os.environ["RANK"]), os.environ
    saves, steps = [0], [0]
    real_save, real_step = ckpt.torch.save, loop.update_step

    def save(obj, path, *args, **kwargs):  # FULL_DISK_AT_SAVE: that checkpoint finds the disk full
        if isinstance(path, (str, Path)) and rank == int(env.get("FAULT_RANK", "0")):
            saves[0] += 1
            if saves[0] == int(env.get("FULL_DISK_AT_SAVE", "0")):
                Path(path).write_bytes(b"PK\\x03\\x04 half a checkpoint")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, path, *args, **kwargs)

    def update_step(*args, **kwargs):
        metrics = real_step(*args, **kwargs)
        steps[0] += 1
        if rank == int(env.get("FAULT_RANK", "0")) and steps[0] == int(env.get("KILL_AT_STEP", "0")):
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no flushing: as a killed job
        if rank == 0 and steps[0] == int(env.get("MARK_AT_STEP", "0")):
            Path(env["MARK"]).write_text("")
        time.sleep(float(env.get("STEP_SLEEP", "0")))
        return metrics

    ckpt.torch.save, loop.update_step = save, update_step
    from embodied.cli.train import main
    code = main(sys.argv[2:])
    Path(sys.argv[1], f"rank{rank}").write_text(str(code))
    sys.exit(code)
""")


def torchrun(tmp_path: Path, args: list[str], start: bool = False, **env) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=2`` of the runner with ``args`` (embodied-train's);
    ``env`` sets its faults. ``start``: the Popen, in a process group of its own (as a terminal's job)."""
    script = tmp_path / "runner.py"
    script.write_text(RUNNER)
    status = tmp_path / "status"
    status.mkdir(exist_ok=True)
    for old in status.iterdir():
        old.unlink()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(script), str(status), *args]
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    full_env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": path,
        **{k: str(v) for k, v in env.items()},
    }
    if start:
        return subprocess.Popen(
            cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=240)


def statuses(tmp_path: Path) -> dict[int, int]:
    """Each process's exit status, as it returned it (a process killed before has none)."""
    return {int(p.name[4:]): int(p.read_text()) for p in (tmp_path / "status").iterdir()}


def worker_tracebacks(stderr: str) -> list[str]:
    """The tracebacks in ``stderr`` that are not torchrun's own (its report of a failed worker)."""
    blocks = stderr.split("Traceback (most recent call last):")[1:]
    return [b for b in blocks if "torch/distributed/run.py" not in b]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.replace("\r", "\n").splitlines() if line.startswith("error: ")]


def assert_one_error_and_quiet_ranks(done, tmp_path: Path, *needles: str) -> str:
    """Both processes exited 2, one ``error:`` line between them, no worker traceback."""
    assert statuses(tmp_path) == {0: 2, 1: 2}, done.stderr[-3000:]
    assert not worker_tracebacks(done.stderr), done.stderr[-3000:]
    errors = error_lines(done.stderr)
    assert len(errors) == 1, done.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert done.returncode != 0  # torchrun's own: 1 when a worker failed
    return errors[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("ddp_faults") / "data")


# --------------------------------------------------------------------------- what every process meets
def _bad_value(tmp_path: Path, data: Path, out: Path) -> tuple[list[str], str]:
    return [str(policy_config(tmp_path / "p.yaml", data, out)), "optim.lr=fast"], "optim.lr"


def _bad_data(tmp_path: Path, data: Path, out: Path) -> tuple[list[str], str]:
    edit, needle, _ = BAD_DATA["nan-in-obs"]
    folder = write_dataset(tmp_path / "bad")
    with h5py.File(folder / f"{TASKS[1]}.hdf5", "r+") as f:
        edit(f)
    return [str(policy_config(tmp_path / "p.yaml", folder, out))], needle


# The config value fails before the process group exists (same_everywhere, tested in-process
# below too); the refused data inside the first agreed section. One torchrun each (6-10 s), in
# the slow tier: the default tier keeps the full-disk case, which runs the agreed sections too.
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(_bad_value, marks=pytest.mark.slow, id="config-value"),
        pytest.param(_bad_data, marks=pytest.mark.slow, id="refused-data"),
    ],
)
def test_bad_input_every_process_meets_is_one_line_and_leaves_nothing(bad, data, tmp_path):
    out = tmp_path / "run"
    args, needle = bad(tmp_path, data, out)
    started = time.monotonic()
    done = torchrun(tmp_path, args)
    assert time.monotonic() - started < 60
    assert_one_error_and_quiet_ranks(done, tmp_path, needle)
    assert not out.exists()  # refused before anything was written


# --------------------------------------------------------------------------- a fault rank 0 meets alone
def test_full_disk_on_rank0_stops_every_process_and_resume_goes_on(data, tmp_path):
    out = tmp_path / "run"
    cfg = policy_config(tmp_path / "p.yaml", data, out, steps=6, val_every=0)
    # last.pt at steps 2, 4, 6: rank 0 finds the disk full at step 4 while rank 1 goes on to the
    # next step's gradient all-reduce
    started = time.monotonic()
    done = torchrun(tmp_path, [str(cfg)], FULL_DISK_AT_SAVE=2)
    assert time.monotonic() - started < 60
    line = assert_one_error_and_quiet_ranks(done, tmp_path, "No space left on device", "is kept")
    assert f"torchrun --nproc_per_node=2 -m embodied.cli.train --resume {out}" in line
    assert read_checkpoint(out)["train"]["step"] == 2  # the finished work, whole
    assert not [p for p in files_under(out) if p.endswith(".tmp")]  # nothing half-written
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.pt"]

    done = torchrun(tmp_path, ["--resume", str(out)])  # room again: the rerun goes on
    assert done.returncode == 0 and statuses(tmp_path) == {0: 0, 1: 0}, done.stderr[-3000:]
    assert read_checkpoint(out)["train"]["step"] == 6
    assert [e["step"] for e in events(out) if e["event"] == "train"] == [1, 2, 3, 4, 5, 6]


# --------------------------------------------------------------------------- killed, interrupted
@pytest.fixture(scope="module")
def video_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp_demos")
    for task in range(2):
        write_task(folder / f"{task}.hdf5", task)
    return folder


# Three torchruns of a joint run (about 40 s here).
@pytest.mark.slow
def test_sigkill_of_one_process_stops_the_other_and_resume_is_exact(video_data, tmp_path):
    # joint: dropout, augmentation, random clip starts (read in a DataLoader worker), batch norm,
    # EMA, two learning rates, and each process its own random state
    extra = {"optim.ema": 0.8, "data.num_workers": 1}
    cfg = write_config(
        tmp_path / "joint.yaml",
        config_dict("joint", video_data, tmp_path / "unused", steps=8, ckpt_every=4, val_every=4, **extra),
    )
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = torchrun(tmp_path, [str(cfg), "--out", str(whole)])
    assert done.returncode == 0, done.stderr[-3000:]

    started = time.monotonic()
    done = torchrun(tmp_path, [str(cfg), "--out", str(killed)], FAULT_RANK=1, KILL_AT_STEP=7)
    assert time.monotonic() - started < 60  # the survivor did not wait for gloo's timeout
    assert "exitcode  : -9" in done.stderr  # torchrun's report names the killed process
    assert not worker_tracebacks(done.stderr), done.stderr[-3000:]
    errors = error_lines(done.stderr)  # the survivor's one line, unless torchrun ended it first
    assert len(errors) <= 1 and all("rank 0 stopped" in e and "--resume" in e for e in errors), errors
    assert read_checkpoint(killed)["train"]["step"] == 4  # steps 5-7 were lost with the process

    done = torchrun(tmp_path, ["--resume", str(killed)])
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = read_checkpoint(whole), read_checkpoint(killed)
    assert a["train"]["step"] == b["train"]["step"] == 8
    assert_same_training(a, b)
    losses = [[(e["step"], e["loss"]) for e in events(r) if e["event"] == "train"] for r in (whole, killed)]
    assert losses[0] == losses[1] and [s for s, _ in losses[0]] == [2, 4, 6, 8]


# Two torchruns (about 20 s here).
@pytest.mark.slow
def test_ctrl_c_stops_every_process_keeps_the_checkpoint_and_resume_goes_on(data, tmp_path):
    out, mark = tmp_path / "run", tmp_path / "step5"
    cfg = policy_config(tmp_path / "p.yaml", data, out, steps=40, val_every=0)
    proc = torchrun(tmp_path, [str(cfg)], start=True, STEP_SLEEP=0.1, MARK_AT_STEP=5, MARK=mark)
    try:
        deadline = time.monotonic() + 120
        while not mark.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mark.exists(), proc.communicate()[1][-3000:]
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground job
        started = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.monotonic() - started < 30
    assert statuses(tmp_path) == {0: 130, 1: 130}, stderr[-3000:]
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip() == "interrupted"]
    assert len(lines) == 1 and not worker_tracebacks(stderr), stderr[-3000:]
    stopped_at = read_checkpoint(out)["train"]["step"]
    assert 4 <= stopped_at < 40
    assert not [p for p in files_under(out) if p.endswith(".tmp")]

    done = torchrun(tmp_path, ["--resume", str(out)])
    assert done.returncode == 0, done.stderr[-3000:]
    assert read_checkpoint(out)["train"]["step"] == 40
    steps = [e["step"] for e in events(out) if e["event"] == "train"]
    assert steps == list(range(1, 41))  # every step logged once


# --------------------------------------------------------------------------- the pieces, in-process
def test_a_stopped_process_exits_with_its_status_and_at_most_one_line(capsys):
    def fail(err):
        def main():
            raise err

        return main

    assert run_cli(fail(Stopped())) == 2
    assert capsys.readouterr().err == ""
    assert run_cli(fail(Stopped(status=130))) == 130
    assert run_cli(fail(Stopped("rank 1 stopped: rank 0 went away"))) == 2
    assert capsys.readouterr().err == "error: rank 1 stopped: rank 0 went away\n"


def test_only_rank0_reports_what_every_process_meets(monkeypatch):
    from embodied.errors import UserError
    from embodied.train.distributed import same_everywhere

    monkeypatch.setattr(signal, "signal", lambda *args: None)  # stopping(): no SIGTERM change here
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, expected in (("0", UserError), ("1", Stopped)):
        monkeypatch.setenv("RANK", rank)
        with pytest.raises(UserError) as caught, same_everywhere():
            raise UserError("bad value")
        assert type(caught.value) is expected
