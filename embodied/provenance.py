"""Where a result came from: the code version, the libraries and the machine, recorded beside every
finished benchmark run so that a number can be traced and a stale one recognised."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def code_version() -> dict:
    """``{"commit": sha or None, "clean": bool or None}`` of the checkout the package runs from
    (None, None for an installed wheel or without git). ``clean`` is False when a tracked file
    differs from the commit: the result may not be reproducible from the commit alone."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "clean": None}
    changes = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "clean": None if changes is None else changes == ""}


NOTABLE_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
"""The instruction sets that change how fast (and in bf16, how) the training steps run."""


def cpu_model() -> str:
    """The CPU's model name with its family and model numbers and its notable instruction sets
    (virtual machines often name only "Intel(R) Xeon(R) Processor"), from ``/proc/cpuinfo``;
    elsewhere the platform's processor string."""
    try:
        lines = Path("/proc/cpuinfo").read_text().split("\n\n")[0].splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    info = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    flags = set(info.get("flags", "").split())
    notable = ", ".join(f for f in NOTABLE_FLAGS if f in flags) or "none of " + "/".join(NOTABLE_FLAGS)
    name = info.get("model name") or platform.processor() or platform.machine()
    return f"{name} (family {info.get('cpu family', '?')} model {info.get('model', '?')}; {notable})"


def provenance(threads: int | None = None) -> dict:
    """Code version, Python, torch and mujoco versions, the CPU model and torch's threads (or
    ``threads``), and the GPU when there is one."""
    import mujoco
    import torch

    record = {
        "code": code_version(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "mujoco": mujoco.__version__,
        "cpu": cpu_model(),
        "threads": torch.get_num_threads() if threads is None else threads,
    }
    if torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(0)
    return record
