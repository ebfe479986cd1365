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


def robomimic_file(
    path, env_name: str, demos: int = 6, seed: int = 0, image: int = 16, extra: dict | None = None, masks=True
) -> None:
    """A file in robomimic's v1.5 layout: env_args with ``type`` 1 (robosuite), float64 low-dim
    observations (``LOW_DIM`` and ``extra``) and actions (T, 7), ``agentview_image``, ``states``,
    masks (unless not ``masks``: as before robomimic's split_train_val.py); nothing of embodied's."""
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
            for key, d in {**LOW_DIM, **(extra or {})}.items():
                g[f"obs/{key}"] = rng.normal(size=(n, d))
                g[f"next_obs/{key}"] = rng.normal(size=(n, d))
            g["obs/agentview_image"] = rng.integers(0, 255, (n, image, image, 3), dtype=np.uint8)
            g["next_obs/agentview_image"] = rng.integers(0, 255, (n, image, image, 3), dtype=np.uint8)
            total += n
        data.attrs["total"] = total
        data.attrs["env_args"] = json.dumps(env_args)
        if masks:
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


def test_a_file_without_masks_is_split_at_read_time(tmp_path, capsys):
    """robomimic's files before its split_train_val.py have no /mask: validate accepts them with a
    note, and the reader splits their demos as collect would (10 % valid), the same every time;
    info shows that split."""
    from embodied.cli.data import main
    from embodied.data.reader import DemoDataset

    path = tmp_path / "Lift" / "low_dim_v15.hdf5"
    robomimic_file(path, "Lift", demos=20, masks=False)
    assert main(["validate", str(path)]) == 0
    assert (
        f"{path}: no /mask: training splits its demos when it reads them, 10% valid"
        in capsys.readouterr().out
    )
    assert main(["info", str(path)]) == 0  # info shows the split the reader will make
    assert (
        "demos 20 (train 18, valid 2; no /mask: split when read, 10% valid, seed 0)"
        in capsys.readouterr().out
    )
    demos = {}
    for split in ("train", "valid", "train"):
        ds = DemoDataset([path], split=split, mode="window")
        demos.setdefault(split, []).append({e.demo for e in ds.episodes})
    assert demos["train"][0] == demos["train"][1]  # the same split at every read
    train, valid = demos["train"][0], demos["valid"][0]
    assert len(valid) == 2 and not train & valid and len(train | valid) == 20
    assert capsys.readouterr().err.count("has no /mask: its demos are split here") == 1  # once a file


def test_a_policy_that_reads_keys_the_suite_does_not_give_is_refused_before_rollouts(tmp_path, capsys):
    """A policy trained with the default keys on a file holding more low-dim keys than robosuite's
    environments give: eval names the missing keys in one line before any worker starts (it was a
    KeyError traceback from the workers), and training with rollouts refuses at its start."""
    from embodied.cli.eval import main as eval_main
    from embodied.cli.train import main as train_main

    extra = {"robot0_eef_vel_lin": 3, "robot0_joint_pos": 7}
    path = tmp_path / "image_v15.hdf5"
    robomimic_file(path, "Lift", extra=extra)
    common = [f"data.paths=[{path}]", "steps=2", "val_every=2", "ckpt_every=2", "data.batch_size=4"]
    run = tmp_path / "policy"
    assert train_main(["policy_quick", "--out", str(run), *common, "policy.obs_keys=null"]) == 0
    capsys.readouterr()
    assert eval_main([str(run), "--episodes", "1", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        "error: the policy reads observation keys that robosuite's environments do not give: "
        "robot0_eef_vel_lin, robot0_joint_pos "
        "(they give robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos, object)"
    )
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and not (run / "eval").exists()

    again = tmp_path / "with_rollouts"
    argv = ["policy_quick", "--out", str(again), *common, "policy.obs_keys=null", "rollout_every=1"]
    assert train_main(argv) == 2
    assert "robot0_eef_vel_lin, robot0_joint_pos" in capsys.readouterr().err
    assert not (again / "checkpoints").exists()


def test_the_mujoco_py_shim_lets_robomimic_import_its_robosuite_wrapper():
    pytest.importorskip("robomimic")
    pytest.importorskip("robosuite")
    import importlib.util
    import sys

    from embodied import robomimic_shim

    if importlib.util.find_spec("mujoco_py") is not None:
        pytest.skip("a real mujoco_py is installed here")
    saved = {name: sys.modules.pop(name, None) for name in ("mujoco_py", "robomimic.envs.env_robosuite")}
    try:
        robomimic_shim.install()
        from robomimic.envs.env_robosuite import EnvRobosuite

        assert EnvRobosuite.rollout_exceptions.fget(None) is robomimic_shim.MujocoException
    finally:  # this process's modules as they were
        for name, module in saved.items():
            sys.modules.pop(name, None)
            if module is not None:
                sys.modules[name] = module
