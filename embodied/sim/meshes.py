"""Cheaper frames for small cameras: the ``mesh_detail`` setting (``full`` or ``low``).

Rendering dominates a pixel policy's rollouts and the collection of image datasets: in Mesa's
llvmpipe (EGL on a CPU) a 64 px frame of a Meta-World scene costs about 0.15 us per mesh
triangle in view, and the Sawyer arm's CAD meshes alone hold 66k triangles, most of them smaller
than a pixel at 64 px. With ``mesh_detail="low"`` every large mesh (``min_faces`` and more, no
texture coordinates) is drawn simplified to about a twentieth of its triangles, and MuJoCo's
built-in spheres, capsules and cylinders and its planes' grids are drawn coarser
(:data:`PRIMITIVES`): the 64 px frame is 3-5x cheaper (``tools/bench_render.py``) and differs by
about 1.2 of 255 per pixel on average. ``full`` (the default) draws the scene as the suite made
it: bit for bit the images of a plain ``mujoco.Renderer``.

Only the picture changes: the physics, the collisions and the states use the original model.
The renderer builds its display lists from the model when its context is made: the built-in
shapes and the planes from ``vis.quality`` and the planes' grid spacing (``geom_size[2]``, which
the physics does not read), set to the level's values for that moment only; then each
simplified mesh replaces its original's list (``mjr_uploadMesh``) from a throw-away copy of the
model whose mesh arrays hold the simplified mesh inside the original's ranges: its vertices go to
slots that the mesh's convex hull does not use, so that the hull's own display list stays right.

The simplified meshes are shipped, not made at run time (the same on every machine, nothing
to install): ``envs/meshes/<detail>.npz`` holds each one under a hash of the compiled mesh it
replaces (:func:`mesh_key`), with the parameters it was made with. They are made once with
MeshLab's quadric edge collapse (``pip install pymeshlab``), vertices first welded within
``weld`` metres::

    python -m embodied.sim.meshes --suite metaworld     # rewrites envs/meshes/low.npz

A large mesh that the table lacks (another simulator version compiled it differently, another
suite) is refused with that command in the message, never drawn at full detail silently.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from embodied.errors import UserError

MESH_DETAILS = ("full", "low")
"""``full``: the suite's meshes as they are; ``low``: large meshes simplified (module doc)."""

LEVELS = {
    "low": {"fraction": 0.05, "floor": 200, "weld": 0.01, "min_faces": 500},
}
"""How each simplified level is made: a mesh of F >= ``min_faces`` faces (and no texture
coordinates) is simplified to max(ceil(fraction x F), floor) faces after welding its vertices
within ``weld`` metres. The shipped table records the parameters it was made with."""


PRIMITIVES = {
    "low": {"numslices": 12, "numstacks": 6, "plane_grid": 0.5},
}
"""How each level draws MuJoCo's built-in shapes (``vis.quality.numslices``/``numstacks``, 28
and 16 by default) and the grid of its planes (``geom_size[2]``, at least ``plane_grid``
metres; Meta-World's floor is 0.1: 1764 quads)."""


def check_mesh_detail(value) -> str:
    """``value`` if it names a mesh detail, else one line naming those there are."""
    if value not in MESH_DETAILS:
        raise UserError(f"mesh_detail {value!r}: must be one of {', '.join(MESH_DETAILS)}")
    return value


def table_path(detail: str) -> Path:
    from embodied.paths import resource_dir

    return resource_dir("envs") / "meshes" / f"{detail}.npz"


def mesh_arrays(model: mujoco.MjModel, mesh: int) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (V, 3) float32, faces (F, 3) int32) of a compiled mesh, in its geom's frame."""
    va, vn = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
    fa, fn = model.mesh_faceadr[mesh], model.mesh_facenum[mesh]
    return model.mesh_vert[va : va + vn], model.mesh_face[fa : fa + fn]


def mesh_key(model: mujoco.MjModel, mesh: int) -> str:
    """A hash of a compiled mesh: its faces and its vertices rounded to 10 um (so that the last
    bits of the compiler's arithmetic do not matter)."""
    vert, face = mesh_arrays(model, mesh)
    grid = np.round(vert.astype(np.float64) * 1e5).astype(np.int64)
    digest = hashlib.sha256(grid.tobytes() + face.astype(np.int32).tobytes())
    return digest.hexdigest()[:20]


def simplifiable(model: mujoco.MjModel, mesh: int, min_faces: int) -> bool:
    """Whether the level simplifies this mesh: large enough and without texture coordinates."""
    return bool(model.mesh_facenum[mesh] >= min_faces and model.mesh_texcoordadr[mesh] < 0)


@dataclass(frozen=True)
class MeshTable:
    detail: str
    params: dict
    """The level's parameters as the table was made (:data:`LEVELS`), plus the tool versions."""
    meshes: dict[str, tuple[np.ndarray, np.ndarray]]
    """mesh key -> (vertices float32 (V, 3), faces int32 (F, 3))."""
    names: dict[str, str]
    """mesh key -> the mesh's name, for messages."""


