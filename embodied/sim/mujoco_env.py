"""What the MuJoCo-based adapters (Meta-World's, robosuite's) share: their cameras rendered by
embodied's own renderer, and MuJoCo's whole integration state as their state."""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np

from embodied.errors import UserError
from embodied.sim.base import SuiteEnv
from embodied.sim.meshes import simplified_meshes
from embodied.sim.render import CameraRenderer, RenderOptions
from embodied.sim.spec import load_suite

STATE_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION
"""Everything needed to step on identically: time, qpos, qvel, act, the solver's warm start,
controls, applied forces, mocap poses."""


class MujocoSuiteEnv(SuiteEnv):
    """A :class:`SuiteEnv` over one MuJoCo model and its data; the adapter calls
    :meth:`_init_rendering` once its model is final (cameras turned upright)."""

    _model: mujoco.MjModel
    _data: mujoco.MjData

    def _init_rendering(self, model: mujoco.MjModel, data: mujoco.MjData, render: RenderOptions) -> None:
        self._model, self._data, self._render_options = model, data, render
        # A mesh the shipped table lacks is refused now, not at the first frame (in a worker).
        simplified_meshes(model, self.mesh_detail)
        self._renderer = (
            CameraRenderer(model, self.cameras, self.image_size, self.image_size, render, self.mesh_detail)
            if self.cameras
            else None
        )
        self._extra_renderer: CameraRenderer | None = None  # for other cameras or sizes

    def _camera_images(self) -> dict[str, np.ndarray]:
        """The observed cameras' images in the current state (none without cameras)."""
        return self._renderer.render(self._data) if self._renderer is not None else {}

    def render(self):
        cams = self.cameras or (load_suite(self.suite).observer_camera,)
        return self.render_cameras(cams)[cams[0]]

    def render_cameras(
        self, cameras: tuple[str, ...] | None = None, size: int | None = None
    ) -> dict[str, np.ndarray]:
        cameras = tuple(self.cameras if cameras is None else cameras)
        size = int(size or self.image_size)
        if cameras and cameras == self.cameras and size == self.image_size:
            return self._renderer.render(self._data)
        # Other cameras or sizes get a renderer of their own: the observation renderer stays as it is.
        extra = self._extra_renderer
        if extra is None or (extra.cameras, extra.height) != (cameras, size):
            if extra is not None:
                extra.close()
            load_suite(self.suite).check_cameras(cameras)
            self._extra_renderer = CameraRenderer(
                self._model, cameras, size, size, self._render_options, self.mesh_detail
            )
        return self._extra_renderer.render(self._data)

    def _close_renderers(self) -> None:
        for renderer in (self._renderer, self._extra_renderer):
            if renderer is not None:
                renderer.close()
        self._renderer = self._extra_renderer = None

    def env_kwargs(self) -> dict:
        return {
            "task": self.task.name,
            "cameras": list(self.cameras),
            "image_size": self.image_size,
            "horizon": self.horizon,
            "mesh_detail": self.mesh_detail,
        }

    def __reduce__(self):
        # The simulators' own pickling rebuilds the model from its XML: the copy would silently
        # lose what the adapter did to it (cameras turned upright, Meta-World's task variant in
        # model.body_pos) and the state. Refuse.
        raise TypeError(
            f"{type(self).__name__} cannot be pickled; rebuild it with "
            f"make_env({self.suite!r}, **env.env_kwargs()) and restore env.get_state()"
        )

    def get_state(self) -> np.ndarray:
        state = np.empty(mujoco.mj_stateSize(self._model, STATE_SPEC))
        mujoco.mj_getState(self._model, self._data, state, STATE_SPEC)
        return state

    def _restore_state(
        self,
        state: np.ndarray,
        after_forward: Callable[[], None] | None = None,
        spec: int = STATE_SPEC,
    ) -> None:
        """Set ``state`` (laid out as ``spec`` says), bring the positions up to date (then
        ``after_forward``: what the adapter derives from them), and set it again: mj_forward also
        rewrote the solver's warm start, which the next step starts from, and replays drift from
        that."""
        state = np.asarray(state, dtype=np.float64)
        size = mujoco.mj_stateSize(self._model, spec)
        if state.shape != (size,):
            raise UserError(f"a {self.task.name} state has {size} numbers, not {state.shape}")
        mujoco.mj_setState(self._model, self._data, state, spec)
        mujoco.mj_forward(self._model, self._data)
        if after_forward is not None:
            after_forward()
        mujoco.mj_setState(self._model, self._data, state, spec)
