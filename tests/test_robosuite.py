"""The robosuite suite: images the right way up, the scripted experts, files robomimic reads.

The suite's contract (deterministic resets, state round trips, the gymnasium ids) is tested for
every suite in ``tests/test_sim.py`` and ``tests/test_gym.py``; this module holds what is
robosuite's own. Skipped where robosuite is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest

import embodied  # noqa: F401  (headless rendering: MUJOCO_GL=egl before robosuite imports mujoco)
from embodied.sim import load_suite

pytest.importorskip("robosuite")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TASKS = list(load_suite("robosuite").tasks)


def project(env, camera: str, point: np.ndarray, size: int) -> tuple[float, float]:
    """(row, col) of a world point in an upright ``size`` px image of ``camera`` (MuJoCo's
    pinhole camera: it looks along its -z, image up is its +y)."""
    model, data = env._model, env._data
    cam = model.camera(camera).id
    local = data.cam_xmat[cam].reshape(3, 3).T @ (point - data.cam_xpos[cam])  # camera frame
    focal = size / 2 / np.tan(np.radians(model.cam_fovy[cam]) / 2)
    return size / 2 - focal * local[1] / -local[2], size / 2 + focal * local[0] / -local[2]


def centroid(image: np.ndarray, colour: str) -> tuple[float, float]:
    """(row, col) of the pixels of a saturated red or green object."""
    r, g, b = (image[..., k].astype(int) for k in range(3))
    mask = (r > 120) & (g < 90) & (b < 90) if colour == "red" else (g > 100) & (r < g - 30) & (b < g - 30)
    assert mask.sum() >= 4, f"no {colour} object in view"
    rows, cols = np.nonzero(mask)
    return rows.mean(), cols.mean()


@pytest.mark.parametrize(
    "camera", ["agentview"]
)  # robomimic's camera; the others are too far to place the cubes
def test_images_are_upright(camera):
    """Stack's red and green cubes are where the upright projection puts them; their rows are
    far enough apart that an image upside down (rows mirrored) would put them the other way."""
    from embodied.sim import image_key, make_env

    size = 96
    env = make_env("robosuite", "Stack", cameras=(camera,), image_size=size)
    try:
        for seed in range(20):  # a placement with the cubes at clearly different rows
            obs, _ = env.reset(seed=seed)
            red, green = (np.asarray(env.positions()[k]) for k in ("cubeA_pos", "cubeB_pos"))
            (red_row, red_col), (green_row, _) = (
                project(env, camera, red, size),
                project(env, camera, green, size),
            )
            if abs(red_row - green_row) > 10:
                break
        else:
            pytest.fail("no placement with the cubes 10 rows apart in 20 seeds")
        image = obs[image_key(camera)]
        got_red, got_green = centroid(image, "red"), centroid(image, "green")
        assert abs(got_red[0] - red_row) < 5 and abs(got_red[1] - red_col) < 5, (got_red, red_row, red_col)
        assert abs(got_green[0] - green_row) < 5, (got_green, green_row)
        above, _ = project(env, camera, red + [0, 0, 0.1], size)
        assert above < red_row  # world up is image up
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_experts_succeed(task):
    from embodied.sim import make_env

    env = make_env("robosuite", task)
    expert = env.expert()
    try:
        for seed in (0, 1, 2):
            obs, _ = env.reset(seed=seed)
            for _ in range(env.horizon):
                obs, _, terminated, truncated, info = env.step(expert(obs))
                if terminated or truncated:
                    break
            assert info["success"], f"{task}: the expert failed on seed {seed}"
    finally:
        env.close()


@pytest.fixture(scope="module")
def lift_file(tmp_path_factory):
    """Two scripted Lift demos with the agentview camera, as embodied-data collect writes them."""
    from embodied.data.collect import CollectConfig, collect_task

    out = tmp_path_factory.mktemp("robosuite")
    cfg = CollectConfig(
        suite="robosuite", tasks=["Lift"], episodes=2, cameras=["agentview"], image_size=32, out=str(out)
    )
    collect_task(cfg, "Lift", out / "Lift.hdf5")
    return out / "Lift.hdf5"


def test_collected_file_validates_and_robomimic_reads_it(lift_file):
    """The file passes validate, and robomimic's own SequenceDataset reads it with robomimic's
    key names and gives the stored arrays."""
    import h5py

    from embodied.data.inspect import validate

    assert validate([str(lift_file)]) == []
    pytest.importorskip("robomimic")
    from robomimic.utils import obs_utils
    from robomimic.utils.dataset import SequenceDataset

    low_dim = ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]
    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": low_dim, "rgb": ["agentview_image"]}})
    with h5py.File(lift_file, "r") as f:
        stored = {k: f[f"data/demo_0/obs/{k}"][()] for k in [*low_dim, "agentview_image"]}
        actions = f["data/demo_0/actions"][()]
    ds = SequenceDataset(
        hdf5_path=str(lift_file),
        obs_keys=[*low_dim, "agentview_image"],
        dataset_keys=("actions", "rewards", "dones"),
        frame_stack=1,
        seq_length=1,
        hdf5_cache_mode=None,
        filter_by_attribute=None,
        load_next_obs=False,
    )
    item = ds[3]
    for key, value in stored.items():
        np.testing.assert_array_equal(np.asarray(item["obs"][key])[0], value[3], err_msg=key)
    np.testing.assert_array_equal(item["actions"][0], actions[3])
    assert actions.shape[1] == 7 and stored["object"].shape[1] == 10


def test_robomimic_rebuilds_the_environment_from_a_collected_file(lift_file, monkeypatch):
    """robomimic's own EnvRobosuite, made from the file's env_args (type 1, robosuite.make's
    keywords), resets to each stored state (with the demo's model_file first, as robomimic's
    dataset tools do) and observes what the file stores; the demo's actions played from its
    first state succeed there. And embodied reads the same file back: its replay reproduces the
    demo, and robosuite's short (time, qpos, qvel) states restore the same observation."""
    import json
    import sys

    import h5py

    from embodied.data.files import file_suite
    from embodied.data.replay import replay_demo
    from embodied.sim import make_env

    assert replay_demo(lift_file, "demo_0").first_divergent_step is None
    assert file_suite(lift_file) == "robosuite"
    low_dim = ["robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "object"]
    with h5py.File(lift_file, "r") as f:
        env_meta = json.loads(f["data"].attrs["env_args"])
        g = f["data/demo_0"]
        states, actions, model = g["states"][()], g["actions"][()], g.attrs["model_file"]
        stored = {k: g[f"obs/{k}"][()] for k in low_dim}
    assert env_meta["type"] == 1 and env_meta["env_kwargs"]["camera_names"] == ["agentview"]

    env = make_env("robosuite", "Lift", horizon=200)
    try:
        env.reset(seed=0)
        short = states[5][: 1 + env._model.nq + env._model.nv]  # what robosuite's own files store
        np.testing.assert_array_equal(env.set_state(short)["object"], env.set_state(states[5])["object"])
    finally:
        env.close()

    pytest.importorskip("robomimic")
    # robomimic 0.3.0 imports mujoco_py for one exception class its rollouts catch: the shim that
    # embodied ships for it (embodied.robomimic_shim, as a user would install it)
    from embodied import robomimic_shim

    monkeypatch.setitem(sys.modules, "mujoco_py", robomimic_shim.stub())
    from robomimic.utils import env_utils, obs_utils

    obs_utils.initialize_obs_utils_with_obs_specs({"obs": {"low_dim": low_dim, "rgb": []}})
    rm_env = env_utils.create_env_from_metadata(env_meta=env_meta, render=False, render_offscreen=False)
    try:
        for t in range(0, len(states), 7):
            obs = rm_env.reset_to({"model": model, "states": states[t]} if t == 0 else {"states": states[t]})
            for key in low_dim:  # the file stores float32
                np.testing.assert_allclose(obs[key], stored[key][t], atol=1e-6, err_msg=f"{key} at {t}")
        rm_env.reset_to({"states": states[0]})
        success = False
        for action in actions:
            rm_env.step(action)
            success = success or rm_env.is_success()["task"]
        assert success
    finally:
        rm_env.env.close()


def test_a_policy_trained_on_robomimic_files_is_evaluated_in_robosuite(tmp_path):
    """robomimic's own Lift file (no embodied attributes, env_args type 1) trains a policy, and
    embodied-eval rolls it out in the robosuite suite: the task comes from env_args.env_name, the
    observation keys are robomimic's."""
    import json

    from test_robomimic_files import robomimic_file

    from embodied.cli.eval import main as eval_main
    from embodied.cli.train import main as train_main

    data = tmp_path / "Lift" / "ph" / "low_dim_v15.hdf5"
    robomimic_file(data, "Lift")
    run = tmp_path / "run"
    argv = [
        "policy_quick",
        "--out",
        str(run),
        f"data.paths=[{data}]",
        "steps=2",
        "val_every=2",
        "ckpt_every=2",
    ]
    assert train_main([*argv, "data.batch_size=4", "policy.obs_keys=null"]) == 0
    out = tmp_path / "eval"
    assert (
        eval_main([str(run), "--episodes", "1", "--horizon", "20", "--workers", "0", "--out", str(out)]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["suite"] == "robosuite" and results["task_names"] == ["Lift"]
    assert results["episodes"][0]["length"] == 20 and results["episodes"][0]["failure"] == "horizon"
