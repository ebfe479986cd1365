"""Headless camera rendering: one reused renderer per camera, images right side up.

On a CPU (Mesa through EGL) shadows and multisampling dominate the cost of a small frame, so
they are switched off before the renderer is created (``tools/bench_collect.py`` measures it).
What remains is mostly the mesh triangles in view: ``mesh_detail="low"`` draws large meshes
simplified and primitives coarser (:mod:`embodied.sim.meshes`; ``tools/bench_render.py``
measures the frame at both details; figures in docs/speed.md).
"""

from __future__ import annotations

import atexit
import os
import weakref
from dataclasses import dataclass

import mujoco  # MUJOCO_GL: egl unless the user chose, set by embodied's __init__, imported first
import numpy as np

from embodied.errors import UserError


@dataclass(frozen=True)
class RenderOptions:
    shadows: bool = False
    """Render shadows (slow on a CPU)."""
    multisample: bool = False
    """Multisample anti-aliasing (slow on a CPU)."""


def upright_cameras(model: mujoco.MjModel, data: mujoco.MjData) -> list[str]:
    """Roll every camera whose image would be upside down by 180 degrees about its optical axis.

    MuJoCo's camera frame has +y as the image's up direction. Several Meta-World cameras
    (``corner``..``corner4``) are defined with +y pointing down in the world, so their images
    come out upside down. Turning the camera itself (not flipping pixels) keeps the image a
    true, unmirrored projection and costs nothing per frame. Returns the cameras it turned.

    This is the one place where orientation is fixed; ``tests/test_sim.py`` checks every camera.
    """
    mujoco.mj_forward(model, data)
    turned = []
    half_turn = np.array([0.0, 0.0, 0.0, 1.0])  # quaternion (w, x, y, z): 180 degrees about camera z
    for cam in range(model.ncam):
        up_in_world = data.cam_xmat[cam].reshape(3, 3)[:, 1]  # camera +y in world coordinates
        if up_in_world[2] < 0.0:
            quat = np.empty(4)
            mujoco.mju_mulQuat(quat, model.cam_quat[cam], half_turn)
            model.cam_quat[cam] = quat
            turned.append(model.camera(cam).name)
    mujoco.mj_forward(model, data)
    return turned


class CameraRenderer:
    """Renders named cameras of one model at one size, reusing one renderer per camera."""

    def __init__(
        self,
        model: mujoco.MjModel,
        cameras: tuple[str, ...],
        height: int,
        width: int,
        options: RenderOptions = RenderOptions(),
        mesh_detail: str = "full",
    ) -> None:
        from embodied.sim.meshes import check_mesh_detail

        if not options.shadows:
            model.vis.quality.shadowsize = 0
        if not options.multisample:
            model.vis.quality.offsamples = 0
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
        model.vis.global_.offheight = max(model.vis.global_.offheight, height)
        self.cameras, self.height, self.width = cameras, height, width
        self._model = model
        self.mesh_detail = check_mesh_detail(mesh_detail)
        # Made at the first render, not here: an environment built in one process and used in a
        # forked child (gymnasium's AsyncVectorEnv builds one in the parent) must not carry a GL
        # context across the fork.
        self._renderers: dict[str, mujoco.Renderer] = {}

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """One (H, W, 3) uint8 image per camera, right side up."""
        if not self._renderers and self.cameras:
            from embodied.sim.meshes import make_renderer

            check_not_forked_after_rendering()
            _GL["made"] = True
            self._renderers = {
                cam: make_renderer(self._model, self.height, self.width, self.mesh_detail)
                for cam in self.cameras
            }
            _close_at_exit(self)
        frames = {}
        for cam, renderer in self._renderers.items():
            renderer.update_scene(data, camera=cam)
            frames[cam] = renderer.render()  # a fresh array each call
        return frames

    def set_mesh_detail(self, mesh_detail: str) -> None:
        """Draw at ``mesh_detail`` from now on, in the same renderers (the same GL contexts: what
        ``tools/bench_render.py`` compares)."""
        from embodied.sim.meshes import check_mesh_detail, redraw

        self.mesh_detail = check_mesh_detail(mesh_detail)
        for renderer in self._renderers.values():
            redraw(renderer, self._model, self.mesh_detail)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()


# A process forked from one that had made a GL context cannot make one: Mesa's EGL hangs for ever
# in mujoco.Renderer's constructor (the parent's EGL state is copied without the threads that hold
# its locks). gymnasium's AsyncVectorEnv forks by default on Linux (so does gymnasium.make_vec), so
# a script that rendered first and then vectorised would hang; the child says so instead.
_GL = {"made": False, "forked_after": False}
"""``made``: this process has made a renderer; ``forked_after``: it was forked from one that had."""


def _after_fork_in_child() -> None:
    _GL["forked_after"] = _GL["forked_after"] or _GL["made"]


os.register_at_fork(after_in_child=_after_fork_in_child)


def check_not_forked_after_rendering() -> None:
    """Refuse, in one line, to render in a process forked from one that had rendered (it would hang)."""
    if _GL["forked_after"]:
        raise UserError(
            "cannot render in a process forked from one that had rendered already (EGL does not survive "
            "fork; this would hang): start the worker processes with spawn or forkserver, e.g. "
            "gymnasium.vector.AsyncVectorEnv(fns, context='spawn') or "
            "gymnasium.make_vec(..., vector_kwargs={'context': 'spawn'})"
        )


# EGL contexts freed by the garbage collector during interpreter shutdown raise noisy errors
# from PyOpenGL once mujoco's own exit hook has terminated the display. Our hook is registered
# after the first renderer exists (so after mujoco's), and atexit runs hooks last-in first-out.
_LIVE: weakref.WeakSet[CameraRenderer] = weakref.WeakSet()


def _close_at_exit(renderer: CameraRenderer) -> None:
    if not _LIVE and not getattr(_close_at_exit, "registered", False):
        atexit.register(lambda: [r.close() for r in list(_LIVE)])
        _close_at_exit.registered = True
    _LIVE.add(renderer)
