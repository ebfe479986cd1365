"""Training objectives as registered entries: the registry's contract over every entry, and the
``aux_ce`` control added through it (its loss, where its gradient goes, its checkpoint).

The tiny synthetic dataset and the config helpers are test_train's.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_mirror_modes import grad_norm, set_up, step_grads
from test_train import (
    MIRROR,
    POLICY,
    RECOGNIZER,
    TASKS,
    config_dict,
    make,
    one_line_error,
    write_config,
    write_task,
)

from embodied import keys as K
from embodied.cli.train import parser
from embodied.data.reader import DemoDataset
from embodied.errors import UserError
from embodied.mirror import info_nce, positive_mask
from embodied.train import train
from embodied.train.checkpoint import load_model, read_checkpoint
from embodied.train.models import PARTS
from embodied.train.objective import SECTIONS, registered
from embodied.train.sampling import SeededReads
from embodied.train.setup import build_datasets

pytestmark = pytest.mark.usefixtures("one_thread")
SECTION_CONFIGS = {"policy": POLICY, "recognizer": RECOGNIZER, "mirror": MIRROR}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demos")
    for task in range(len(TASKS)):
        write_task(folder / f"{TASKS[task]}.hdf5", task)
    return folder


@pytest.fixture(scope="module")
def sources(data, tmp_path_factory):
    """A finished joint run: the frozen models of every objective that reads some."""
    out = tmp_path_factory.mktemp("runs") / "joint"
    train(make("joint", data, out, steps=2, val_every=0, ckpt_every=0))
    return out


def objective_config(name: str, data, out, sources) -> dict:
    """A config of objective ``name`` built from what it declares: its sections, its sources."""
    cfg = config_dict("policy", data, out, steps=2, val_every=2, ckpt_every=2, log_every=1)
    cfg.pop("policy")
    objective = registered()[name]
    cfg["mode"] = name
    for section in objective.sections:
        if section == "probe":
            cfg["probe"] = {f"{name}_ckpt": str(sources) for name in objective.frozen}
        else:
            cfg[section] = dict(SECTION_CONFIGS[section])
    return cfg


def test_every_entry_declares_what_the_rest_of_training_asks():
    assert {"policy", "recognizer", "joint", "probe", "aux_ce"} <= set(registered())
    for name, objective in registered().items():
        assert objective.name == name and objective.summary
        assert set(objective.sections) <= set(SECTIONS), name
        assert objective.data in ("window", "clip", "paired"), name
        assert objective.trains and (objective.trains | objective.frozen) <= set(PARTS), name
        assert objective.provides <= objective.trains | objective.frozen, name
    help_text = parser().format_help()
    for name in registered():  # --help lists every objective
        assert f"  {name}: " in help_text, name


@pytest.mark.parametrize("name", list(registered()))
def test_every_objective_trains_saves_and_loads(name, data, sources, tmp_path):
    """Built from its declarations alone: two steps, a validation, last.pt and best.pt; the
    checkpoint's kind is the objective, load_model rebuilds every part it trained and froze."""
    out = tmp_path / name
    cfg_path = write_config(tmp_path / f"{name}.yaml", objective_config(name, data, out, sources))
    summary = train(make_from(cfg_path))
    assert summary["mode"] == name and summary["steps"] == 2 and summary["val"]["loss"] > 0
    payload = read_checkpoint(out)
    assert payload["kind"] == name
    loaded = load_model(out)
    assert loaded.kind == name
    assert set(loaded.models) == set(registered()[name].trains | registered()[name].frozen)


def make_from(path):
    from embodied.config import load_config
    from embodied.train.config import TrainConfig

    return load_config(TrainConfig, path)


def test_an_objective_refuses_the_sections_it_does_not_use(capsys, data, tmp_path):
    aux = write_config(tmp_path / "aux.yaml", objective_config("aux_ce", data, tmp_path / "out", None))
    assert "needs a mirror section" in one_line_error(capsys, [str(aux), "mirror=null"])
    line = one_line_error(capsys, [str(aux), "recognizer.name=conv3d", "recognizer.width=4"])
    assert "aux_ce does not use the recognizer section" in line
    line = one_line_error(capsys, [str(aux), "mode=dance"])
    assert "unknown mode 'dance'" in line and "aux_ce" in line


# --------------------------------------------------------------------------- aux_ce
def aux_config(data, out, **extra):
    cfg = objective_config("aux_ce", data, out, None)
    cfg["policy"]["feature_tap"] = "encoder"  # the tap the visual preset reads: the encoder's output
    cfg["mirror"].update(extra)
    return make_from(write_config(out.parent / f"{out.name}.yaml", cfg))


