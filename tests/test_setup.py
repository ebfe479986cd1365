"""`make setup`'s torch step (tools/install_torch.sh), with stand-ins for python, pip and nvidia-smi
that record what they were asked: no network, nothing installed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "install_torch.sh"

FAKE_PYTHON = """#!/usr/bin/env bash
# `-c ...`: the installed torch's version, if any; `-m pip install ...`: logged; the CPU index fails
# when told to (as an index that does not answer does).
if [ "$1" = "-c" ]; then [ -n "$HAVE_TORCH" ] && echo "$HAVE_TORCH" && exit 0; exit 1; fi
echo "$*" >> "$LOG"
case "$*" in *--index-url*) [ -n "$CPU_INDEX_DOWN" ] && exit 1 ;; esac
exit 0
"""


def run_setup(
    tmp_path: Path, gpu: bool, cpu_index_down: bool = False, have: str = ""
) -> tuple[str, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "nvidia-smi").write_text(f"#!/usr/bin/env bash\nexit {0 if gpu else 1}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    log = tmp_path / "pip.log"
    log.write_text("")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PY": str(bin_dir / "python"),
        "LOG": str(log),
        "HAVE_TORCH": have,
        "CPU_INDEX_DOWN": "1" if cpu_index_down else "",
    }
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=True)
    return out.stdout, log.read_text().splitlines()


def test_no_gpu_takes_the_cpu_wheel_without_retries(tmp_path):
    said, calls = run_setup(tmp_path, gpu=False)
    assert len(calls) == 1
    assert "torch==2.13.0" in calls[0] and "--index-url https://download.pytorch.org/whl/cpu" in calls[0]
    assert "--retries 0" in calls[0]  # an index that does not answer costs seconds, not minutes
    assert "CPU wheel" in said


def test_unreachable_cpu_index_falls_back_to_pypi(tmp_path):
    said, calls = run_setup(tmp_path, gpu=False, cpu_index_down=True)
    assert len(calls) == 2 and "--index-url" not in calls[1] and "torch==2.13.0" in calls[1]
    assert "did not answer" in said and "PyPI" in said


def test_gpu_machine_takes_pypi_build(tmp_path):
    said, calls = run_setup(tmp_path, gpu=True)
    assert calls == ["-m pip install -q torch==2.13.0"]
    assert "NVIDIA GPU" in said


def test_installed_version_is_kept(tmp_path):
    said, calls = run_setup(tmp_path, gpu=False, have="2.13.0+cpu")
    assert calls == [] and "is installed" in said


def test_makefile_setup_uses_the_script():
    setup = (ROOT / "Makefile").read_text().split("\nsetup:", 1)[1].split("\n\n", 1)[0]
    assert "tools/install_torch.sh" in setup
    assert "pip install -q torch" not in setup  # one place says how torch is installed
