"""tools/bench_eval.py --compare: several trained policies measured in the same waves, each
against the first (the figures are the tool's; here only that it measures what it says)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "bench_eval.py"


@pytest.mark.slow
def test_compare_measures_each_policy_against_the_first(tiny_run, demo_tasks):
    mlp = tiny_run("policy_quick")
    act = tiny_run("policy_quick_act")
    cmd = [sys.executable, str(TOOL), "--tasks", demo_tasks[0], "--episodes", "2", "--horizon", "20"]
    cmd += ["--repeats", "1", "--compare", str(mlp), str(act)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    first, second = (r for r in rows if f"({mlp})" in r or f"({act})" in r)
    assert first.startswith("| bc_mlp") and second.startswith("| act")
    assert "| 1.00 [1.00, 1.00] |" in first  # the first against itself
    ratio = float(re.split(r"\s*\|\s*", second)[3].split()[0])
    assert ratio > 0  # measured, not a placeholder
