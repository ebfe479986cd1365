"""Contract tests of the simulation layer (``embodied.sim``).

- every task of every registered suite: the :class:`SuiteEnv` contract (the gymnasium API,
  determinism under a seed, seeds that name different task variants, state save/restore,
  truncation at the horizon), so a new suite is tested by registering it;
- the registry: the only list of suites, each entry's spec and worker modules;
- Meta-World's cameras: images right side up, checked on rendered pixels (depth against rays
  cast through the same pixels) and on the projection of the world's up direction;
- rendering options, user errors, and the headless default ``MUJOCO_GL=egl``.

Cameras are built only where a test needs images: an environment without them is cheap.
"""

from __future__ import annotations

import importlib
import io
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embodied.errors import UserError
from embodied.paths import resource_dir
from embodied.sim import SUITES, RenderOptions, get_suite, image_key, known_suites, load_suite, make_env

# isort: split
import mujoco  # after embodied.sim, which sets MUJOCO_GL=egl before mujoco is first imported

SUITE_TASKS = [(suite, task) for suite in SUITES for task in load_suite(suite).tasks]
SUITE_TASK_IDS = [f"{suite}/{task}" for suite, task in SUITE_TASKS]
SUITE = "metaworld"  # the suite of the camera and rendering tests (they read its MuJoCo model)
SPEC = load_suite(SUITE)
CAMERAS = SPEC.cameras
SIZE = 64  # image side for the rendering tests: small, so that they stay fast on a CPU
IMAGE_TASK = "drawer-open-v3"
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:Constant\\(s\\) may be too high")  # the experts' gains
every_task = pytest.mark.parametrize(("suite", "task"), SUITE_TASKS, ids=SUITE_TASK_IDS)


def sim(env):
    """The MuJoCo model and data behind a Meta-World adapter (the adapter keeps them private)."""
    return env._env.model, env._env.data


def state_of(env):
    """Everything that makes up a task variant and its simulator state, for comparisons."""
    return {"state": env.get_state(), "variant": env.task_variant()}


def assert_equal(a: dict, b: dict) -> None:
    """Two dicts of arrays (observations, states) are exactly equal."""
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def random_action(seed: int, dim: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, dim).astype(np.float32)


_ENVS: dict[tuple[str, str], object] = {}


def cached_env(suite: str, task: str):
    """One camera-less environment per task, shared by the per-task tests of this module."""
    if (suite, task) not in _ENVS:
        _ENVS[suite, task] = make_env(suite, task)
    return _ENVS[suite, task]


@pytest.fixture(scope="module", autouse=True)
def _close_cached_envs():
    yield
    for env in _ENVS.values():
        env.close()
    _ENVS.clear()


def expert_actions(env, seed: int, steps: int) -> list[np.ndarray]:
    """The first ``steps`` actions of the suite's expert (random ones where it has none) from
    ``reset(seed=seed)``, plus a little noise."""
    dim = env.action_space.shape[0]
    expert = env.expert() if get_suite(env.suite).has_expert else None
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    actions = []
    for _ in range(steps):
        base = expert(obs) if expert is not None else rng.uniform(-1, 1, dim)
        action = np.clip(base + rng.normal(0, 0.2, dim), -1, 1).astype(np.float32)
        actions.append(action)
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    return actions


def rollout(env, seed: int, actions: list[np.ndarray]) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    out = [(obs, 0.0, env.get_state())]
    for action in actions:
        obs, reward, *_ = env.step(action)
        out.append((obs, reward, env.get_state()))
    return out


# -- the registry --------------------------------------------------------------------------------
@pytest.mark.parametrize("suite", list(SUITES))
def test_registry_entry_is_complete(suite):
    """Each entry names a spec of its own suite, an adapter of that suite, and worker modules
    that import; the adapter's expert is there exactly when the entry says so."""
    entry = get_suite(suite)
    assert load_suite(suite).suite == suite
    assert entry.env_class().suite == suite
    for module in entry.worker_preload:
        importlib.import_module(module)
    task = next(iter(load_suite(suite).tasks))
    assert (cached_env(suite, task).expert() is not None) == entry.has_expert


def test_every_spec_belongs_to_a_registered_suite():
    specs = {p.stem for p in resource_dir("envs").glob("*.yaml")}
    assert specs == {get_suite(s).spec for s in SUITES}
    assert known_suites() == list(SUITES)


