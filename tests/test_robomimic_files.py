"""robomimic's own files as they are: its core schema (no embodied attributes, robomimic's int
env type, float64 arrays, one task per file and every file named ``image_v15.hdf5``) validates,
``info`` says what it does not record, and training reads two files as two tasks and names
their keys. Files built here to the schema robomimic's ``dataset_states_to_obs.py`` writes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

LOW_DIM = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}


def robomimic_file(path, env_name: str, demos: int = 6, seed: int = 0, image: int = 16) -> None:
    """A file in robomimic's v1.5 layout: env_args with ``type`` 1 (robosuite), float64 low-dim
    observations and actions (T, 7), ``agentview_image``, ``states``, masks; nothing of embodied's."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    env_args = {
        "env_name": env_name,
        "type": 1,
        "env_kwargs": {"robots": ["Panda"], "controller_configs": {"type": "OSC_POSE"}, "control_freq": 20},
    }
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        total = 0
        for i in range(demos):
            n = int(rng.integers(12, 20))
            g = data.create_group(f"demo_{i}")
            g.attrs["num_samples"] = n
            g.attrs["model_file"] = "<mujoco model='base'/>"
            g["actions"] = rng.uniform(-1, 1, (n, 7))
            g["rewards"] = np.zeros(n)
            g["dones"] = (np.arange(n) == n - 1).astype(np.int64)
            g["states"] = rng.normal(size=(n, 32))
            for key, d in LOW_DIM.items():
                g[f"obs/{key}"] = rng.normal(size=(n, d))
                g[f"next_obs/{key}"] = rng.normal(size=(n, d))
            g["obs/agentview_image"] = rng.integers(0, 255, (n, image, image, 3), dtype=np.uint8)
            g["next_obs/agentview_image"] = rng.integers(0, 255, (n, image, image, 3), dtype=np.uint8)
            total += n
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(env_args)
        f["mask/train"] = np.array([f"demo_{i}".encode() for i in range(demos - 2)])
        f["mask/valid"] = np.array([f"demo_{i}".encode() for i in range(demos - 2, demos)])


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    """Lift and PickPlaceCan, each as robomimic names its files: <task>/ph/image_v15.hdf5."""
    root = tmp_path_factory.mktemp("robomimic")
    files = [root / task / "ph" / "image_v15.hdf5" for task in ("Lift", "PickPlaceCan")]
    for k, (task, path) in enumerate(zip(("Lift", "PickPlaceCan"), files, strict=True)):
        robomimic_file(path, task, seed=k)
    return files


def test_validate_accepts_the_core_schema_and_says_what_is_absent(two_tasks, capsys):
    from embodied.cli.data import main

    assert main(["validate", *map(str, two_tasks)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid\n")
    assert out.count("robomimic's core schema; embodied's extensions absent") == 2


def test_validate_still_refuses_what_the_core_schema_needs(two_tasks, tmp_path, capsys):
    from embodied.cli.data import main

    broken = tmp_path / "image_v15.hdf5"
    robomimic_file(broken, "Lift")
    with h5py.File(broken, "r+") as f:
        del f["data/demo_1/obs"]
        f["data"].attrs["env_args"] = json.dumps({"env_name": "Lift", "type": 1.5, "env_kwargs": {}})
    assert main(["validate", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "demo_1/obs: group missing" in err and "env_args.type missing or not a string or an integer" in err


def test_info_says_success_is_not_recorded(two_tasks):
    from embodied.data.inspect import info

    text = info([str(p) for p in two_tasks])
    assert "success not recorded" in text and "0%" not in text
    assert "Lift (label ?, from env_args.env_name)" in text and "2 task(s)" in text


def test_training_reads_two_files_of_one_name_as_two_tasks(two_tasks, tmp_path, capsys):
    """A recognizer on both files: two classes, named after env_args.env_name, no one-class warning;
    a policy with no obs keys named reads every low-dim key of the files."""
    from embodied.cli.train import main
    from embodied.train.checkpoint import load_model

    common = [f"data.paths=[{two_tasks[0]},{two_tasks[1]}]", "steps=2", "val_every=2", "ckpt_every=2"]
    out = tmp_path / "recognizer"
    argv = ["recognizer_quick", "--out", str(out), *common, "data.camera=agentview", "data.batch_size=4"]
    assert main([*argv, "recognizer.width=4", "recognizer.depth=2", "data.clip_len=4"]) == 0
    assert "one class" not in capsys.readouterr().err
    _, _, spec, _ = load_model(out)
    assert spec.classes == ["Lift", "PickPlaceCan"] and spec.instructions == ["Lift", "PickPlaceCan"]

    out = tmp_path / "policy"
    argv = ["policy_quick", "--out", str(out), *common, "data.batch_size=4", "policy.obs_keys=null"]
    assert main(argv) == 0
    _, _, spec, config = load_model(out)
    assert list(config.policy.obs_keys) == sorted(LOW_DIM)
    assert spec.action_dim == 7


def test_one_class_is_a_warning_that_says_why(two_tasks, tmp_path, capsys):
    from embodied.cli.train import main

    out = tmp_path / "one"
    argv = ["recognizer_quick", "--out", str(out), f"data.paths=[{two_tasks[0]}]", "steps=1", "val_every=0"]
    assert main([*argv, "ckpt_every=1", "data.camera=agentview", "data.batch_size=4", "data.clip_len=4"]) == 0
    err = capsys.readouterr().err
    assert "warning: the data hold one class (Lift)" in err and "env_args.env_name" in err
