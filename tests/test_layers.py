"""The package's layers point down: read from the source, so that a new upward import fails here.

    top-level modules (errors, fileio, paths, config, keys, stats, video)
      < sim, data, models, policies, recognizers, mirror
      < eval, train < bench < cli

Within the middle layer, imports between packages are allowed (a policy builds on models,
data on sim); what is refused is a lower layer reaching up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "embodied"
LOWER = ("sim", "data", "models", "policies", "recognizers", "mirror")
UPPER = ("eval", "train", "bench", "cli")
RANK = {"eval": 2, "train": 2, "bench": 3, "cli": 4} | dict.fromkeys(LOWER, 1)


def imported_packages(path: Path) -> set[str]:
    """The ``embodied.<name>`` packages and modules a source file imports, anywhere in it
    (function-local imports count: they run too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "embodied" and len(parts) > 1:
                found.add(parts[1])
    return found


def modules_of(layer: str) -> list[Path]:
    folder = PACKAGE / layer
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [PACKAGE / f"{layer}.py"]


@pytest.mark.parametrize("layer", [*LOWER, *UPPER])
def test_a_layer_imports_nothing_above_it(layer):
    wrong = []
    for path in modules_of(layer):
        for target in imported_packages(path):
            if RANK.get(target, 0) > RANK[layer]:
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports embodied.{target}")
    assert not wrong, "\n".join(wrong)


def test_top_level_modules_import_no_package():
    """The shared bottom (errors, files, paths, statistics, video writing) stands alone. The
    package root is not part of it: it registers the suites' gymnasium ids (embodied.sim), so
    that ``import embodied`` is all gymnasium.make needs."""
    wrong = []
    for path in sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py"):
        for target in imported_packages(path) - {"__init__"}:
            if target in RANK:
                wrong.append(f"{path.name} imports embodied.{target}")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    """The reader of imports finds function-local ones, so the tests above can fail."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from embodied.eval.rollout import evaluate_policy\n")
    assert imported_packages(source) == {"eval"}
