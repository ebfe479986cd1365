"""What a typo is told: the command line's own mistakes blamed on the command line, not on the
YAML file, and a close name suggested (difflib) instead of a list of every name."""

from __future__ import annotations

import pytest

from embodied.config import load_config
from embodied.errors import UserError, close_names
from embodied.paths import resolve_resource
from embodied.sim.spec import load_suite


def message(fn, *args) -> str:
    with pytest.raises(UserError) as err:
        fn(*args)
    return str(err.value)


@pytest.fixture(scope="module")
def train_config():
    from embodied.train.config import TrainConfig

    return TrainConfig, resolve_resource("joint_quick", "configs")


def test_an_unknown_key_on_the_command_line_is_the_command_line_s(train_config):
    cls, path = train_config
    line = message(load_config, cls, path, ["mirror.temprature=0.2"])
    assert line == (
        "command line 'mirror.temprature=0.2': unknown key 'mirror.temprature'; "
        "did you mean 'mirror.temperature'?"
    )
    assert str(path) not in line


def test_a_bad_value_on_the_command_line_is_the_command_line_s(train_config):
    cls, path = train_config
    assert (
        message(load_config, cls, path, ["steps=abc"])
        == "command line 'steps=abc': steps must be int, got 'abc'"
    )
    line = message(load_config, cls, path, ["mirror.positives=instrucion"])
    assert line.startswith("command line 'mirror.positives=instrucion': mirror.positives must be one of")
    assert line.endswith("did you mean 'instruction'?")
    line = message(load_config, cls, path, ["policy.name=bc_mpl"])
    assert line.startswith("command line 'policy.name=bc_mpl'") and line.endswith("did you mean 'bc_mlp'?")


def test_a_mistake_in_the_file_is_still_the_file_s(train_config, tmp_path):
    cls, path = train_config
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text() + "\nstepz: 3\n")
    line = message(load_config, cls, bad, ["steps=5"])  # an override elsewhere does not take the blame
    assert line == f"{bad}: unknown key 'stepz'; did you mean 'steps'?"


def test_a_task_typo_suggests_the_task_not_all_fifty():
    line = message(load_suite("metaworld").resolve_tasks, ["drawer-opne-v3"])
    assert line == "unknown metaworld task 'drawer-opne-v3'; did you mean 'drawer-open-v3'?"
    far = message(load_suite("metaworld").resolve_tasks, ["xyz"])  # nothing close: every name
    assert "known tasks: assembly-v3" in far and "task sets: " in far


def test_a_camera_preset_or_config_typo_suggests_the_name():
    line = message(load_suite("metaworld").check_cameras, ["cornr"])
    assert line == "unknown metaworld camera 'cornr'; did you mean 'corner'?"
    assert message(resolve_resource, "visul", "configs/bench").endswith("(did you mean 'visual'?)")
    assert message(resolve_resource, "joint_quik", "configs").endswith("(did you mean 'joint_quick'?)")


def test_close_names_keeps_only_the_closest():
    assert close_names("drawer-opne-v3", ["drawer-open-v3", "drawer-close-v3", "door-open-v3"]) == [
        "drawer-open-v3"
    ]
    assert close_names("corner5", ["corner2", "corner3", "topview"]) == ["corner2", "corner3"]  # a tie: both
    assert close_names("xyz", ["corner", "topview"]) == []