def test_aux_ce_loss_is_the_policy_loss_plus_weighted_instruction_cross_entropy(data, tmp_path):
    module, _, batch = set_up(aux_config(data, tmp_path / "a", weight=0.7, lambda_ee=0.3))
    module.eval()  # no dropout: the same forward twice
    policy, classifier = module.models["policy"], module.models["classifier"]
    assert classifier.linear.out_features == 2  # one logit per instruction of the data
    with torch.no_grad():
        loss, metrics, features = module.compute(batch)
        loss_e, _, f_e = policy.loss_and_features(batch)
        ce = F.cross_entropy(f_e @ classifier.linear.weight.T + classifier.linear.bias, batch[K.INSTRUCTION])
    assert features is None
    assert metrics["aux/ce"] == pytest.approx(ce.item(), rel=1e-6)
    assert loss.item() == pytest.approx(0.3 * loss_e.item() + 0.7 * ce.item(), rel=1e-6)


def test_aux_ce_gradient_reaches_only_the_encoder_and_the_classifier(data, tmp_path):
    """With lambda_ee 0 the loss is the classifier's alone: the policy's encoder (up to the tap)
    and the classifier get gradients, the policy's trunk and action head none."""
    module, optimizer, batch = set_up(aux_config(data, tmp_path / "g", lambda_ee=0.0))
    grads = step_grads(module, optimizer, batch)
    encoder = {n for n in grads if n.startswith("models.policy.encoder.")}
    rest = {n for n in grads if n.startswith("models.policy.")} - encoder
    assert encoder and rest
    assert sum(float(grads[n].norm()) for n in encoder if grads[n] is not None) > 0
    assert all(grads[n] is None or float(grads[n].norm()) == 0 for n in rest), sorted(rest)
    assert all(grads[n] is not None and float(grads[n].norm()) > 0 for n in grads if "classifier" in n)


# --------------------------------------------------------------------------- the other controls
def control_config(name: str, data, out, sources=None, **mirror):
    cfg = objective_config(name, data, out, sources)
    cfg["policy"]["feature_tap"] = "encoder"
    cfg["mirror"].update(mirror)
    return make_from(write_config(out.parent / f"{out.name}.yaml", cfg))


def test_label_partner_loss_is_infonce_against_one_hot_partners_through_the_head(data, tmp_path):
    """The partner of row i is one-hot(instruction_i) times the learned embedding, through T_u."""
    module, _, batch = set_up(
        control_config("label_partner", data, tmp_path / "l", weight=0.5, lambda_ee=1.0)
    )
    module.eval()
    models = module.models
    with torch.no_grad():
        loss, metrics, (f_u, f_e) = module.compute(batch)
        one_hot = F.one_hot(batch[K.INSTRUCTION], models["label_embedding"].num_embeddings).float()  # (B, I)
        partner = one_hot @ models["label_embedding"].weight  # (B, I) @ (I, dim) -> (B, dim)
        z_u, z_e = models["mirror"].embed(partner, models["policy"].features(batch))
        match = positive_mask("instruction", batch[K.EPISODE], batch[K.INSTRUCTION], batch[K.LABEL])
        expected = info_nce(z_u, z_e, match, models["mirror"].config.temperature)
        loss_e, _ = models["policy"].loss(batch)
    assert torch.equal(f_u, partner)
    assert metrics["mirror/loss"] == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() == pytest.approx(loss_e.item() + 0.5 * expected.item(), rel=1e-5)


def test_frozen_u_trains_the_policy_and_the_head_and_leaves_the_recognizer_alone(data, sources, tmp_path):
    cfg = control_config("frozen_u", data, tmp_path / "f", sources)
    module, optimizer, batch = set_up(cfg)
    recognizer = {k: v.clone() for k, v in module.models["recognizer"].state_dict().items()}
    module.train()
    assert not module.models["recognizer"].training  # no augmentation or dropout in the frozen one
    for _ in range(2):
        grads = step_grads(module, optimizer, batch)
    assert grad_norm(grads, "models.policy.") > 0 and grad_norm(grads, "models.mirror.T_e.") > 0
    assert all(torch.equal(v, module.models["recognizer"].state_dict()[k]) for k, v in recognizer.items())
    trained = load_model(sources).models["recognizer"].state_dict()  # the source run's weights
    assert all(torch.equal(v, trained[k]) for k, v in recognizer.items())


def test_joint_selfsup_recognizer_learns_only_through_the_alignment(data, tmp_path):
    """Its loss has no L_AU: without the alignment (weight 0) the recognizer gets no gradient."""
    module, optimizer, batch = set_up(control_config("joint_selfsup", data, tmp_path / "s", weight=0.5))
    assert grad_norm(step_grads(module, optimizer, batch), "models.recognizer.") > 0
    module, optimizer, batch = set_up(control_config("joint_selfsup", data, tmp_path / "z", weight=0.0))
    grads = step_grads(module, optimizer, batch)
    assert grad_norm(grads, "models.recognizer.") == 0 and grad_norm(grads, "models.policy.") > 0


