"""The worker processes of evaluation, each stepping a few environments (:class:`EnvPool`).

:class:`EnvPool` runs ``W`` worker processes (or none: everything in this process), each
holding ``k`` environments that it steps one after the other on every call, so a batched
policy call serves ``k`` environments (the policy in each worker) or ``W x k`` (the policy in
the main process, in lock-step), and its fixed cost (torch's per-module overhead, a couple of
hundred microseconds for a small MLP) and any pipe round trip are paid once per ``k``
environment steps of each worker, not once per step. Environment ``i`` lives in worker
``i % W`` (round robin): a partly filled wave still spreads over every worker.
Several environments rendering in one process keep their frames apart
(``tests/test_sim.py::test_two_envs_render_independently``).

Why not gymnasium's ``AsyncVectorEnv``: it runs one process per environment and steps every
environment on every call. On a machine with few cores, one process per environment means
either few environments (and a policy call for every few environment steps, whose fixed cost
then weighs on every step: docs/speed.md) or many more processes than cores; and
the lock-step waves of :mod:`embodied.eval.rollout` need to step only the environments whose
episode still runs. The pool keeps gymnasium's environment API (each :class:`~embodied.eval.envs.EvalEnv` is a
``gym.Env``) and its vector conventions (stacked observations, per-environment arrays).

A worker can be given more to do than step: ``EnvPool(..., extension=f)`` calls ``f(envs)``
in each worker once its environments are built, and the commands it returns run there (the
evaluation's policy workers, :mod:`embodied.eval.rollout`, run whole waves of episodes so).

No torch here: worker processes import this module and the suite, nothing else (an
extension imports what it needs).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing as mp
import os
import signal
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait as wait_any

import gymnasium as gym
import numpy as np

from embodied.errors import UserError
from embodied.lifetime import die_with

# --------------------------------------------------------------------------- the pool
StepResult = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, list[dict]]
"""(observations key -> (N, ...), rewards (N,), terminated (N,), truncated (N,), infos [N])."""


def _stack(observations: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """[N] dicts of arrays -> dict of (N, ...) arrays."""
    return {key: np.stack([o[key] for o in observations]) for key in observations[0]}


def _step_all(envs: Sequence[gym.Env], actions) -> StepResult:
    out = [env.step(a) for env, a in zip(envs, actions, strict=True)]
    obs, reward, terminated, truncated, info = zip(*out, strict=True)
    return (
        _stack(obs),
        np.asarray(reward, dtype=np.float64),
        np.asarray(terminated, dtype=bool),
        np.asarray(truncated, dtype=bool),
        list(info),
    )


def _reset_all(envs: Sequence[gym.Env], kwargs: Sequence[dict]) -> tuple[dict[str, np.ndarray], list[dict]]:
    obs, info = zip(*(env.reset(**kw) for env, kw in zip(envs, kwargs, strict=True)), strict=True)
    return _stack(obs), list(info)


Extension = Callable[[list[gym.Env]], dict[str, Callable[[object, Callable[[tuple], None]], object]]]
"""``f(envs) -> {command: handler(payload, send) -> result}``: commands a worker runs besides its
own, set up in the worker once its environments are built. A handler may ``send((status, data))``
messages of its own before its result is sent as ``("ok", result)``."""


def _pool_worker(
    conn, env_fns: list[Callable[[], gym.Env]], extension: Extension | None = None, owner: int = 0
) -> None:
    """One worker process: build its environments, then answer commands until ``close``.

    A command names the positions (in this worker's list) of the environments it is for;
    an extension's commands take their payload as it is.
    Ctrl-C is left to the main process (a terminal sends SIGINT to the whole process group),
    which closes the workers itself and keeps what finished.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if owner:  # end the moment the evaluation does, even by SIGKILL (a busy worker reads no pipe)
        die_with(owner)
    envs: list[gym.Env] = []
    try:
        envs = [fn() for fn in env_fns]
        extra = extension(envs) if extension is not None else {}
        conn.send(("ok", None))
        while True:
            command, data = conn.recv()
            if command == "close":
                break
            if command in extra:
                conn.send(("ok", extra[command](data, conn.send)))
                continue
            positions, payload = data
            chosen = [envs[p] for p in positions]
            if command == "step":
                result = _step_all(chosen, payload)
            elif command == "reset":
                result = _reset_all(chosen, payload)
            elif command == "call":
                result = [getattr(env, payload)() for env in chosen]
            else:
                raise ValueError(f"unknown command {command!r}")
            conn.send(("ok", result))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the main process went away or stopped us
    except BaseException as err:  # noqa: BLE001  (reported to the main process, which raises it)
        with contextlib.suppress(Exception):
            conn.send(("error", (traceback.format_exc(), _picklable(err))))
    finally:
        for env in envs:
            with contextlib.suppress(Exception):
                env.close()
        conn.close()


def _same(env: gym.Env) -> gym.Env:
    return env


def _picklable(err: BaseException) -> BaseException | None:
    """``err`` if it survives the pipe (the main process re-raises a user error as it is)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001
        return None
    return err


class EnvPool:
    """``N`` environments stepped by ``workers`` processes (0: all in this process).

    A small vector environment without autoreset. Every call takes ``envs``, the indices of the
    environments it is for (default: all, in order), and its per-environment arguments and
    results follow that order: ``reset(kwargs, envs)`` passes ``kwargs[j]`` to environment
    ``envs[j]``'s ``reset``; ``step(actions, envs)`` steps each of them once, each worker
    stepping its share one after the other; observations come back stacked, ``(len(envs), ...)``.
    ``step_async`` / ``step_wait`` split a step so the caller can work meanwhile (one step in
    flight at a time). Environments handle their own failures
    (:class:`~embodied.eval.envs.EvalEnv`); an exception escaping one is a bug and is raised
    here with the worker's traceback (a :class:`~embodied.errors.UserError` as it is).

    ``extension``: commands each worker runs besides its own (:data:`Extension`), sent to one
    worker with :meth:`send` and answered through :meth:`receive`; :meth:`share` says which
    environments a worker holds. ``context``: the multiprocessing start method; with
    ``forkserver``, ``preload`` names the modules its server imports once for every worker.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        workers: int,
        context: str | None = "spawn",
        extension: Extension | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        self.num_envs = len(env_fns)
        if self.num_envs < 1:
            raise ValueError("an EnvPool needs at least one environment")
        self.workers = min(max(workers, 0), self.num_envs)
        self._envs: list[gym.Env] = []
        self._conns: list = []
        self._procs: list = []
        self._pending = None  # (routes, count) of the step in flight, or (envs, actions) in process
        self.closed = False
        if self.workers == 0:
            self._envs = [fn() for fn in env_fns]
            if extension is not None:
                raise ValueError("an extension runs in worker processes: workers must be at least 1")
            return
        ctx = mp.get_context(context)
        if ctx.get_start_method() == "forkserver" and preload:
            # Imported once by the server that every later worker forks from (a server already
            # running keeps what it was started with).
            ctx.set_forkserver_preload(list(preload))
        try:
            for w in range(self.workers):
                # Environment i lives in worker i % W, at position i // W of that worker's list.
                fns = [env_fns[i] for i in range(w, self.num_envs, self.workers)]
                parent, child = ctx.Pipe()
                args = (child, fns, extension, os.getpid())
                proc = ctx.Process(target=_pool_worker, args=args, daemon=True)
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            for w in range(self.workers):  # every worker has built its environments
                self._receive(w)
        except BaseException:
            self.close(terminate=True)
            raise

    @classmethod
    def of(cls, envs: Sequence[gym.Env]) -> EnvPool:
        """An in-process pool of environments already built (a worker's own, for an extension)."""
        return cls([functools.partial(_same, env) for env in envs], 0)

    # ------------------------------------------------------------------ routing
    def _indices(self, envs: Sequence[int] | None) -> list[int]:
        return list(range(self.num_envs)) if envs is None else [int(i) for i in envs]

    def _send(self, command: str, envs: list[int], payload: Sequence) -> dict[int, list[int]]:
        """Send each worker its share; returns worker -> the positions in ``envs`` of that share."""
        routes: dict[int, list[int]] = {}
        for j, i in enumerate(envs):
            routes.setdefault(i % self.workers, []).append(j)
        for w, js in routes.items():
            positions = [envs[j] // self.workers for j in js]
            data = payload if isinstance(payload, str) else [payload[j] for j in js]
            self._conns[w].send((command, (positions, data)))
        return routes

    def share(self, w: int) -> range:
        """The environments worker ``w`` holds, in the order of its list."""
        return range(w, self.num_envs, self.workers)

    def send(self, w: int, command: str, payload=None) -> None:
        """Send worker ``w`` one of its extension's commands; its answer comes through :meth:`receive`."""
        self._conns[w].send((command, payload))

    def wait(self, workers: Sequence[int], timeout: float | None = None) -> list[int]:
        """Those of ``workers`` with a message waiting for :meth:`receive`."""
        conns = {self._conns[w]: w for w in workers}
        return [conns[c] for c in wait_any(list(conns), timeout)]

    def receive(self, w: int) -> tuple[str, object]:
        """Worker ``w``'s next message, (status, data): ``ok`` ends a command's answer; a worker's
        failure is raised here."""
        try:
            status, data = self._conns[w].recv()
        except EOFError:
            raise RuntimeError(f"evaluation worker {w} died (exit code {self._procs[w].exitcode})") from None
        if status == "error":
            text, err = data
            if isinstance(err, UserError):
                raise err
            raise RuntimeError(f"evaluation worker {w} failed:\n{text}")
        return status, data

    def _receive(self, w: int):
        return self.receive(w)[1]

    def _gather(self, routes: dict[int, list[int]], count: int) -> list:
        """Each worker's answer, the per-environment parts put back in the order of the request."""
        parts = {w: self._receive(w) for w in routes}
        return [(routes[w], part) for w, part in parts.items()], count

    @staticmethod
    def _merge_obs(pieces: list[tuple[list[int], dict]], count: int) -> dict[str, np.ndarray]:
        out = {}
        for key, first in pieces[0][1].items():
            merged = np.empty((count, *first.shape[1:]), dtype=first.dtype)
            for js, part in pieces:
                merged[js] = part[key]
            out[key] = merged
        return out

    @staticmethod
    def _merge_list(pieces: list[tuple[list[int], list]], count: int) -> list:
        out: list = [None] * count
        for js, part in pieces:
            for j, item in zip(js, part, strict=True):
                out[j] = item
        return out

    # ------------------------------------------------------------------ commands
    def reset(
        self, kwargs: Sequence[dict], envs: Sequence[int] | None = None
    ) -> tuple[dict[str, np.ndarray], list[dict]]:
        """Reset environment ``envs[j]`` with ``reset(**kwargs[j])``; (stacked observations, infos)."""
        envs = self._indices(envs)
        if self.workers == 0:
            return _reset_all([self._envs[i] for i in envs], kwargs)
        pieces, count = self._gather(self._send("reset", envs, kwargs), len(envs))
        obs = self._merge_obs([(js, p[0]) for js, p in pieces], count)
        return obs, self._merge_list([(js, p[1]) for js, p in pieces], count)

    def step_async(self, actions: np.ndarray, envs: Sequence[int] | None = None) -> None:
        """Send ``actions`` (len(envs), A); the workers step while this process goes on."""
        if self._pending is not None:
            raise RuntimeError("a step is already in flight: step_wait first")
        envs = self._indices(envs)
        if self.workers == 0:
            self._pending = (envs, actions)
        else:
            self._pending = (self._send("step", envs, actions), len(envs))

    def step_wait(self) -> StepResult:
        """The result of the step sent by :meth:`step_async`, in the order of its ``envs``."""
        pending, self._pending = self._pending, None
        if pending is None:
            raise RuntimeError("no step in flight")
        if self.workers == 0:
            envs, actions = pending
            return _step_all([self._envs[i] for i in envs], actions)
        pieces, count = self._gather(*pending)
        scalars = []
        for k in (1, 2, 3):  # rewards, terminated, truncated
            merged = np.empty(count, dtype=pieces[0][1][k].dtype)
            for js, p in pieces:
                merged[js] = p[k]
            scalars.append(merged)
        obs = self._merge_obs([(js, p[0]) for js, p in pieces], count)
        return (obs, *scalars, self._merge_list([(js, p[4]) for js, p in pieces], count))

    def step(self, actions: np.ndarray, envs: Sequence[int] | None = None) -> StepResult:
        self.step_async(actions, envs)
        return self.step_wait()

    def call(self, name: str, envs: Sequence[int] | None = None) -> list:
        """``getattr(env, name)()`` of environments ``envs``, in that order."""
        envs = self._indices(envs)
        if self.workers == 0:
            return [getattr(self._envs[i], name)() for i in envs]
        return self._merge_list(*self._gather(self._send("call", envs, name), len(envs)))

    def close(self, terminate: bool = False) -> None:
        """Close every environment; ``terminate`` kills the workers instead of asking them
        (after Ctrl-C a worker may be mid-step)."""
        if self.closed:
            return
        self.closed = True
        for env in self._envs:
            with contextlib.suppress(Exception):
                env.close()
        busy = self._pending is not None
        if not terminate and not busy:
            for conn in self._conns:
                with contextlib.suppress(Exception):
                    conn.send(("close", None))
        for proc in self._procs:
            if terminate or busy:
                proc.terminate()
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()

    def __del__(self) -> None:
        if not getattr(self, "closed", True):
            self.close(terminate=True)
