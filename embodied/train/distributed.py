"""Processes and devices: one process per device under ``torchrun``, or one process alone.

``torchrun --nproc_per_node=N -m embodied.cli.train ...`` sets WORLD_SIZE, RANK and LOCAL_RANK;
with WORLD_SIZE > 1 the process group is started (NCCL on GPUs, gloo on CPUs). Rank 0 alone
writes files and logs.

Under SLURM, ``srun embodied-train ...`` in a job of several tasks (one per GPU, as torchrun
would start them; tools/slurm_train.sbatch) is the same: :func:`launch` reads SLURM's variables
when torchrun's are not set (torchrun's win when both are): the rank is SLURM_PROCID, the world
size SLURM_STEP_NUM_TASKS (the tasks of this srun: the batch script itself has SLURM_NTASKS and
SLURM_PROCID=0 too, but no step, and a plain ``embodied-train`` there is one process), the local
rank SLURM_LOCALID; the rendezvous is the first host of the step's nodes (``scontrol show
hostnames $SLURM_STEP_NODELIST``) at port 10000 + job id % 20000 (below Linux's ephemeral
ports), unless MASTER_ADDR / MASTER_PORT are set. :func:`start` exports them as torchrun's.

Faults under torchrun: a process that fails alone while the others wait in a collective would
leave them waiting (gloo's timeout is 30 minutes) or dying with the broken connection's
traceback. So what one process may fail in alone (rank 0's writes, checks) runs inside
:meth:`Processes.together`, after which the processes agree whether all got through: a
failure on one becomes a stop on all, reported once. What every process meets alike before
the process group exists (a bad config value) runs inside :func:`same_everywhere`: rank 0
reports it. Stopping processes exit 2 (130 after Ctrl-C) and only one of them says why.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from embodied.errors import Stopped, UserError


@dataclass(frozen=True)
class Launch:
    """How this process was started: its rank among ``world_size`` and on its node, and by whom."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    by: str = "alone"  # "torchrun" or "slurm"


def launch() -> Launch:
    """torchrun's variables when set, else those of a SLURM step of several tasks (srun), else one
    process alone."""
    env = os.environ
    if "WORLD_SIZE" in env:
        return Launch(
            int(env["WORLD_SIZE"]), int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), "torchrun"
        )
    if int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1 and "SLURM_PROCID" in env:
        tasks, rank = int(env["SLURM_STEP_NUM_TASKS"]), int(env["SLURM_PROCID"])
        return Launch(tasks, rank, int(env.get("SLURM_LOCALID", "0")), "slurm")
    return Launch()


