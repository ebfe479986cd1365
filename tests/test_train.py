"""embodied-train: every mode runs and writes its outputs, exact resume after SIGKILL, DDP, user errors.

All on a tiny synthetic dataset written here (2 tasks x 3 demos x 20 steps, a 16 px camera),
with models a few thousand parameters large, so that a run of a few steps takes a second.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from embodied.cli.train import main
from embodied.config import load_config
from embodied.data.schema import DemoFileWriter
from embodied.policies import POLICIES
from embodied.train import TrainConfig, load_model, train
from embodied.train.checkpoint import read_checkpoint
from embodied.train.sampling import SeededReads, ShardedBatches

REPO = Path(__file__).resolve().parents[1]
TASKS = ("reach-v3", "push-v3")
STEPS = 20
IMAGE = 16
ACTION_DIM = 4

POLICY = {
    "name": "bc_mlp",
    "hidden_dim": 32,
    "num_layers": 2,
    "dropout": 0.1,
    "low_dim_embed": 16,
    "instruction_dim": 8,
}
RECOGNIZER = {"name": "conv3d", "width": 4, "depth": 2}
MIRROR = {"dim": 16}

pytestmark = pytest.mark.usefixtures("one_thread")


def write_task(path: Path, task: int, action_dim: int = ACTION_DIM, suite: str = "metaworld") -> None:
    rng = np.random.default_rng(task)
    env_args = {"env_name": TASKS[task], "type": 1, "env_kwargs": {"cameras": ["corner"]}}
    with DemoFileWriter(path, env_args, suite) as w:
        for demo in range(3):
            t = np.linspace(0, 1, STEPS, dtype=np.float32)[:, None]
            robot = np.concatenate([t + task, t * demo, np.sin(t), np.cos(t)], 1).astype(np.float32)  # (T, 4)
            frames = rng.integers(0, 255, (STEPS, IMAGE, IMAGE, 3), dtype=np.uint8)
            frames[..., task] = 255  # the task shows in the colour, so a recognizer can learn it
            w.add_demo(
                {
                    "actions": np.tanh(rng.normal(size=(STEPS, action_dim))).astype(np.float32),
                    "rewards": np.zeros(STEPS),
                    "dones": np.zeros(STEPS),
                    "states": np.zeros((STEPS, 5)),
                },
                {
                    "robot_state": robot,
                    "object_state": rng.normal(size=(STEPS, 14)).astype(np.float32),
                    "goal": np.full((STEPS, 3), task, np.float32),
                    "corner_image": frames,
                },
                {
                    "task": TASKS[task],
                    "instruction": f"do {TASKS[task]}",
                    "label": task,
                    "seed": demo,
                    "success": 1,
                },
            )
        w.finish(valid_fraction=0.34, split_seed=0)  # 2 train demos, 1 valid demo per task


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demos")
    for task in range(len(TASKS)):
        write_task(folder / f"{TASKS[task]}.hdf5", task)
    return folder


def config_dict(mode: str, data: Path, out: Path, **extra) -> dict:
    cfg = {
        "mode": mode,
        "data": {"paths": [str(data)], "batch_size": 8, "clip_len": 4, "clip_stride": 2},
        "optim": {"lr": 1e-3, "warmup_steps": 2},
        "steps": 6,
        "log_every": 2,
        "val_every": 3,
        "val_batches": 2,
        "ckpt_every": 3,
        "out": str(out),
    }
    if mode in ("policy", "joint"):
        cfg["policy"] = dict(POLICY)
    if mode in ("recognizer", "joint"):
        cfg["recognizer"] = dict(RECOGNIZER)
    if mode in ("joint", "probe"):
        cfg["mirror"] = dict(MIRROR)
    for key, value in extra.items():
        node = cfg
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def make(mode: str, data: Path, out: Path, **extra) -> TrainConfig:
    cfg_path = write_config(out.parent / f"{out.name}.yaml", config_dict(mode, data, out, **extra))
    return load_config(TrainConfig, cfg_path)


def events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def assert_outputs(out: Path, mode: str) -> dict:
    """The files every run writes, and that they say what they should."""
    cfg = load_config(TrainConfig, out / "config.yaml")  # the resolved config loads back as it is
    assert cfg.mode == mode and cfg.data.obs_keys is not None
    kinds = [e["event"] for e in events(out)]
    assert kinds.count("train") == 3 and kinds.count("val") == 2  # logs at 2, 4, 6; validations at 3, 6
    assert list(out.glob("events.out.tfevents.*"))
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "checkpoints" / "best.pt").is_file()
    assert not list((out / "checkpoints").glob(".*tmp"))  # no temporary file left behind
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["mode"] == mode and np.isfinite(summary["train"]["loss"])
    return summary


# --------------------------------------------------------------------------- every mode
@pytest.fixture(scope="module")
def trained(data, tmp_path_factory) -> dict[str, Path]:
    """A policy run and a recognizer run, made once (probe tests read them)."""
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for mode in ("policy", "recognizer"):
        runs[mode] = root / mode
        train(make(mode, data, runs[mode]))
    return runs


@pytest.mark.parametrize("mode", ["policy", "recognizer"])
def test_single_model_modes_write_every_output_and_reload(trained, mode):
    out = trained[mode]
    assert_outputs(out, mode)
    kind, models, spec, cfg = load_model(out / "checkpoints" / "last.pt")
    assert kind == mode and set(models) == {mode} and spec.classes == sorted(TASKS)  # files in name order
    saved = read_checkpoint(out)
    for k, v in models[mode].state_dict().items():  # the rebuilt model holds the stored weights
        assert torch.equal(v, saved["models"][mode]["state"][k])
    assert saved["train"]["step"] == 6 and len(saved["train"]["rng"]) == 1


def test_joint_mode_trains_all_three_and_reports_alignment(data, tmp_path):
    out = tmp_path / "joint"
    summary = train(make("joint", data, out, **{"optim.ema": 0.9}))
    assert_outputs(out, "joint")
    train_line = [e for e in events(out) if e["event"] == "train"][-1]
    for key in ("policy/loss", "recognizer/class_loss", "mirror/loss", "mirror/recall@1_u2e", "grad_norm"):
        assert key in train_line
    val = summary["val"]
    assert 0.0 <= val["recall@1_u2e"] <= 1.0 and val["pairs"] == 16 and 0 < val["chance@1"] < 1
    kind, models, _, cfg = load_model(out)
    assert kind == "joint" and set(models) == {"policy", "recognizer", "mirror"} and cfg.optim.ema == 0.9
    # The mirror head's own learning rate (paper: 1e-4) beside the models' 1e-3.
    groups = read_checkpoint(out)["train"]["optimizer"]["param_groups"]
    lrs = {g["name"].split("/")[0]: g["initial_lr"] for g in groups}
    assert lrs == {"policy": 1e-3, "recognizer": 1e-3, "mirror": 1e-4}


@pytest.mark.parametrize("init", ["checkpoint", "random"])
def test_probe_trains_only_the_mirror_head_on_frozen_models(trained, tmp_path, data, init):
    out = tmp_path / f"probe_{init}"
    cfg = make(
        "probe",
        data,
        out,
        **{
            "probe.policy_ckpt": str(trained["policy"]),
            "probe.recognizer_ckpt": str(trained["recognizer"]),
            "probe.init": init,
            "data.clip_len": 8,
        },
    )
    summary = train(cfg)
    assert_outputs(out, "probe")
    resolved = load_config(TrainConfig, out / "config.yaml")
    assert resolved.data.clip_len == 4 and resolved.data.camera == "corner"  # taken from the recognizer's run
    for key in ("recall@1_u2e", "recall@1_e2u", "recall@5_u2e", "recall@5_e2u", "chance@1", "chance@5"):
        assert key in summary["val"]
    _, probed, _, _ = load_model(out)
    _, policy, _, _ = load_model(trained["policy"])
    same = all(
        torch.equal(v, policy["policy"].state_dict()[k])
        for k, v in probed["policy"].state_dict().items()
        if "normalizer" not in k
    )
    assert same == (init == "checkpoint")  # frozen: the trained weights, untouched; or the random control
    groups = read_checkpoint(out)["train"]["optimizer"]["param_groups"]
    assert {g["name"].split("/")[0] for g in groups} == {"mirror"}


def test_rollouts_call_the_injected_evaluator_and_are_skipped_without_rollout_every(data, tmp_path):
    calls = []

    def evaluator(policy, spec, settings):  # embodied.train.rollouts.PolicyEvaluator
        calls.append((settings.tasks, settings.episodes, settings.seed_start, policy.training))
        return {"success_rate": 0.5, "episodes": settings.episodes * len(settings.tasks), "note": "left out"}

    out = tmp_path / "rollouts"
    train(make("policy", data, out, rollout_every=3, rollout_episodes=2, val_every=0), evaluator=evaluator)
    assert calls == [(sorted(TASKS), 2, 1_000_000, False)] * 2  # steps 3 and 6, in eval mode, held-out seeds
    rollouts = [e for e in events(out) if e["event"] == "rollout"]
    assert [(e["step"], e["success_rate"], e["episodes"]) for e in rollouts] == [(3, 0.5, 4.0), (6, 0.5, 4.0)]
    train(make("policy", data, tmp_path / "no_eval", rollout_every=0, val_every=0), evaluator=evaluator)
    assert len(calls) == 2  # no rollouts asked for, none run


# --------------------------------------------------------------------------- data order
def test_batch_order_is_reproducible_sharded_and_resumable():
    whole = ShardedBatches(50, 8, seed=3)
    first = [b for _, b in itertools.islice(whole, 20)]  # 20 batches: more than 3 epochs of 6
    later = ShardedBatches(50, 8, seed=3, start=7)
    assert [b for _, b in itertools.islice(later, 13)] == first[7:]
    assert sorted(sum(first[:6], [])) == sorted(whole.epoch_indices(0)[:48].tolist())  # an epoch, no repeats
    assert first[:6] != first[6:12]  # each epoch its own order
    ranks = [ShardedBatches(50, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    shards = [set(s.epoch_indices(0).tolist()) for s in ranks]
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == 50


def test_mixed_batches_draw_a_fixed_share_from_the_subset_and_resume():
    """Learning by watching with data.action_rows: the first rows of every batch come from the
    subset (the action demos' samples), each part in its own reproducible order."""
    from embodied.errors import UserError
    from embodied.train.sampling import MixedBatches

    subset = np.arange(40, 50)  # 10 samples of 50
    mixed = MixedBatches(subset, 50, 8, 3, seed=3)
    first = [b for _, b in itertools.islice(mixed, 12)]  # several epochs of either part
    assert all(len(b) == 8 and set(b[:3]) <= set(subset.tolist()) for b in first)
    assert len(set(sum((b[:3] for b in first[:3]), []))) == 9  # an epoch of the subset's part: no repeats
    later = MixedBatches(subset, 50, 8, 3, seed=3, start=5)
    assert [b for _, b in itertools.islice(later, 7)] == first[5:]
    plain = ShardedBatches(50, 5, seed=3)  # the other rows: the whole set's order, as without the subset
    assert [b[3:] for b in first] == [b for _, b in itertools.islice(plain, 12)]
    with pytest.raises(UserError, match="action_rows must be in 1..7"):
        MixedBatches(subset, 50, 8, 8, seed=3)
    with pytest.raises(UserError, match="fewer than data.action_rows=12"):
        MixedBatches(subset, 50, 16, 12, seed=3)


def test_random_reads_depend_on_the_batch_not_on_the_caller(data):
    from embodied.data.reader import DemoDataset

    ds = SeededReads(DemoDataset(data, mode="clip", clip_len=4, obs_keys=[]))
    item = (123, [0, 5, 30])
    a = ds.__getitems__(item)["video"]
    torch.rand(100)  # whatever the training process drew meanwhile
    state = torch.get_rng_state()
    b = ds.__getitems__(item)["video"]
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())
    assert not torch.equal(a, ds.__getitems__((124, [0, 5, 30]))["video"])  # another batch, other clip starts


