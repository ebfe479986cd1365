"""Training objectives as registered entries: the registry's contract over every entry, and the
``aux_ce`` control added through it (its loss, where its gradient goes, its checkpoint).

The tiny synthetic dataset and the config helpers are test_train's.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_mirror_modes import set_up, step_grads
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
from embodied.train import train
from embodied.train.checkpoint import load_model, read_checkpoint
from embodied.train.models import PARTS
from embodied.train.objective import OBJECTIVES, SECTIONS

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
    objective = OBJECTIVES[name]
    cfg["mode"] = name
    for section in objective.sections:
        if section == "probe":
            cfg["probe"] = {"policy_ckpt": str(sources), "recognizer_ckpt": str(sources)}
        else:
            cfg[section] = dict(SECTION_CONFIGS[section])
    return cfg


def test_every_entry_declares_what_the_rest_of_training_asks():
    assert {"policy", "recognizer", "joint", "probe", "aux_ce"} <= set(OBJECTIVES)
    for name, objective in OBJECTIVES.items():
        assert objective.name == name and objective.summary
        assert set(objective.sections) <= set(SECTIONS), name
        assert objective.data in ("window", "clip", "paired"), name
        assert objective.trains and (objective.trains | objective.frozen) <= set(PARTS), name
        assert objective.provides <= objective.trains | objective.frozen, name
    help_text = parser().format_help()
    for name in OBJECTIVES:  # --help lists every objective
        assert f"  {name}: " in help_text, name


@pytest.mark.parametrize("name", list(OBJECTIVES))
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
    assert set(loaded.models) == set(OBJECTIVES[name].trains | OBJECTIVES[name].frozen)


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