# -- every task: the gymnasium API --------------------------------------------------------------
@every_task
def test_api(suite, task):
    env = cached_env(suite, task)
    assert env.horizon == load_suite(suite).tasks[task].horizon  # the default comes from the spec
    (dim,) = env.action_space.shape
    assert dim == get_suite(suite).action_size  # what validate, training and replay hold files to
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)

    obs, info = env.reset(seed=0)
    assert (
        set(obs) == set(env.observation_space.spaces) == set(type(env).low_dim_keys)
    )  # what eval checks against
    for key, space in env.observation_space.spaces.items():
        assert obs[key].shape == space.shape, key
        assert obs[key].dtype == space.dtype == np.float32, key  # camera-less: low-dim keys only
    assert env.observation_space.contains(obs)
    assert info["success"] is False

    result = env.step(random_action(0, dim))
    assert len(result) == 5
    obs, reward, terminated, truncated, info = result
    assert env.observation_space.contains(obs)
    assert isinstance(reward, float)
    assert type(terminated) is bool and type(truncated) is bool
    assert type(info["success"]) is bool
    assert type(info.get("unstable", False)) is bool

    # Actions are clipped to [-1, 1]: an out-of-range action acts like its clipped value.
    wild = np.resize(np.array([3.0, -7.0, 0.5, 20.0], dtype=np.float32), dim)
    env.reset(seed=0)
    obs_wild, *_ = env.step(wild)
    state_wild = env.get_state()
    env.reset(seed=0)
    obs_clipped, *_ = env.step(np.clip(wild, -1, 1))
    assert_equal(obs_wild, obs_clipped)
    np.testing.assert_array_equal(state_wild, env.get_state())


# -- every task: determinism under a seed -------------------------------------------------------
@every_task
def test_reset_is_deterministic(suite, task):
    env = cached_env(suite, task)
    obs_a, _ = env.reset(seed=7)
    first = state_of(env)
    for i in range(5):  # disturb the simulation, then reset to the same seed
        env.step(random_action(i, env.action_space.shape[0]))
    env.reset(seed=123)
    obs_b, _ = env.reset(seed=7)
    assert_equal(obs_a, obs_b)
    assert_equal(first, state_of(env))


@every_task
def test_seeds_name_different_variants(suite, task):
    """Different seeds give different initial observations (what varies depends on the task:
    some move only the object, some only the goal), seed by seed reproducibly."""
    env = cached_env(suite, task)
    variants = []
    for seed in (0, 1, 2):
        obs, _ = env.reset(seed=seed)
        variants.append(np.concatenate([obs[key] for key in sorted(obs)]))
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(variants[i] - variants[j]).max() > 1e-3, f"seeds {i} and {j} give the same variant"