@functools.cache
def load_table(detail: str) -> MeshTable:
    path = table_path(detail)
    if not path.is_file():
        raise UserError(f"mesh_detail {detail!r}: {path} is missing; make it with {_REMAKE}")
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        meshes = {
            k: (z[f"{k}.vert"].astype(np.float32), z[f"{k}.face"].astype(np.int32)) for k in meta["names"]
        }
    return MeshTable(detail, meta["params"], meshes, meta["names"])


_REMAKE = "'python -m embodied.sim.meshes' (needs pymeshlab)"


def simplified_meshes(model: mujoco.MjModel, detail: str) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """mesh id -> its simplified (vertices, faces) at ``detail`` (none for ``full``); a large
    mesh the shipped table lacks is a :class:`UserError`."""
    if check_mesh_detail(detail) == "full":
        return {}
    table = load_table(detail)
    found, missing = {}, []
    for mesh in range(model.nmesh):
        if not simplifiable(model, mesh, table.params["min_faces"]):
            continue
        key = mesh_key(model, mesh)
        if key in table.meshes:
            found[mesh] = table.meshes[key]
        else:
            missing.append(model.mesh(mesh).name or str(mesh))
    if missing:
        raise UserError(
            f"mesh_detail {detail!r}: no simplified mesh for {', '.join(missing)} in "
            f"{table_path(detail)} (made for mujoco {table.params.get('mujoco')}; this is "
            f"{mujoco.__version__}); make them with {_REMAKE}, or use mesh_detail 'full'"
        )
    return found


def vertex_normals(vert: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Unit vertex normals as MuJoCo's compiler makes them for a mesh without normals
    (``mjCMesh::MakeNormal``): face normals summed with area weights, less the faces at more
    than ~37 degrees from the sum, which the renderer then draws flat."""
    v = vert.astype(np.float64)
    area_normal = np.cross(v[face[:, 1]] - v[face[:, 0]], v[face[:, 2]] - v[face[:, 0]])
    total = np.zeros_like(v)
    for k in range(3):
        np.add.at(total, face[:, k], area_normal)
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-30)  # noqa: E731
    face_unit, vert_unit = unit(area_normal), unit(total)
    for k in range(3):
        far = np.einsum("ij,ij->i", face_unit, vert_unit[face[:, k]]) < 0.8
        np.add.at(total, face[far, k], -area_normal[far])
    return unit(total).astype(np.float32)


def render_model(model: mujoco.MjModel, meshes: dict[int, tuple[np.ndarray, np.ndarray]]) -> mujoco.MjModel:
    """A copy of ``model`` whose mesh arrays draw ``meshes`` instead (for ``mjr_uploadMesh``
    only: its vertex counts no longer describe its arrays)."""
    out = copy.deepcopy(model)
    for mesh, (vert, face) in meshes.items():
        va, vn = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
        fa, na = model.mesh_faceadr[mesh], model.mesh_normaladr[mesh]
        in_hull = np.zeros(vn, bool)
        graph = model.mesh_graphadr[mesh]
        if graph >= 0:  # [numvert, numface, vert ids, edges, faces]: the hull's faces index the mesh
            nv, nf = model.mesh_graph[graph], model.mesh_graph[graph + 1]
            in_hull[model.mesh_graph[graph + 2 + 3 * nv + 3 * nf : graph + 2 + 3 * nv + 6 * nf]] = True
        slots = np.flatnonzero(~in_hull)[: len(vert)]
        fits = len(slots) == len(vert) and model.mesh_normalnum[mesh] >= len(vert)
        if not fits or len(face) > model.mesh_facenum[mesh]:
            raise UserError(f"the simplified mesh {model.mesh(mesh).name} does not fit its original's arrays")
        out.mesh_vert[va + slots] = vert
        out.mesh_face[fa : fa + len(face)] = slots[face]
        out.mesh_normal[na : na + len(vert)] = vertex_normals(vert, face)
        out.mesh_facenormal[fa : fa + len(face)] = face
        out.mesh_facenum[mesh] = len(face)
    return out


@contextlib.contextmanager
def drawn_as(model: mujoco.MjModel, detail: str):
    """Within it, ``model`` has the primitives' drawing settings of ``detail`` (the values a GL
    context is made from); the model's own values are back afterwards."""
    level = PRIMITIVES.get(check_mesh_detail(detail))
    if level is None:
        yield model
        return
    quality = model.vis.quality
    saved = quality.numslices, quality.numstacks, model.geom_size.copy()
    planes = model.geom_type == mujoco.mjtGeom.mjGEOM_PLANE
    try:
        quality.numslices, quality.numstacks = level["numslices"], level["numstacks"]
        model.geom_size[planes, 2] = np.maximum(model.geom_size[planes, 2], level["plane_grid"])
        yield model
    finally:
        quality.numslices, quality.numstacks = saved[0], saved[1]
        model.geom_size[:] = saved[2]


