"""Joint and probe training through the trainer's own code: where gradients go, the one-class
batch, the validation's alignment metrics and t-SNE, user errors, and the ablation configs.

The tiny synthetic dataset and the config helpers are test_train's (2 tasks x 3 demos x 20
steps, a 16 px camera, models of a few thousand parameters).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import pytest
import torch
import yaml
from test_train import REPO, TASKS, config_dict, events, make, one_line_error, write_config, write_task

from embodied import keys as K
from embodied.config import load_config, to_dict
from embodied.train import TrainConfig, train
from embodied.train.objective import TrainModule
from embodied.train.optim import param_groups
from embodied.train.sampling import SeededReads
from embodied.train.setup import build_datasets
from embodied.train.step import update_step

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("demos")
    for task in range(len(TASKS)):
        write_task(folder / f"{TASKS[task]}.hdf5", task)
    return folder


@pytest.fixture(scope="module")
def joint_run(data, tmp_path_factory) -> Path:
    """A finished joint run (6 steps, validations at 3 and 6); probes take both models from it."""
    out = tmp_path_factory.mktemp("runs") / "joint"
    train(make("joint", data, out))
    return out


def set_up(cfg: TrainConfig) -> tuple[TrainModule, torch.optim.Optimizer, dict]:
    """What the trainer builds before its first step: the module, its optimiser, a train batch
    (samples spread over the whole split, so over every task it holds)."""
    objective = cfg.objective
    cfg, sources = objective.resolve(cfg)
    train_ds, _ = build_datasets(cfg, None)
    torch.manual_seed(cfg.seed)
    models, _ = objective.build_models(cfg, train_ds.data_spec(), train_ds.normalization_stats(), sources)
    module = TrainModule(objective, models)
    optimizer = torch.optim.AdamW(
        param_groups(models, cfg.optim, objective.learning_rates(cfg)), lr=cfg.optim.lr
    )
    spread = torch.linspace(0, len(train_ds) - 1, cfg.data.batch_size).long().tolist()
    batch = SeededReads(train_ds).__getitems__((0, spread))
    return module, optimizer, batch


def step_grads(module: TrainModule, optimizer: torch.optim.Optimizer, batch: dict) -> dict[str, torch.Tensor]:
    """One ``update_step``; the gradient each parameter had when the optimiser stepped (None: none)."""
    seen: dict[str, torch.Tensor | None] = {}

    def record(opt, args, kwargs):
        for name, p in module.named_parameters():
            seen[name] = None if p.grad is None else p.grad.detach().clone()

    handle = optimizer.register_step_pre_hook(record)
    try:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
        metrics = update_step(module, batch, optimizer, scheduler, grad_clip=1.0)
    finally:
        handle.remove()
    assert math.isfinite(metrics["loss"])
    return seen


def grad_norm(grads: dict[str, torch.Tensor | None], prefix: str) -> float:
    found = [g for name, g in grads.items() if name.startswith(prefix)]
    assert found, prefix
    return sum(0.0 if g is None else float(g.norm()) for g in found)


# --------------------------------------------------------------------------- where gradients go
@pytest.mark.parametrize("lambda_ee", [1.0, 0.0])
def test_joint_step_sends_gradients_to_both_models_and_both_maps(data, tmp_path, lambda_ee):
    """lambda_ee = 0 leaves the policy only L_align: its gradient is then the alignment's own."""
    module, optimizer, batch = set_up(make("joint", data, tmp_path / "j", lambda_ee=lambda_ee))
    assert set(batch[K.LABEL].tolist()) == {0, 1}  # both tasks: InfoNCE has negatives
    grads = step_grads(module, optimizer, batch)
    for prefix in ("models.policy.", "models.recognizer.", "models.mirror.T_u.", "models.mirror.T_e."):
        assert grad_norm(grads, prefix) > 0, prefix


