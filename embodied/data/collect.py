"""Scripted-expert collection into robomimic-format HDF5, one file per task, in parallel.

Each task is one job: its expert runs episode after episode, seeds ``seed, seed+1, ...``,
until ``episodes`` successful demonstrations are kept (or the attempt budget runs out).
Seeds at and above :data:`EVAL_SEED_START` are reserved for evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import os
import queue as queue_mod
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing.managers import SyncManager
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from embodied.data.recipe import CollectConfig
from embodied.data.schema import FORMAT_VERSION, format_version
from embodied.errors import UserError
from embodied.fileio import NO_ROOM
from embodied.lifetime import die_with
from embodied.sim import get_suite, image_key, load_suite, make_env


def with_suite_defaults(cfg: CollectConfig) -> CollectConfig:
    """``cfg`` with the defaults that depend on its suite filled in (the observer camera,
    ``datasets/<suite>``), as they are stored and compared."""
    cameras = list(cfg.cameras) or [load_suite(cfg.suite).observer_camera]
    return dataclasses.replace(cfg, cameras=cameras, out=cfg.out or f"datasets/{cfg.suite}")


def task_args(cfg: CollectConfig, task: str) -> dict:
    """Everything that determines one task's file; stored in it, compared on rerun."""
    args = dataclasses.asdict(cfg)
    for key in ("tasks", "out", "workers"):
        args.pop(key)
    args["task"] = task
    return args


def collect_episode(env, expert, seed: int, noise: float, cameras: tuple[str, ...], next_obs: bool = False):
    """Run the expert for one episode; returns the arrays, the streams (with ``next_obs``, the
    streams of the observations after each step too, under ``next/<key>``) and success."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    streams: dict[str, list[np.ndarray]] = {k: [] for k in obs}
    actions, rewards, states = [], [], []
    success = False
    while True:
        states.append(env.get_state())
        for key, value in obs.items():
            streams[key].append(value)
        action = expert(obs)
        if noise > 0:
            action = np.clip(action + rng.normal(0.0, noise, action.shape), -1.0, 1.0).astype(np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        success = success or info["success"]
        if terminated or truncated:
            break
    n = len(actions)
    dones = np.zeros(n, dtype=np.int64)
    dones[-1] = int(success)
    arrays = {
        "actions": np.stack(actions).astype(np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "dones": dones,
        "states": np.stack(states),
    }
    stacked = {k: np.stack(v) for k, v in streams.items()}
    if next_obs:  # (T, ...): step t's next observation is step t + 1's, the last one the final
        stacked.update({f"next/{k}": np.concatenate([v[1:], obs[k][None]]) for k, v in stacked.items()})
    return arrays, stacked, success


def collect_task(cfg: CollectConfig, task: str, path: Path, progress=None) -> dict:
    """Collect one task's file at ``path`` (atomically). Returns a summary."""
    from embodied.data.schema import DemoFileWriter, task_attrs

    cfg = with_suite_defaults(cfg)
    spec = load_suite(cfg.suite).task(task)
    env = make_env(
        cfg.suite,
        task,
        cameras=cfg.cameras,
        image_size=cfg.image_size,
        horizon=cfg.horizon or None,
        mesh_detail=cfg.mesh_detail,
    )
    expert = env.expert()
    env_args = env.env_args()
    kept = attempts = successes = 0
    extra = {"collect_args": json.dumps(task_args(cfg, task), sort_keys=True)}
    with contextlib.closing(env), DemoFileWriter(path, env_args, cfg.suite, extra) as writer:
        while kept < cfg.episodes and attempts < cfg.episodes * cfg.max_attempts:
            seed = cfg.seed + attempts
            attempts += 1
            arrays, streams, success = collect_episode(
                env, expert, seed, cfg.action_noise, env.cameras, next_obs=cfg.next_obs
            )
            successes += success
            if not (success or cfg.keep_failures):
                continue
            attrs = {**task_attrs(spec), "seed": seed, "success": int(success), **env.demo_attrs()}
            writer.add_demo(arrays, streams, attrs)
            kept += 1
            if progress is not None:
                progress.put(1)
        if kept == 0:
            raise UserError(f"{task}: the expert succeeded in none of {attempts} episodes; nothing written")
        writer.finish(cfg.valid_fraction, split_seed=cfg.seed)
    return {
        "task": task,
        "path": str(path),
        "demos": kept,
        "attempts": attempts,
        "expert_success": successes / attempts,
    }