def make_renderer(model: mujoco.MjModel, height: int, width: int, detail: str) -> mujoco.Renderer:
    """A ``mujoco.Renderer`` of ``model`` that draws at ``detail``."""
    meshes = simplified_meshes(model, detail)
    with drawn_as(model, detail):
        renderer = mujoco.Renderer(model, height, width)
    upload([renderer], model, meshes)
    return renderer


def redraw(renderer: mujoco.Renderer, model: mujoco.MjModel, detail: str) -> None:
    """Make ``renderer`` draw at ``detail`` from now on, in its own GL context: a new MuJoCo
    context (display lists, textures) made as :func:`make_renderer` makes it."""
    meshes = simplified_meshes(model, detail)
    if renderer._gl_context is not None:  # mujoco.Renderer keeps its contexts private
        renderer._gl_context.make_current()
    with drawn_as(model, detail):
        context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150.value)
    mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, context)
    context.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR  # as mujoco.Renderer sets it
    old, renderer._mjr_context = renderer._mjr_context, context
    old.free()
    upload([renderer], model, meshes)


def upload(renderers, model: mujoco.MjModel, meshes: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    """Replace the display lists of ``meshes`` (mesh id -> simplified vertices and faces) in each
    ``mujoco.Renderer`` made from ``model``."""
    if not meshes:
        return
    drawn = render_model(model, meshes)
    for renderer in renderers:
        if renderer._gl_context is not None:
            renderer._gl_context.make_current()
        for mesh in meshes:
            mujoco.mjr_uploadMesh(drawn, renderer._mjr_context, mesh)


# -- making the table (once, by a maintainer) ------------------------------------------------
def simplify(vert: np.ndarray, face: np.ndarray, target: int, weld: float) -> tuple[np.ndarray, np.ndarray]:
    """MeshLab's quadric edge collapse to ``target`` faces, vertices first welded within ``weld``;
    unreferenced vertices dropped."""
    import pymeshlab

    ms = pymeshlab.MeshSet()
    ms.add_mesh(pymeshlab.Mesh(vertex_matrix=vert.astype(np.float64), face_matrix=face.astype(np.int32)))
    ms.meshing_merge_close_vertices(threshold=pymeshlab.PureValue(weld))
    ms.meshing_decimation_quadric_edge_collapse(
        targetfacenum=int(target),
        qualitythr=0.3,
        preserveboundary=False,
        preservenormal=True,
        preservetopology=False,
        optimalplacement=True,
        planarquadric=False,
        autoclean=True,
    )
    out = ms.current_mesh()
    v, f = out.vertex_matrix(), out.face_matrix()
    used, f = np.unique(f, return_inverse=True)
    return v[used].astype(np.float32), f.reshape(-1, 3).astype(np.int32)


def build_table(suite: str, detail: str, path: Path) -> dict:
    """Simplify every large mesh of every task of ``suite`` (merged into the table at ``path``,
    which keeps the meshes of other suites) and write it; a summary."""
    from importlib.metadata import version

    from embodied.fileio import replace_atomically
    from embodied.sim import load_suite, make_env

    params = {**LEVELS[detail], "mujoco": mujoco.__version__, "pymeshlab": version("pymeshlab")}
    meshes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names: dict[str, str] = {}
    if path.is_file():
        old = load_table.__wrapped__(detail) if path == table_path(detail) else None
        if old is not None and {k: v for k, v in old.params.items() if k in LEVELS[detail]} == LEVELS[detail]:
            meshes, names = dict(old.meshes), dict(old.names)
    for task in load_suite(suite).tasks:
        env = make_env(suite, task)
        model = env._model
        for mesh in range(model.nmesh):
            if not simplifiable(model, mesh, params["min_faces"]):
                continue
            key = mesh_key(model, mesh)
            if key in meshes:
                continue
            vert, face = mesh_arrays(model, mesh)
            target = max(math.ceil(params["fraction"] * len(face)), params["floor"])
            meshes[key] = simplify(vert, face, target, params["weld"])
            names[key] = model.mesh(mesh).name
            render_model(model, {mesh: meshes[key]})  # it fits its original's arrays
        env.close()

    def write(tmp: Path) -> None:
        arrays = {"meta": np.array(json.dumps({"params": params, "names": names}, sort_keys=True))}
        for key, (vert, face) in sorted(meshes.items()):
            arrays[f"{key}.vert"] = vert
            arrays[f"{key}.face"] = face.astype(np.uint16 if face.max() < 2**16 else np.int32)
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    replace_atomically(path, write)
    load_table.cache_clear()
    return {"meshes": len(meshes), "faces": int(sum(len(f) for _, f in meshes.values())), "path": str(path)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="make the shipped simplified meshes (module doc)")
    parser.add_argument("--suite", default="metaworld")
    parser.add_argument("--detail", default="low", choices=sorted(LEVELS))
    parser.add_argument("--out", default="", help="default: envs/meshes/<detail>.npz")
    args = parser.parse_args(argv)
    print(build_table(args.suite, args.detail, Path(args.out) if args.out else table_path(args.detail)))


if __name__ == "__main__":
    main()