@pytest.mark.parametrize("learnable", [False, True])
def test_probe_steps_train_only_the_maps_and_leave_the_frozen_models_alone(
    data, joint_run, tmp_path, learnable
):
    cfg = make(
        "probe",
        data,
        tmp_path / "p",
        **{
            "probe.policy_ckpt": str(joint_run),
            "probe.recognizer_ckpt": str(joint_run),
            "mirror.learnable_temperature": learnable,
        },
    )
    module, optimizer, batch = set_up(cfg)
    frozen = {k: v.clone() for k, v in module.state_dict().items() if not k.startswith("models.mirror.")}
    for _ in range(2):
        grads = step_grads(module, optimizer, batch)
        trained = {name for name, g in grads.items() if g is not None and float(g.norm()) > 0}
        expected = {"models.mirror.T_u.weight", "models.mirror.T_u.bias"}
        expected |= {"models.mirror.T_e.weight", "models.mirror.T_e.bias"}
        if learnable:
            expected.add("models.mirror.log_temperature")
        assert trained == expected
    after = module.state_dict()
    for k, v in frozen.items():  # weights and batch-norm statistics: the frozen models stay in eval
        assert torch.equal(v, after[k]), k


def test_one_class_batch_at_class_level_is_a_zero_loss_not_nan(tmp_path):
    """Stated behaviour: every pair positive leaves no negative, so L_align is 0 with zero
    gradients (``mirror/no_negatives`` 1) and the models train on their own losses."""
    one = tmp_path / "one"
    one.mkdir()
    write_task(one / f"{TASKS[0]}.hdf5", 0)
    out = tmp_path / "run"
    cfg = make("joint", one, out, **{"mirror.positives": "class", "data.batch_size": 4})
    module, optimizer, batch = set_up(cfg)
    grads = step_grads(module, optimizer, batch)
    assert grad_norm(grads, "models.mirror.") == 0 and grad_norm(grads, "models.policy.") > 0

    summary = train(cfg)  # the whole trainer, validation included
    line = [e for e in events(out) if e["event"] == "train"][-1]
    assert line["mirror/loss"] == 0.0 and line["mirror/no_negatives"] == 1.0 and math.isfinite(line["loss"])
    val = summary["val"]
    assert val["cos_neg"] is None and math.isfinite(val["cos_pos"])  # no negative pair: null, not NaN
    assert val["recall@1_u2e"] == 1.0 == val["chance@1"]  # every candidate is a positive


# --------------------------------------------------------------------------- validation outputs
def test_joint_run_reports_alignment_and_draws_the_shared_space(joint_run):
    vals = [e for e in events(joint_run) if e["event"] == "val"]
    assert [e["step"] for e in vals] == [3, 6]
    for e in vals:
        for d in ("u2e", "e2u"):
            for k in (1, 5):
                assert 0.0 <= e[f"recall@{k}_{d}"] <= 1.0
        for key in ("cos_pos", "cos_neg", "pair_cos"):
            assert -1.0 <= e[key] <= 1.0, key
        assert 0.0 <= e["cka"] <= 1.0 and e["pairs"] == 16
        # the fixed gallery: one pair per validation episode, every level beside its chance
        episodes = e["gallery/gallery"]
        assert episodes >= 2 and e["gallery/chance@1_episode"] == pytest.approx(1 / episodes)
        for level in ("episode", "instruction", "class"):
            assert 0.0 <= e[f"gallery/recall@1_{level}_u2e"] <= 1.0
            assert e[f"gallery/chance@1_{level}"] >= e["gallery/chance@1_episode"]
    # the gallery does not depend on batch draws: the last validation's numbers are its own again
    assert vals[-1]["gallery/gallery"] == vals[0]["gallery/gallery"]
    png = joint_run / "tsne.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((joint_run / "summary.json").read_text())
    assert summary["val"]["cka"] == vals[-1]["cka"]


def test_probe_run_reports_alignment_and_draws_the_shared_space(data, joint_run, tmp_path):
    out = tmp_path / "probe"
    probe = {"probe.policy_ckpt": str(joint_run), "probe.recognizer_ckpt": str(joint_run)}
    summary = train(make("probe", data, out, steps=2, val_every=2, ckpt_every=2, **probe))
    assert (out / "tsne.png").is_file()
    for key in ("recall@1_u2e", "recall@5_e2u", "cos_pos", "cos_neg", "cka"):
        assert key in summary["val"], key
    # the raw features of the frozen models do not depend on the maps: the probe reads the same CKA
    assert summary["val"]["cka"] == pytest.approx(
        [e for e in events(joint_run) if e["event"] == "val"][-1]["cka"], rel=1e-4
    )