# --------------------------------------------------------------------------- exact resume
KILLER = textwrap.dedent("""
    import os, signal, sys
    import embodied.train.loop as loop
    real, done = loop.update_step, [0]
    def update_step(*args, **kwargs):
        metrics = real(*args, **kwargs)
        done[0] += 1
        if done[0] == int(os.environ["KILL_AT_STEP"]):
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no flushing: as a killed job
        return metrics
    loop.update_step = update_step
    from embodied.cli.train import main
    sys.exit(main(sys.argv[1:]))
""")


def assert_same_training(a: dict, b: dict) -> None:
    """Two checkpoints hold the same EMA weights, trained weights and optimizer state, bit for bit."""
    for name in a["models"]:  # the EMA weights
        for k, v in a["models"][name]["state"].items():
            assert torch.equal(v, b["models"][name]["state"][k]), f"{name}.{k}"
    for k, v in a["train"]["weights"].items():  # the trained weights
        assert torch.equal(v, b["train"]["weights"][k]), k
    for key, sa in a["train"]["optimizer"]["state"].items():
        assert all(torch.equal(sa[s], b["train"]["optimizer"]["state"][key][s]) for s in sa)


def run_cli(args: list[str], code: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "embodied.cli.train", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


# End to end with SIGKILLed subprocesses: ~55 s here; the resumable batch order stays in the
# default tier.
@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_same_weights(data, tmp_path):
    # joint: dropout, augmentation, random clip starts (read in a DataLoader worker), batch norm,
    # EMA and two learning rates
    cfg = write_config(
        tmp_path / "joint.yaml",
        config_dict(
            "joint",
            data,
            tmp_path / "unused",
            steps=10,
            ckpt_every=4,
            val_every=5,
            **{"optim.ema": 0.8, "data.num_workers": 1},
        ),
    )
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = run_cli([str(cfg), "--out", str(whole)])
    assert done.returncode == 0, done.stderr
    crash = run_cli([str(cfg), "--out", str(killed)], code=KILLER, env={"KILL_AT_STEP": "7"})
    assert crash.returncode == -signal.SIGKILL
    assert read_checkpoint(killed)["train"]["step"] == 4  # steps 5-7 were lost with the process
    resumed = run_cli(["--resume", str(killed)])
    assert resumed.returncode == 0, resumed.stderr

    a, b = read_checkpoint(whole), read_checkpoint(killed)
    assert a["train"]["step"] == b["train"]["step"] == 10
    assert_same_training(a, b)
    # The log reads as one run: every step's training loss once, and the same.
    losses = [
        [(e["step"], e["loss"]) for e in events(run) if e["event"] == "train"] for run in (whole, killed)
    ]
    assert losses[0] == losses[1] and [s for s, _ in losses[0]] == [2, 4, 6, 8, 10]


# --------------------------------------------------------------------------- DDP
DDP_RUNNER = textwrap.dedent("""
    import os, sys, torch
    import embodied.train.loop as loop
    from embodied.train.objective import TrainModule
    real, seen = loop.update_step, []
    def update_step(model, *args, **kwargs):
        seen.append(type(model).__name__)
        return real(model, *args, **kwargs)
    loop.update_step = update_step
    keep = TrainModule.__init__
    modules = []
    def init(self, *args, **kwargs):
        keep(self, *args, **kwargs)
        modules.append(self)
    TrainModule.__init__ = init
    from embodied.cli.train import main
    code = main(sys.argv[2:])
    torch.save({"state": modules[0].state_dict(), "wrapped": seen},
               os.path.join(sys.argv[1], f"rank{os.environ['RANK']}.pt"))
    sys.exit(code)
""")


def test_ddp_two_processes_keep_identical_weights_and_only_rank0_writes(data, tmp_path):
    cfg = write_config(
        tmp_path / "joint.yaml",
        config_dict("joint", data, tmp_path / "ddp", steps=4, val_every=2, ckpt_every=2),
    )
    script = tmp_path / "runner.py"
    script.write_text(DDP_RUNNER)
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(dumps),
        str(cfg),
    ]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(dumps / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["wrapped"] == r1["wrapped"] == ["DistributedDataParallel"] * 4
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k
    out = tmp_path / "ddp"
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    steps = [e["step"] for e in events(out) if e["event"] == "train"]
    assert steps == [2, 4]  # one writer: no line twice
    saved = read_checkpoint(out)
    assert saved["train"]["world_size"] == 2 and len(saved["train"]["rng"]) == 2
    for k, v in saved["models"]["policy"]["state"].items():  # what rank 0 saved is what both hold
        assert torch.equal(v, r0["state"][f"models.policy.{k}"])


# --------------------------------------------------------------------------- user errors
def one_line_error(capsys, argv: list[str]) -> str:
    capsys.readouterr()  # what earlier runs printed
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_unknown_key_lists_the_valid_ones(capsys, data, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", config_dict("policy", data, tmp_path / "out"))
    line = one_line_error(capsys, [str(cfg), "optim.learning_rate=0.1"])  # nothing close: every key
    assert "optim.learning_rate" in line and "lr, weight_decay, betas" in line
    line = one_line_error(capsys, [str(cfg), "stpes=3"])  # a typo: the key it is close to
    assert line.endswith("unknown key 'stpes'; did you mean 'steps'?")


def test_wrong_types_and_inconsistent_settings(capsys, data, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", config_dict("policy", data, tmp_path / "out"))
    assert "steps must be int" in one_line_error(capsys, [str(cfg), "steps=many"])
    assert "mode" in one_line_error(capsys, [str(cfg), "mode=dance"])
    assert "needs a recognizer" in one_line_error(capsys, [str(cfg), "mode=joint"])
    joint = write_config(tmp_path / "j.yaml", config_dict("joint", data, tmp_path / "out"))
    assert "at least 2" in one_line_error(capsys, [str(joint), "data.batch_size=1"])
    missing = one_line_error(capsys, ["no_such_config"])
    assert "not found" in missing and "policy_quick" in missing  # the configs there are, named


def test_data_that_does_not_fit_the_config(capsys, data, tmp_path):
    cfg = write_config(tmp_path / "c.yaml", config_dict("policy", data, tmp_path / "out"))
    assert "no obs/wrist_state" in one_line_error(
        capsys, [str(cfg), "data.obs_keys=[robot_state,wrist_state]"]
    )
    rec = write_config(tmp_path / "r.yaml", config_dict("recognizer", data, tmp_path / "out"))
    assert "no obs/wrist_image" in one_line_error(capsys, [str(rec), "data.camera=wrist"])
    assert "data.batch_size=100" in one_line_error(capsys, [str(cfg), "data.batch_size=100"])
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_existing_output_folder_needs_resume_or_overwrite(capsys, data, tmp_path):
    out = tmp_path / "out"
    cfg = write_config(tmp_path / "c.yaml", config_dict("policy", data, out, steps=2, val_every=0))
    assert main([str(cfg)]) == 0
    line = one_line_error(capsys, [str(cfg)])
    assert "exists" in line and "--resume" in line and "--overwrite" in line
    (out / "mine.txt").write_text("not ours")
    assert main([str(cfg), "--overwrite", "steps=3"]) == 0
    assert json.loads((out / "summary.json").read_text())["steps"] == 3 and (out / "mine.txt").exists()
    assert len(list(out.glob("events.out.tfevents.*"))) == 1  # the old run's events went with it
    # Resuming a finished run with more steps continues it; another setting is refused.
    assert main(["--resume", str(out), "steps=5"]) == 0
    assert read_checkpoint(out)["train"]["step"] == 5
    line = one_line_error(capsys, ["--resume", str(out), "optim.lr=0.5"])
    assert "optim.lr" in line and "differs" in line
    assert "no checkpoints/last.pt" in one_line_error(capsys, ["--resume", str(tmp_path / "nothing")])


def test_a_resumed_runs_total_wall_time_counts_the_processes_before(data, tmp_path):
    out = tmp_path / "out"
    cfg = config_dict("policy", data, out, steps=4, val_every=0, ckpt_every=2)
    assert main([str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    before = read_checkpoint(out)["train"]["wall_s"]
    first = json.loads((out / "summary.json").read_text())
    # the summary rounds to 0.01 s; the checkpoint keeps the time unrounded
    assert 0 < before <= first["total_wall_time_s"] + 0.005
    assert first["total_wall_time_s"] == first["wall_time_s"]
    assert main(["--resume", str(out), "steps=6"]) == 0
    second = json.loads((out / "summary.json").read_text())
    assert second["resumed_from"] == 4
    assert second["total_wall_time_s"] == pytest.approx(before + second["wall_time_s"], abs=0.02)
    assert read_checkpoint(out)["train"]["wall_s"] > before


def test_resume_on_other_data_is_refused(capsys, data, tmp_path):
    out = tmp_path / "out"
    cfg = config_dict("policy", data, out, steps=2, val_every=0)
    assert main([str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    other = tmp_path / "other"
    other.mkdir()
    for task in range(len(TASKS)):
        # a suite that fixes no action width, else the data's own check refuses them first
        write_task(other / f"{TASKS[task]}.hdf5", task, action_dim=ACTION_DIM + 1, suite="other")
    line = one_line_error(capsys, ["--resume", str(out), f"data.paths=[{other}]", "steps=4"])
    assert "action_dim 5, the checkpoint's 4" in line


def test_checkpoint_of_another_kind_or_no_checkpoint(capsys, trained, data, tmp_path):
    probe = config_dict(
        "probe",
        data,
        tmp_path / "probe",
        **{
            "probe.policy_ckpt": str(trained["recognizer"]),
            "probe.recognizer_ckpt": str(trained["recognizer"]),
        },
    )
    line = one_line_error(capsys, [str(write_config(tmp_path / "p.yaml", probe))])
    assert "a recognizer checkpoint holds no trained policy" in line
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(2)}, junk)
    probe["probe"]["policy_ckpt"] = str(junk)
    assert "not an embodied training checkpoint" in one_line_error(
        capsys, [str(write_config(tmp_path / "p.yaml", probe))]
    )
    shutil.copytree(trained["policy"], tmp_path / "pol")
    line = one_line_error(
        capsys,
        [
            "--resume",
            str(tmp_path / "pol"),
            "mode=recognizer",
            "policy=null",
            f"recognizer={json.dumps(RECOGNIZER)}",
        ],
    )
    assert "holds a policy run" in line and "mode is recognizer" in line


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for key in (
        "data.obs_horizon",
        "optim.warmup_steps",
        "optim.ema",
        "probe.init",
        "lambda_ee",
        "mirror.positives",
        "[policy.name=bc_mlp]",
        "[recognizer.name=conv3d]",
        "--resume",
        "--overwrite",
    ):
        assert key in text, key


@pytest.mark.parametrize("mode", ["policy", "recognizer", "joint", "probe"])
@pytest.mark.parametrize("data_set", ["quick", "mt10"])
def test_shipped_configs_load(mode, data_set):
    cfg = load_config(TrainConfig, REPO / "configs" / f"{mode}_{data_set}.yaml")
    assert cfg.mode == mode and cfg.data.paths == [f"datasets/{data_set}"]


def test_the_joint_loss_weights_live_in_the_mirror_section_and_old_configs_still_load():
    from embodied.config import from_dict
    from embodied.errors import UserError

    joint = {
        "mode": "joint",
        "policy": {"name": "bc_mlp"},
        "recognizer": {"name": "conv3d"},
        "mirror": {"weight": 0.25},
    }
    cfg = from_dict(TrainConfig, {**joint, "mirror": {"weight": 0.25, "lambda_ee": 0.5}})
    assert (cfg.mirror.lambda_ee, cfg.mirror.weight) == (0.5, 0.25) and not hasattr(cfg, "lambda_ee")
    # written before the move (older checkpoints, bench markers, YAML): the same config
    old = from_dict(TrainConfig, {**joint, "lambda_ee": 0.5})
    assert old == cfg
    # a run without a mirror head never used it
    assert from_dict(TrainConfig, {"policy": {"name": "bc_mlp"}, "lambda_ee": 1.0}).mirror is None
    with pytest.raises(UserError, match="lambda_ee is now mirror.lambda_ee"):
        from_dict(TrainConfig, {**joint, "lambda_ee": 0.5, "mirror": {"lambda_ee": 1.0}})
    with pytest.raises(UserError, match="lambda_ee must be >= 0"):
        from_dict(TrainConfig, {**joint, "mirror": {"lambda_ee": -1.0}})


def test_a_policy_without_obs_keys_reads_every_low_dim_stream_and_keeps_them(tiny_run, demo_file):
    import h5py

    run = tiny_run("policy_quick", "policy.obs_keys=null", "policy.hidden_dim=16")
    with h5py.File(demo_file) as f:
        obs = f["data/demo_0/obs"]
        expected = sorted(k for k in obs if obs[k].ndim == 2)  # (T, d): the low-dim streams
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["policy"]["obs_keys"] == expected and "robot_state" in expected
    assert main(["--resume", str(run), "steps=3"]) == 0  # the resolved keys are the same config


def test_help_lists_each_registry_once_per_key(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert text.count("policy.head.modes (") == 1  # the heads, under the first policy only
    first = sorted(POLICIES.configs)[0]  # policies are listed by name
    assert f"as listed under [policy.name={first}] above" in text