# --------------------------------------------------------------------------- learning by watching
def test_action_free_episodes_reach_the_alignment_and_recognition_not_behaviour_cloning(data, tmp_path):
    """data.action_demos=1: per task the first train demo gives its actions, the second is served
    action-free (its windows fully masked); a batch of those alone gives the policy no
    gradient, while the recognizer and the mirror head learn from it."""
    cfg = make("joint", data, tmp_path / "w", **{"data.action_demos": 1})
    module, optimizer, _ = set_up(cfg)
    train_ds, _ = build_datasets(cfg.objective.resolve(cfg)[0], None)
    assert train_ds.ep_acts.tolist() == [True, False, True, False]  # 2 tasks x 2 train demos
    free = np.flatnonzero(~train_ds.ep_acts[train_ds.sample_ep])  # samples of action-free episodes
    batch = SeededReads(train_ds).__getitems__((0, free[:: max(1, len(free) // 8)][:8].tolist()))
    assert not batch[K.ACTION_MASK].any() and K.VIDEO in batch
    loss_e, _ = module.models["policy"].loss(batch)
    assert loss_e.item() == 0.0  # behaviour cloning averages over no action
    module.models["mirror"].config.lambda_ee = 0.0  # L_EE alone would give the policy no gradient anyway
    grads = step_grads(module, optimizer, batch)
    for prefix in ("models.recognizer.", "models.mirror.T_u.", "models.mirror.T_e."):
        assert grad_norm(grads, prefix) > 0, prefix
    head = {n: g for n, g in grads.items() if n.startswith("models.policy.head.")}
    assert head and all(g is None or float(g.norm()) == 0 for g in head.values())
    acting = DemoDataset(cfg.data.paths, split="train", obs_keys=["robot_state"]).ep_acts
    assert acting.all()  # action_demos 0 (the default): every demo's actions
    # watch_all false: the same action demos and nothing else (the control without the watching)
    only = DemoDataset(
        cfg.data.paths, split="train", obs_keys=["robot_state"], action_demos=1, watch_all=False
    )
    assert only.ep_acts.tolist() == [True, True]
    shown = [(e.file, e.demo) for e in train_ds.episodes if e.acts]
    assert [(e.file, e.demo) for e in only.episodes] == shown
    first = DemoDataset(cfg.data.paths, split="train", obs_keys=["robot_state"], max_demos=1)
    for key, stats in first.stats.items():  # normalised by the demos it keeps (here the first of each)
        assert all(np.allclose(stats[s], only.stats[key][s]) for s in stats), key
    with pytest.raises(UserError, match="needs action_demos"):
        make("joint", data, tmp_path / "x", **{"data.watch_all": False})
    # action_rows: a fixed share of every batch from the action demos, the rest from all samples
    from embodied.train.distributed import Processes
    from embodied.train.setup import build_run

    mixed = make("joint", data, tmp_path / "m", **{"data.action_demos": 1, "data.action_rows": 2})
    run = build_run(mixed, Processes(), resume=False, overwrite=False)
    for _, indices in itertools.islice(run.sampler, 5):
        assert run.train_ds.ep_acts[run.train_ds.sample_ep[indices[:2]]].all()
    with pytest.raises(UserError, match="action_rows=2 needs action_demos"):
        make("joint", data, tmp_path / "y", **{"data.action_rows": 2})


# --------------------------------------------------------------------------- the probe's random control
def test_the_random_probe_control_has_distinct_features(data, sources, tmp_path):
    """probe.init=random: the frozen models' features differ from row to row (no ties decide the
    retrieval), the zero-initialised residual scales take the standard init and the batch-norm
    statistics come from the train split."""
    cfg = make(
        "probe",
        data,
        tmp_path / "r",
        **{"probe.policy_ckpt": str(sources), "probe.recognizer_ckpt": str(sources), "probe.init": "random"},
    )
    module, _, batch = set_up(cfg)
    cfg, _ = cfg.objective.resolve(cfg)
    train_ds, _ = build_datasets(cfg, None)
    cfg.objective.prepare(cfg, dict(module.models.items()), train_ds)
    recognizer = module.models["recognizer"]
    norms = [m for m in recognizer.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.weight.any() for m in norms)
    assert all(
        m.num_batches_tracked > 0 and not torch.equal(m.running_var, torch.ones_like(m.running_var))
        for m in norms
    )
    module.train()
    with torch.no_grad():
        _, _, (f_u, f_e) = module.compute(batch)
    inputs = (batch[K.VIDEO].flatten(1).float(), batch[K.OBS]["robot_state"].flatten(1))  # (B, ...)
    for f, x in zip((f_u, f_e), inputs, strict=True):  # (B, D): rows of different inputs differ
        differ = torch.cdist(x, x) > 0  # (B, B): two samples of one episode may share a clip
        assert differ.any()
        assert torch.cdist(f, f)[differ].min() > 1e-6 * f.abs().mean()