# --------------------------------------------------------------------------- user errors
def test_probe_with_a_policy_checkpoint_where_a_recognizer_is_expected(capsys, data, tmp_path):
    pol = tmp_path / "pol"
    train(make("policy", data, pol, steps=2, val_every=0, ckpt_every=0))
    probe = config_dict(
        "probe",
        data,
        tmp_path / "probe",
        **{"probe.policy_ckpt": str(pol), "probe.recognizer_ckpt": str(pol)},
    )
    line = one_line_error(capsys, [str(write_config(tmp_path / "p.yaml", probe))])
    assert "a policy checkpoint holds no trained recognizer" in line
    assert not (tmp_path / "probe").exists()


def test_joint_on_data_without_the_observer_camera(capsys, data, tmp_path):
    blind = tmp_path / "blind"
    blind.mkdir()
    for task in TASKS:
        path = blind / f"{task}.hdf5"
        path.write_bytes((data / f"{task}.hdf5").read_bytes())
        with h5py.File(path, "r+") as f:
            env_args = json.loads(f["data"].attrs["env_args"])
            env_args["env_kwargs"]["cameras"] = []
            f["data"].attrs["env_args"] = json.dumps(env_args)
            for demo in f["data"].values():
                del demo["obs/corner_image"]
    joint = write_config(tmp_path / "j.yaml", config_dict("joint", blind, tmp_path / "out"))
    assert "no camera stream" in one_line_error(capsys, [str(joint)])
    assert "no obs/corner_image" in one_line_error(capsys, [str(joint), "data.camera=corner"])
    assert not (tmp_path / "out").exists()


def test_batch_of_one_pair_in_probe_mode(capsys, data, tmp_path):
    # joint mode's batch of 1 is test_train's; probe is refused before any checkpoint is read
    probe = config_dict(
        "probe", data, tmp_path / "out", **{"probe.policy_ckpt": "x", "probe.recognizer_ckpt": "y"}
    )
    line = one_line_error(capsys, [str(write_config(tmp_path / "p.yaml", probe)), "data.batch_size=1"])
    assert "at least 2" in line and "data.batch_size=1" in line


# --------------------------------------------------------------------------- ablation configs
ABLATIONS = yaml.safe_load((REPO / "configs" / "ablations.yaml").read_text())
BASE = REPO / "configs" / f"{ABLATIONS['base']}.yaml"


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[prefix + k] = v
    return out


def test_ablations_cover_the_papers_grid_one_axis_at_a_time():
    assert ABLATIONS["base"] == "joint_mt10"
    base = load_config(TrainConfig, BASE).mirror
    axes: dict[str, set] = {}
    for overrides in ABLATIONS["runs"].values():
        assert len(overrides) <= 1  # one axis at a time; {} is the default point of all three
        for key, value in overrides.items():
            axes.setdefault(key, set()).add(value)
    for key, values in axes.items():
        values.add(getattr(base, key.split(".")[1]))  # the base run stands for the default
    assert axes == {
        "mirror.positives": {"episode", "instruction", "class"},
        "mirror.temperature": {0.02, 0.1, 0.2},
        "mirror.weight": {0.1, 0.5, 1.0},
    }


@pytest.mark.parametrize("name", sorted(ABLATIONS["runs"]))
def test_each_ablation_loads_and_differs_from_the_base_only_in_its_field(name):
    overrides = ABLATIONS["runs"][name]
    base = load_config(TrainConfig, BASE)
    cfg = load_config(TrainConfig, BASE, [f"{k}={v}" for k, v in overrides.items()] + [f"out=runs/{name}"])
    a, b = flatten(to_dict(base)), flatten(to_dict(cfg))
    assert {k for k in a if a[k] != b[k]} <= set(overrides) | {"out"}
    for key, value in overrides.items():
        assert b[key] == value and a[key] != value
