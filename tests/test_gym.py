"""Every task is a gymnasium id after ``import embodied.sim``, and vector environments with cameras
run under every start method (the renderers are made in the process that renders)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest

import embodied.sim  # noqa: F401  (registers the ids)
from embodied.errors import UserError
from embodied.sim import SUITES, load_suite
from embodied.sim.base import check_render_mode
from embodied.sim.gym_ids import gym_id


def test_every_task_of_every_suite_has_an_id():
    for name, suite in SUITES.items():
        for task in load_suite(suite.spec).tasks:
            assert gym_id(name, task) in gym.registry


def test_make_by_id_renders_rgb_array_at_the_suites_rate():
    env = gym.make(
        gym_id("metaworld", "reach-v3"), cameras=("corner",), image_size=16, render_mode="rgb_array"
    )
    try:
        obs, _ = env.reset(seed=0)
        assert obs["corner_image"].shape == (16, 16, 3) and obs["corner_image"].dtype == np.uint8
        assert env.render().shape == (16, 16, 3)
        assert env.metadata["render_fps"] == 80 and env.unwrapped.render_mode == "rgb_array"
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert "success" in info and not (terminated or truncated)
    finally:
        env.close()
    with pytest.raises(UserError, match="render_mode 'depth_array'"):
        check_render_mode("depth_array")  # gymnasium itself wraps 'human' around rgb_array


# Each start method in a fresh interpreter: the test process itself has rendered already (the
# shared dataset), and a GL context inherited through fork is what hangs.
VECTOR = """
import sys
import gymnasium as gym
import numpy as np
# "module:id", gymnasium's convention: a spawned worker imports embodied.sim (which registers the ids)
fns = [lambda: gym.make("embodied.sim:embodied/metaworld-reach-v3", cameras=("corner",), image_size=16)] * 2
envs = gym.vector.AsyncVectorEnv(fns, context=sys.argv[1])
obs, _ = envs.reset(seed=[0, 1])
for _ in range(2):
    obs, *_ = envs.step(envs.action_space.sample())
envs.close()
images = obs["corner_image"]
assert images.shape == (2, 16, 16, 3) and images.std() > 0, images.shape
print("ok")
"""


@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_async_vector_env_with_cameras_under_each_start_method(context):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(VECTOR), context], capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


# The same after this process has rendered: a forked worker would hang in mujoco.Renderer's
# constructor (EGL does not survive fork), so it refuses in one line, which gymnasium raises here.
RENDERED_FIRST = """
import sys
import gymnasium as gym
from embodied.errors import UserError
from embodied.sim import make_env

make_env("metaworld", "reach-v3", cameras=("corner",), image_size=16, seed=0)  # renders here
kwargs = dict(cameras=("corner",), image_size=16)
if sys.argv[1] == "default":  # gymnasium.make_vec's default: AsyncVectorEnv, fork on Linux
    envs = gym.make_vec(
        "embodied.sim:embodied/metaworld-reach-v3", num_envs=2, vectorization_mode="async", **kwargs
    )
else:
    fns = [lambda: gym.make("embodied.sim:embodied/metaworld-reach-v3", **kwargs)] * 2
    envs = gym.vector.AsyncVectorEnv(fns, context=sys.argv[1])
try:
    obs, _ = envs.reset(seed=[0, 1])
    print("rendered", obs["corner_image"].std() > 0)
except UserError as err:
    print("refused:", err)
envs.close()
"""


# spawn starts clean whatever this process did: test_async_vector_env_with_cameras_under_each_start_method
@pytest.mark.parametrize("context", ["default", "fork"])
def test_vector_env_after_this_process_rendered(context):
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RENDERED_FIRST), context],
        capture_output=True,
        text=True,
        timeout=120,
    )
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert last.startswith("refused: cannot render in a process forked from one that had rendered"), (
        out.stderr[-2000:]
    )
    assert "context='spawn'" in last