def file_is_complete(path: Path, args: dict) -> bool:
    """True if ``path`` is a finished file made with the same arguments (so a rerun skips it)."""
    try:
        with h5py.File(path, "r") as f:
            stored = json.loads(f["data"].attrs["collect_args"])
    except (OSError, KeyError, ValueError):
        return False
    if not isinstance(stored, dict):
        return False
    # A setting added since the file was made takes its default there (next_obs: not stored).
    for f in dataclasses.fields(CollectConfig):
        if f.name in args and f.name not in stored and f.default is not dataclasses.MISSING:
            stored[f.name] = f.default
    return stored == json.loads(json.dumps(args, sort_keys=True))


def _worker(cfg_dict: dict, task: str, path: str, progress) -> dict:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and cleans up
    return collect_task(CollectConfig(**cfg_dict), task, Path(path), progress)


def collect(cfg: CollectConfig, overwrite: bool = False) -> list[dict]:
    """Collect every task of ``cfg`` into ``cfg.out``; files already complete are skipped."""
    suite = load_suite(cfg.suite)
    if not get_suite(cfg.suite).has_expert:
        raise UserError(f"suite {cfg.suite} has no scripted expert to collect demonstrations with")
    cfg = with_suite_defaults(cfg)
    tasks = suite.resolve_tasks(cfg.tasks)
    suite.check_cameras(cfg.cameras)
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise UserError(f"output folder {out} is not writable ({err.strerror})") from None

    todo, summaries = [], []
    for task in tasks:
        path = out / f"{task}.hdf5"
        if path.exists() and not overwrite:
            if file_is_complete(path, task_args(cfg, task)):
                with h5py.File(path, "r") as f:
                    version = format_version(f) or 1
                if version < FORMAT_VERSION:
                    raise UserError(
                        f"{path} is format_version {version}, without the class hierarchy; "
                        f"run 'embodied-data upgrade {path}' (or pass --overwrite to collect it again)"
                    )
                summaries.append({"task": task, "path": str(path), "skipped": True})
                continue
            raise UserError(
                f"{path} exists but was made with other settings (or is damaged); "
                "pass --overwrite to replace it"
            )
        todo.append((task, path))
    if not todo:
        return summaries

    total = cfg.episodes * len(todo)
    bar = tqdm(total=total, unit="demo", desc=f"collect {len(todo)} task(s)", dynamic_ncols=True)
    ctx = mp.get_context("spawn")  # a fresh process per worker: EGL contexts do not survive fork
    manager = SyncManager(ctx=ctx)
    manager.start(die_with, (os.getpid(),))  # no process outlives a killed collect
    with manager:
        progress = manager.Queue()
        pool = ProcessPoolExecutor(
            max_workers=min(cfg.workers, len(todo)),
            mp_context=ctx,
            initializer=die_with,
            initargs=(os.getpid(),),
        )
        futures = {pool.submit(_worker, dataclasses.asdict(cfg), t, str(p), progress): t for t, p in todo}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                _drain(progress, bar)
                for fut in done:
                    summaries.append(fut.result())
            _drain(progress, bar)
        except BaseException as err:
            for fut in futures:
                fut.cancel()
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            for _, path in todo:  # a killed worker cannot clean up its own partial file
                part = path.with_name(path.name + ".part")
                if part.exists():
                    os.unlink(part)
            if isinstance(err, (OSError, RuntimeError)) and (
                getattr(err, "errno", None) in NO_ROOM or "No space left" in str(err)
            ):
                # h5py does not always give the errno of a failed write, only its text
                kept = [s["path"] for s in summaries if not s.get("skipped")]
                raise UserError(
                    f"{out}: cannot write ({getattr(err, 'strerror', None) or 'No space left on device'}); "
                    f"{len(kept)} finished file(s) kept, no partial file left: a rerun skips them"
                ) from None
            raise
        finally:
            bar.close()
        pool.shutdown()
    return summaries


def _drain(q, bar) -> None:
    while True:
        try:
            bar.update(q.get_nowait())
        except queue_mod.Empty:
            return


__all__ = ["CollectConfig", "collect", "collect_episode", "collect_task", "image_key"]