@pytest.mark.parametrize("suite", list(SUITES))
def test_a_seed_resets_the_same_in_another_process(suite):
    """Another process (another NumPy global generator, as a collection or evaluation worker has)
    resets a seed to the same state and variant: nothing the build or the reset draws is left
    to chance (robosuite sized its cubes from the unseeded global generator once)."""
    tasks = list(load_suite(suite).tasks)[:3]
    code = (
        "import sys, numpy as np, embodied\n"
        "from embodied.sim import make_env\n"
        f"for task in {tasks!r}:\n"
        f"    env = make_env({suite!r}, task)\n"
        "    env.reset(seed=7)\n"
        "    np.save(sys.stdout.buffer, np.concatenate([env.get_state(), env.task_variant()]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=True).stdout
    stream = io.BytesIO(out)
    for task in tasks:
        env = cached_env(suite, task)
        env.reset(seed=7)
        here = np.concatenate([env.get_state(), env.task_variant()])
        np.testing.assert_array_equal(np.load(stream), here, err_msg=task)


@every_task
def test_same_seed_same_trajectory_in_two_instances(suite, task):
    env = cached_env(suite, task)
    actions = expert_actions(env, seed=3, steps=12)
    other = make_env(suite, task)
    try:
        run_a = rollout(env, 3, actions)
        variant_a = env.task_variant()
        run_b = rollout(other, 3, actions)
        np.testing.assert_array_equal(variant_a, other.task_variant())  # the same variant
    finally:
        other.close()
    for t, ((obs_a, rew_a, st_a), (obs_b, rew_b, st_b)) in enumerate(zip(run_a, run_b, strict=True)):
        assert_equal(obs_a, obs_b)
        assert rew_a == rew_b, f"step {t}"
        np.testing.assert_array_equal(st_a, st_b, err_msg=f"step {t}")


@every_task
def test_state_round_trip(suite, task):
    """get_state/set_state restore the simulation within a variant: the observation there,
    and the trajectory that the same actions give from there."""
    env = cached_env(suite, task)
    actions = expert_actions(env, seed=5, steps=10)
    obs, _ = env.reset(seed=5)
    for action in actions[:5]:
        obs, *_ = env.step(action)
    saved, saved_obs = env.get_state(), obs
    after = [env.step(action)[0] for action in actions[5:]]
    end_state = env.get_state()

    restored_obs = env.set_state(saved)
    np.testing.assert_array_equal(env.get_state(), saved)
    assert_equal(restored_obs, saved_obs)
    replay = [env.step(action)[0] for action in actions[5:]]
    for a, b in zip(after, replay, strict=True):
        assert_equal(a, b)
    np.testing.assert_array_equal(env.get_state(), end_state)


@pytest.mark.parametrize("suite", list(SUITES))
def test_horizon_truncates(suite):
    task = next(iter(load_suite(suite).tasks))
    env = make_env(suite, task, horizon=3)
    try:
        env.reset(seed=0)
        zero = np.zeros(env.action_space.shape, np.float32)
        flags = [env.step(zero)[3] for _ in range(3)]
    finally:
        env.close()
    assert flags == [False, False, True]


@pytest.mark.parametrize("suite", list(SUITES))
def test_rebuilt_from_env_kwargs(suite):
    """``make_env(suite, **env.env_kwargs())`` builds the same environment again."""
    task = next(iter(load_suite(suite).tasks))
    env = cached_env(suite, task)
    other = make_env(suite, **env.env_kwargs())
    try:
        obs_a, _ = env.reset(seed=4)
        obs_b, _ = other.reset(seed=4)
        assert_equal(obs_a, obs_b)
        assert other.horizon == env.horizon
    finally:
        other.close()


def test_metaworld_pickling_fails_loudly():
    """Pickling is refused with a clear message. Meta-World's own pickling rebuilds the model
    from its XML: the result loses the camera orientation fix, the task variant (kept in
    ``model.body_pos``) and the simulator state, so it is refused rather than silently wrong.
    Pickle the factory's arguments (``env.env_kwargs()``) instead."""
    env = cached_env(SUITE, IMAGE_TASK)
    with pytest.raises(TypeError, match="env_kwargs"):
        pickle.dumps(env)


# -- cameras: right side up, on rendered pixels -------------------------------------------------
def pixel_rays(model, data, cam: int, rows, cols, size: int) -> np.ndarray:
    """World directions of the rays through pixel centres under the upright pinhole convention:
    row 0 at the top, image up = camera +y, image right = camera +x, forward = camera -z,
    vertical field of view ``cam_fovy``. Scaled to unit length along the optical axis, so
    that ``mj_ray``'s distance along them is the pixel's depth."""
    tan_half = math.tan(math.radians(model.cam_fovy[cam]) / 2)
    half = size / 2
    right = (np.asarray(cols) + 0.5 - half) / half * tan_half
    up = (half - (np.asarray(rows) + 0.5)) / half * tan_half
    local = np.stack([right, up, -np.ones_like(right)], axis=1)  # (N, 3) in the camera frame
    return local @ data.cam_xmat[cam].reshape(3, 3).T  # (N, 3) in the world frame


def ray_depth(model, data, cam: int, vec: np.ndarray, znear: float) -> float:
    """Depth of the first visible surface along ``vec`` from the camera, inf if none.

    Surfaces nearer than the near clipping plane are not rendered: a ray that starts inside a
    geom (``behindGripper`` sits inside the arm's mesh) goes on past them.
    """
    groups = np.asarray(mujoco.MjvOption().geomgroup, dtype=np.uint8)  # the renderer's visible groups
    point, travelled, geom = data.cam_xpos[cam].copy(), 0.0, np.zeros(1, np.int32)
    for _ in range(8):
        x = mujoco.mj_ray(model, data, point, vec, groups, 1, -1, geom)
        if x < 0:
            return math.inf
        travelled += x
        if travelled >= znear:
            return travelled
        point = point + (x + 1e-6) * vec
        travelled += 1e-6
    return math.inf


def depth_agreement(depth: np.ndarray, expected: np.ndarray, rows, cols) -> float:
    """Share of probe pixels where a depth image agrees with the depths of the cast rays."""
    far = depth.max()
    got = depth[rows, cols]
    hit = np.isfinite(expected)
    close = np.abs(got - np.where(hit, expected, 0.0)) <= 0.01 + 0.02 * np.where(hit, expected, 0.0)
    return float(np.where(hit, close, got >= 0.99 * far).mean())


@pytest.fixture(scope="module")
def camera_env():
    """An environment with every camera of the spec, and a reference renderer on its model."""
    env = make_env(SUITE, IMAGE_TASK, cameras=CAMERAS, image_size=SIZE, seed=0)
    model, _ = sim(env)
    rgb = mujoco.Renderer(model, SIZE, SIZE)
    depth = mujoco.Renderer(model, SIZE, SIZE)
    depth.enable_depth_rendering()
    yield env, rgb, depth
    rgb.close()
    depth.close()
    env.close()


@pytest.mark.parametrize("camera", CAMERAS)
def test_depth_pixels_match_upright_rays(camera, camera_env):
    """The rendered depth at probe pixels equals the depth of rays cast through them under the
    upright convention; the same image flipped upside down does not, so a flip would fail."""
    env, _, renderer = camera_env
    model, data = sim(env)
    env.reset(seed=0)
    cam = model.camera(camera).id
    renderer.update_scene(data, camera=camera)
    depth = renderer.render()  # (H, W) float32, metres along the optical axis
    grid = np.arange(2, SIZE, 5)
    rows, cols = (g.ravel() for g in np.meshgrid(grid, grid, indexing="ij"))
    znear = model.vis.map.znear * model.stat.extent
    expected = np.array(
        [ray_depth(model, data, cam, v, znear) for v in pixel_rays(model, data, cam, rows, cols, SIZE)]
    )
    assert np.isfinite(expected).mean() > 0.5, "too few probe rays hit the scene to judge"
    upright = depth_agreement(depth, expected, rows, cols)
    flipped = depth_agreement(depth[::-1], expected, rows, cols)
    assert upright >= 0.95, f"{camera}: depth agrees with upright rays at only {upright:.0%} of pixels"
    assert flipped < 0.8, f"{camera}: the check cannot tell a flipped image ({flipped:.0%} agree)"


@pytest.mark.parametrize("camera", CAMERAS)
def test_world_up_points_up_in_image(camera, camera_env):
    """World up is image up: points just above the hand and the object project higher (a
    smaller row), and in the rendered depth the empty space above the scene is at the top.

    The depth test above ties pixel rows to the camera's +y; this one ties the camera's +y to
    the world's +z. Without ``upright_cameras`` both halves fail for corner, corner2, corner4.
    """
    env, _, renderer = camera_env
    model, data = sim(env)
    obs, _ = env.reset(seed=0)
    cam = model.camera(camera).id
    rot = data.cam_xmat[cam].reshape(3, 3)  # columns: camera x, y, z in the world frame
    if abs(rot[2, 2]) > 0.95:
        pytest.skip(f"{camera} looks (almost) straight down: world up is along its optical axis")
    tan_half = math.tan(math.radians(model.cam_fovy[cam]) / 2)

    def row_of(point):
        local = rot.T @ (point - data.cam_xpos[cam])  # camera frame: x right, y up, -z forward
        assert local[2] < 0, "point behind the camera"
        return SIZE / 2 - local[1] / -local[2] * (SIZE / 2) / tan_half

    for name, point in (("hand", obs["robot_state"][:3]), ("object", obs["object_state"][:3])):
        point = np.asarray(point, dtype=float)
        assert row_of(point + [0, 0, 0.05]) < row_of(point), f"{camera}: above the {name} appears lower"

    renderer.update_scene(data, camera=camera)
    depth = renderer.render()
    empty = depth >= 0.99 * model.vis.map.zfar * model.stat.extent  # nothing hit: the far plane
    if empty.mean() > 0.05:  # some cameras (corner3) see no empty space: the projection above decides
        top, bottom = empty[: SIZE // 2].mean(), empty[SIZE // 2 :].mean()
        assert top > bottom + 0.3, (
            f"{camera}: empty space at the bottom ({bottom:.0%}) not the top ({top:.0%})"
        )


@pytest.mark.parametrize("camera", CAMERAS)
def test_env_images_are_the_upright_render(camera, camera_env):
    """The images the environment returns are the reference renderer's, on the upright model."""
    env, reference, _ = camera_env
    model, data = sim(env)
    obs, _ = env.reset(seed=0)
    obs, *_ = env.step(np.array([0.5, 0.2, -0.3, 1.0], np.float32))
    image = obs[image_key(camera)]
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert image.std() > 5, "a blank image"
    reference.update_scene(data, camera=camera)
    expected = reference.render()
    assert np.abs(image.astype(int) - expected).max() <= 2
    np.testing.assert_array_equal(env.render_cameras()[camera], image)


def test_two_envs_render_independently():
    """Rendering several environments in one process keeps each one's frames its own."""
    a = make_env(SUITE, IMAGE_TASK, cameras=("corner",), image_size=SIZE)
    b = make_env(SUITE, "button-press-v3", cameras=("corner",), image_size=SIZE)
    try:
        first_a = a.reset(seed=0)[0]["corner_image"]
        first_b = b.reset(seed=0)[0]["corner_image"]
        for i in range(2):  # interleave steps and renders of both
            a.step(random_action(i, 4))
            b.step(random_action(i + 10, 4))
        again_a = a.reset(seed=0)[0]["corner_image"]
        again_b = b.reset(seed=0)[0]["corner_image"]
    finally:
        a.close()
        b.close()
    assert np.abs(first_a.astype(int) - first_b).mean() > 1  # different scenes
    np.testing.assert_array_equal(first_a, again_a)
    np.testing.assert_array_equal(first_b, again_b)


# -- rendering options ---------------------------------------------------------------------------
def test_shadows_and_multisampling_off_by_default(camera_env):
    env, _, _ = camera_env
    model, _ = sim(env)
    assert model.vis.quality.shadowsize == 0
    assert model.vis.quality.offsamples == 0


def test_render_options_switch_them_on():
    env = make_env(
        SUITE,
        IMAGE_TASK,
        cameras=("corner",),
        image_size=SIZE,
        render=RenderOptions(shadows=True, multisample=True),
    )
    plain = make_env(SUITE, IMAGE_TASK, cameras=("corner",), image_size=SIZE)
    try:
        assert sim(env)[0].vis.quality.shadowsize > 0
        assert sim(env)[0].vis.quality.offsamples > 0
        shaded = env.reset(seed=0)[0]["corner_image"]
        flat = plain.reset(seed=0)[0]["corner_image"]
    finally:
        env.close()
        plain.close()
    assert np.abs(shaded.astype(int) - flat).mean() > 0.5  # the options reach the pixels


# -- user errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("suite", list(SUITES))
def test_unknown_task_lists_tasks(suite):
    spec = load_suite(suite)
    with pytest.raises(UserError, match=f"unknown {suite} task") as err:
        make_env(suite, "no-such-task")
    assert all(task in str(err.value) for task in spec.tasks)
    assert all(name in str(err.value) for name in spec.task_sets)


@pytest.mark.parametrize("suite", list(SUITES))
def test_unknown_camera_lists_cameras(suite):
    spec = load_suite(suite)
    with pytest.raises(UserError, match=f"unknown {suite} camera") as err:
        make_env(suite, next(iter(spec.tasks)), cameras=("no-such-camera",))
    assert all(cam in str(err.value) for cam in spec.cameras)


def test_unknown_suite_lists_suites():
    with pytest.raises(UserError, match="unknown suite 'robosuit'; did you mean 'robosuite'") as err:
        make_env("robosuit", IMAGE_TASK)  # a typo: the suite it is close to
    with pytest.raises(UserError, match="unknown suite") as err:
        load_suite("no_such_suite")  # else every suite
    assert all(name in str(err.value) for name in known_suites())


# -- headless rendering by default ---------------------------------------------------------------
@pytest.mark.parametrize(("given", "expected"), [(None, "egl"), ("glfw", "glfw")])
def test_mujoco_gl_defaults_to_egl(given, expected):
    # A fresh shell: without MUJOCO_GL, and without the PYOPENGL_PLATFORM that importing mujoco
    # in this process has set.
    environ = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    if given is not None:
        environ["MUJOCO_GL"] = given  # a user's own choice is kept
    code = "import os, embodied.sim; print(os.environ['MUJOCO_GL'])"
    out = subprocess.run([sys.executable, "-c", code], env=environ, cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_rendering_other_cameras_leaves_the_observed_streams_alone():
    env = make_env("metaworld", "reach-v3", cameras=("corner",), image_size=32)
    obs, _ = env.reset(seed=0)
    extra = env.render_cameras(("topview",))
    assert set(extra) == {"topview"} and extra["topview"].shape == (32, 32, 3)
    obs2, *_ = env.step(np.zeros(4, dtype=np.float32))
    assert set(k for k in obs2 if k.endswith("_image")) == {"corner_image"}
    assert env.render().shape == (32, 32, 3)
    env.close()
