"""The commands parse their command line, write --help and say what is missing before they import
torch or a simulator (seconds on a loaded machine): checked as the modules a subprocess ends
with, not as a time, which would depend on the machine."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "mujoco", "gymnasium", "metaworld", "robosuite")

RUN = """
import json, sys
from embodied.cli.{command} import main
status = main({argv!r})
print(json.dumps({{"status": status, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""


def run_command(command: str, argv: list[str], cwd) -> tuple[dict, str]:
    code = RUN.format(command=command, argv=argv, heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.parametrize(
    "command, argv, message",
    [
        ("train", ["no_such_config"], "no_such_config: not found, as a file or as a name in configs/"),
        (
            "train",
            ["--resume", "runs/no_such_run"],
            "runs/no_such_run: no checkpoints/last.pt to resume from",
        ),
        ("train", ["--resume", "runs/no_such_run", "--out", "x"], "--out and --resume exclude each other"),
        ("eval", ["runs/no_such_run"], "runs/no_such_run: no such checkpoint"),
    ],
)
def test_a_missing_path_is_reported_before_torch_is_imported(tmp_path, command, argv, message):
    result, err = run_command(command, argv, tmp_path)
    assert result == {"status": 2, "heavy": []}, err
    assert err.strip() == f"error: {message}" or err.strip().startswith(f"error: {message}")


HELP = """
import contextlib, io, json, sys
from embodied.cli.{command} import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main({argv!r})
    except SystemExit as stop:
        status = stop.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"status": status, "chars": len(out.getvalue()), "heavy": heavy}}))
"""


@pytest.mark.parametrize(
    "command, argv",
    [
        ("train", ["--help"]),
        ("eval", ["--help"]),
        ("bench", ["--help"]),
        ("data", ["--help"]),
        *[
            ("data", [sub, "--help"])
            for sub in ("collect", "info", "validate", "upgrade", "replay", "video", "export", "import")
        ],
    ],
)
def test_help_is_written_without_torch_or_a_simulator(tmp_path, command, argv):
    code = HELP.format(command=command, argv=argv, heavy=HEAVY)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == 0 and result["chars"] > 100, out.stderr
    assert result["heavy"] == [], out.stderr


def test_the_help_lists_the_objectives_of_the_registry():
    """--help reads the objectives' names and summaries from their source (importing them imports
    torch): the same, in the same order, as the registry holds."""
    from embodied.cli.train import objective_summaries
    from embodied.train.objective import registered

    assert objective_summaries() == {name: o.summary for name, o in registered().items()}
    assert list(objective_summaries()) == list(registered())


def test_train_help_still_lists_every_setting(capsys):
    """--help is written when asked for: objectives and settings."""
    from embodied.cli.train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Objectives (mode: what trains):" in text and "mirror.temperature" in text
    assert "may change only: " in text and "steps" in text.split("may change only: ")[1][:400]
