"""The ``mesh_detail`` setting (embodied.sim.meshes): ``full`` draws Meta-World exactly as a plain
``mujoco.Renderer`` does; ``low`` draws large meshes simplified, close to the full frame, the same
in every environment, recorded in collected files and used again by replay and evaluation."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from embodied.errors import UserError
from embodied.sim import load_suite, make_env

# isort: split
import mujoco  # after embodied.sim, which sets MUJOCO_GL=egl before mujoco is first imported

SIZE = 64
CAMERA = "corner"
TASKS = list(dict.fromkeys(load_suite("metaworld").resolve_tasks(["lookalike", "quick"])))


def plain_frame(env) -> np.ndarray:
    """The frame of a plain ``mujoco.Renderer`` on the env's own model (shadows and multisampling
    off by the env's renderer, cameras turned upright), in the env's current state."""
    renderer = mujoco.Renderer(env._model, SIZE, SIZE)
    try:
        renderer.update_scene(env._data, camera=CAMERA)
        return renderer.render()
    finally:
        renderer.close()


DEFAULT_TIER = ("drawer-open-v3", "button-press-topdown-v3")
"""Two tasks (a look-alike one and a quick one) in the default tier; every task in the slow tier."""


@pytest.mark.parametrize(
    "task", [t if t in DEFAULT_TIER else pytest.param(t, marks=pytest.mark.slow) for t in TASKS]
)
def test_a_frame_per_task(task):
    """``full`` (the default) changes nothing: bit for bit the frame MuJoCo's own renderer makes.
    ``low`` differs from it by a little on average (about 1.2 of 255 per pixel), and at all (the
    meshes are really replaced)."""
    full = make_env("metaworld", task, cameras=(CAMERA,), image_size=SIZE)
    low = make_env("metaworld", task, cameras=(CAMERA,), image_size=SIZE, mesh_detail="low")
    try:
        assert full.env_kwargs()["mesh_detail"] == "full"
        assert low.env_kwargs()["mesh_detail"] == "low"
        a = full.reset(seed=3)[0][f"{CAMERA}_image"]
        b = low.reset(seed=3)[0][f"{CAMERA}_image"]
        assert np.array_equal(a, plain_frame(full))
        mad = np.abs(a.astype(np.int16) - b).mean()
        assert 0.2 < mad < 3.0, mad
    finally:
        full.close()
        low.close()


def test_low_detail_is_the_same_in_another_process():
    """The shipped meshes make the same frames in any environment, in any process."""
    import subprocess
    import sys

    code = (
        "import numpy as np, sys; from embodied.sim import make_env; "
        f"e = make_env('metaworld', 'window-open-v3', cameras=('{CAMERA}',), image_size={SIZE}, "
        "mesh_detail='low'); sys.stdout.buffer.write(e.reset(seed=7)[0]['corner_image'].tobytes())"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    env = make_env("metaworld", "window-open-v3", cameras=(CAMERA,), image_size=SIZE, mesh_detail="low")
    try:
        here = env.reset(seed=7)[0][f"{CAMERA}_image"]
    finally:
        env.close()
    assert here.tobytes() == there


def test_switching_back_to_full_restores_the_exact_frame():
    """The renderer's meshes are replaced in place: switching back gives the plain frame again,
    and the physics (the state) never saw the simplified meshes."""
    env = make_env(
        "metaworld", "drawer-open-v3", seed=2, cameras=(CAMERA,), image_size=SIZE, mesh_detail="low"
    )
    try:
        low = env.render_cameras()[CAMERA]
        renderer = env._renderer
        renderer.set_mesh_detail("full")
        full = renderer.render(env._data)[CAMERA]
        assert np.array_equal(full, plain_frame(env))
        assert not np.array_equal(full, low)
        renderer.set_mesh_detail("low")
        assert np.array_equal(renderer.render(env._data)[CAMERA], low)
    finally:
        env.close()


def test_physics_is_untouched():
    """The same seed and actions give the same states at either detail."""
    states = {}
    for detail in ("full", "low"):
        env = make_env("metaworld", "drawer-open-v3", cameras=(CAMERA,), image_size=SIZE, mesh_detail=detail)
        expert = env.expert()
        obs, _ = env.reset(seed=5)
        for _ in range(20):
            obs, *_ = env.step(expert(obs))
        states[detail] = env.get_state()
        env.close()
    assert np.array_equal(states["full"], states["low"])


def test_simplified_meshes_leave_the_convex_hulls_alone():
    """Simplified vertices go to slots the convex hull does not use: the hull (drawn by
    MuJoCo's convex-hull view) keeps its vertices."""
    from embodied.sim.meshes import render_model, simplified_meshes

    env = make_env("metaworld", "drawer-open-v3")
    model = env._model
    meshes = simplified_meshes(model, "low")
    drawn = render_model(model, meshes)
    hulls = [m for m in meshes if model.mesh_graphadr[m] >= 0]
    assert hulls  # the gripper's meshes have hulls
    for mesh in hulls:
        graph = model.mesh_graphadr[mesh]
        nv, nf = model.mesh_graph[graph], model.mesh_graph[graph + 1]
        ids = model.mesh_graph[graph + 2 + 3 * nv + 3 * nf : graph + 2 + 3 * nv + 6 * nf]
        va = model.mesh_vertadr[mesh]
        assert np.array_equal(drawn.mesh_vert[va + ids], model.mesh_vert[va + ids])
        assert drawn.mesh_facenum[mesh] < model.mesh_facenum[mesh] / 10
    assert np.array_equal(model.mesh_facenum, make_env("metaworld", "drawer-open-v3")._model.mesh_facenum)
    env.close()


def test_a_mesh_the_table_lacks_is_refused(monkeypatch):
    """A large mesh without a shipped simplification (another MuJoCo compiled it differently) is
    a one-line error naming the command that makes them, never a silent full-detail mesh."""
    from embodied.sim import meshes

    table = meshes.load_table("low")
    empty = meshes.MeshTable("low", table.params, {}, {})
    monkeypatch.setattr(meshes, "load_table", lambda detail: empty)
    with pytest.raises(UserError, match=r"no simplified mesh for .*python -m embodied.sim.meshes"):
        make_env("metaworld", "drawer-open-v3", cameras=(CAMERA,), image_size=SIZE, mesh_detail="low")


def test_unknown_detail_is_refused():
    with pytest.raises(UserError, match="mesh_detail 'medium'"):
        make_env("metaworld", "drawer-open-v3", mesh_detail="medium")


def test_the_table_is_small_and_records_how_it_was_made():
    from embodied.sim.meshes import LEVELS, load_table, table_path

    assert table_path("low").stat().st_size < 200_000
    table = load_table("low")
    assert {k: table.params[k] for k in LEVELS["low"]} == LEVELS["low"]
    assert table.params["mujoco"] == mujoco.__version__


@pytest.fixture(scope="module")
def low_file(tmp_path_factory):
    """One collected file at ``mesh_detail=low`` (one short episode kept whatever its success)."""
    from embodied.data.collect import CollectConfig, collect_task

    out = tmp_path_factory.mktemp("low")
    cfg = CollectConfig(
        tasks=["reach-v3"], episodes=1, cameras=[CAMERA], image_size=SIZE, horizon=8,
        keep_failures=True, mesh_detail="low", out=str(out), workers=1,
    )  # fmt: skip
    path = out / "reach-v3.hdf5"
    collect_task(cfg, "reach-v3", path)
    return path


def test_collected_file_records_the_detail(low_file):
    """The setting is in ``/data`` ``env_args.env_kwargs`` (what replay and evaluation rebuild the
    environment from) and in ``collect_args`` (a rerun with another detail is not skipped)."""
    from embodied.data.collect import CollectConfig, file_is_complete, task_args
    from embodied.data.files import file_env

    with h5py.File(low_file, "r") as f:
        env_args = json.loads(f["data"].attrs["env_args"])
        assert env_args["env_kwargs"]["mesh_detail"] == "low"
        assert json.loads(f["data"].attrs["collect_args"])["mesh_detail"] == "low"
        recorded = file_env(f, str(low_file))
        stored = f["data/demo_0/obs"][f"{CAMERA}_image"][0]
        seed = int(f["data/demo_0"].attrs["seed"])
    assert recorded.mesh_detail == "low"
    # the file's own env_kwargs rebuild an environment that renders its frames again
    env = make_env("metaworld", **env_args["env_kwargs"])
    try:
        assert np.array_equal(env.reset(seed=seed)[0][f"{CAMERA}_image"], stored)
    finally:
        env.close()
    cfg = CollectConfig(
        tasks=["reach-v3"], episodes=1, cameras=[CAMERA], image_size=SIZE, horizon=8,
        keep_failures=True, out=str(low_file.parent), workers=1,
    )  # fmt: skip
    assert not file_is_complete(low_file, task_args(cfg, "reach-v3"))  # full detail: made again
    low = CollectConfig(**{**cfg.__dict__, "mesh_detail": "low"})
    assert file_is_complete(low_file, task_args(low, "reach-v3"))


def test_files_without_the_setting_read_as_full(demo_file):
    """Files made before the setting (and robomimic's) say nothing: full detail."""
    from embodied.data.files import file_env

    with h5py.File(demo_file, "r") as f:
        kwargs = json.loads(f["data"].attrs["env_args"])["env_kwargs"]
        recorded = file_env(f, str(demo_file))
    assert kwargs.get("mesh_detail", "full") == "full"
    assert recorded.mesh_detail == "full"


def test_replay_of_a_low_detail_file(low_file):
    """Replay rebuilds the environment from the file and reproduces its states."""
    from embodied.data.replay import replay_demo

    result = replay_demo(low_file, "demo_0")
    assert result.max_divergence < 1e-6


def test_eval_env_renders_at_the_given_detail(low_file):
    """An evaluation environment told the data's detail renders what the data shows."""
    from embodied.eval.envs import EpisodePlan, EvalEnv

    with h5py.File(low_file, "r") as f:
        stored = f["data/demo_0/obs"][f"{CAMERA}_image"][0]
        seed = int(f["data/demo_0"].attrs["seed"])
    for detail, same in (("low", True), ("full", False)):
        env = EvalEnv(
            "metaworld", EpisodePlan("reach-v3", seed), (CAMERA,), SIZE, 8, True, mesh_detail=detail
        )
        try:
            obs, _ = env.reset(options={"plan": EpisodePlan("reach-v3", seed)})
            assert np.array_equal(obs[f"{CAMERA}_image"], stored) is same
        finally:
            env.close()


def test_a_policy_is_evaluated_at_its_datas_detail(low_file, demo_file, tmp_path):
    """The reader records the files' detail in the DataSpec (a checkpoint keeps it), the rollout
    plan takes it from there, so the evaluation's environments draw what the policy saw; files
    drawn differently are refused together where images are read."""
    from embodied.data.reader import DemoDataset
    from embodied.data.spec import DataSpec
    from embodied.errors import UserError
    from embodied.eval.plan import plan_rollouts, resolve_target
    from embodied.eval.settings import EvalSettings

    spec = DemoDataset(low_file, split="all", obs_keys=[f"{CAMERA}_image"]).data_spec()
    assert spec.mesh_detail == "low"
    assert DataSpec.from_json(spec.to_json()).mesh_detail == "low"  # as a checkpoint keeps it
    assert DemoDataset(demo_file, split="all", obs_keys=["robot_state"]).data_spec().mesh_detail == "full"
    settings = EvalSettings(episodes=1, workers=0)
    plan = plan_rollouts(resolve_target(settings, spec), settings, (CAMERA,), SIZE, spec)
    assert plan.mesh_detail == "low"  # make_env_pool builds every EvalEnv with it
    full = tmp_path / "full.hdf5"  # the same file, said to be drawn at full detail
    shutil.copyfile(low_file, full)
    with h5py.File(full, "r+") as f:
        env_args = json.loads(f["data"].attrs["env_args"])
        env_args["env_kwargs"]["mesh_detail"] = "full"
        f["data"].attrs["env_args"] = json.dumps(env_args)
    with pytest.raises(UserError, match="drawn differently"):
        DemoDataset([low_file, full], split="all", obs_keys=[f"{CAMERA}_image"])
    assert DemoDataset([low_file, full], split="all", obs_keys=["robot_state"]).mesh_detail == "full"