def slurm_rendezvous() -> tuple[str, int]:
    """(MASTER_ADDR, MASTER_PORT) of this SLURM step: the first host of its nodes, a port from the
    job id; MASTER_ADDR and MASTER_PORT when set."""
    env = os.environ
    port = int(env.get("MASTER_PORT") or 10000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
    if env.get("MASTER_ADDR"):
        return env["MASTER_ADDR"], port
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST")
    if not nodes:
        raise UserError("srun started several tasks but SLURM_STEP_NODELIST is not set: set MASTER_ADDR")
    try:
        command = ["scontrol", "show", "hostnames", nodes]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as err:
        raise UserError(f"scontrol show hostnames {nodes} failed ({err}): set MASTER_ADDR") from None
    return done.stdout.split()[0], port


def _launched_together() -> bool:
    return launch().world_size > 1


def launched_rank() -> int:
    """This process's rank when torchrun (or srun) started several (0 when it runs alone)."""
    how = launch()
    return how.rank if how.world_size > 1 else 0


def stopping() -> None:
    """This torchrun worker is on its way out with its own exit status: torchrun's SIGTERM,
    sent when it sees another worker end, must not cut off its report and clean-up."""
    if _launched_together():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def same_everywhere() -> Iterator[None]:
    """Around what every process meets alike (the command line, the config, the device): a
    :class:`UserError` there happens in every process, so rank 0 alone reports it and the
    other ranks exit 2 quietly."""
    try:
        yield
    except Stopped:
        raise
    except UserError as err:
        stopping()
        if launched_rank():
            raise Stopped() from err
        raise


_LOST_PEER = (
    "closed by peer",
    "reset by peer",
    "broken pipe",
    "remote process exited",
    "connection refused",
)
"""Words of gloo's and NCCL's errors when the other end of a collective went away."""


def lost_peer(err: BaseException) -> bool:
    """Whether ``err`` is a collective failing because another process went away."""
    text = str(err).lower()
    return isinstance(err, RuntimeError) and any(words in text for words in _LOST_PEER)


def _interrupt_once(signum, frame) -> None:
    """Ctrl-C reaches a worker twice (from the terminal and again from torchrun): the first
    stops it, the second must not cut its clean-up short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


@dataclass
class Processes:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    _sigint: object = field(default=None, repr=False)  # the SIGINT handler start() replaced

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather(self, obj) -> list:
        """``obj`` of every process, in rank order (plain objects, e.g. random states)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Rank 0's buffers (e.g. batch-norm statistics) to every process.

        DDP does this at the start of each forward pass; after the last step each process
        still holds the statistics of its own last batch.
        """
        if self.distributed:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    @contextlib.contextmanager
    def together(self, when: bool = True) -> Iterator[None]:
        """Around work that one process may fail in alone (rank 0's writes, a check of one
        process's numbers); no collective may run inside. After it (when ``when``) every process
        learns whether all got through: if one failed, the lowest failing rank raises its error
        and the others a quiet :class:`Stopped`, so that all stop at once and one says why."""
        if not (self.distributed and when):
            yield
            return
        try:
            yield
        except Exception:
            try:
                first = self._first_failed(True)
            except RuntimeError:  # the others are gone already: this error is the news
                stopping()
                first = None
            else:
                self._all_stopping()
            if first in (None, self.rank):
                raise
            raise Stopped() from None
        first = self._first_failed(False)
        if first is not None:
            self._all_stopping()
            raise Stopped()

    def _all_stopping(self) -> None:
        """Ignore torchrun's SIGTERM, then wait until every process does: the first to exit makes
        torchrun terminate the others, which must not be cut off before their exit status."""
        stopping()
        with contextlib.suppress(RuntimeError):  # a process gone meanwhile: nothing to wait for
            dist.barrier()

    def _first_failed(self, failed: bool) -> int | None:
        """The lowest rank that reports a failure (``failed`` is this process's), or None."""
        flags = torch.zeros(self.world_size, dtype=torch.int32, device=self.device)
        flags[self.rank] = int(failed)
        dist.all_reduce(flags)
        ranks = flags.nonzero().flatten().tolist()
        return ranks[0] if ranks else None

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
        if self._sigint is not None:
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signal.SIGINT, self._sigint)
            self._sigint = None


def start(device: str) -> Processes:
    """Pick the device (``auto``: CUDA when present) and join the process group if there is one."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available (use device=auto or cpu)")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    how = launch()
    world_size, rank, local_rank = how.world_size, how.rank, how.local_rank
    if how.by == "slurm":  # as torchrun would have set them, for init_process_group and any child
        addr, port = slurm_rendezvous()
        os.environ.update(
            WORLD_SIZE=str(world_size),
            RANK=str(rank),
            LOCAL_RANK=str(local_rank),
            MASTER_ADDR=addr,
            MASTER_PORT=str(port),
        )
    if use_cuda:
        # srun --gpus-per-task shows each task its own GPU alone, as device 0
        index = 0 if how.by == "slurm" and torch.cuda.device_count() == 1 else local_rank
        torch.cuda.set_device(index)
        where = torch.device("cuda", index)
    else:
        where = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    procs = Processes(rank, world_size, local_rank, where)
    if procs.distributed and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        with contextlib.suppress(ValueError):  # not the main thread: signals stay as they are
            procs._sigint = signal.signal(signal.SIGINT, _interrupt_once)
    return procs
