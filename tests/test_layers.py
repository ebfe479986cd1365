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
    package root is not part of it (it imports nothing of the package: embodied.sim registers
    the suites' gymnasium ids)."""
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


def _module_imports() -> dict[str, set[str]]:
    """``{module: the embodied modules it imports}``, function-local imports included, those
    under ``if TYPE_CHECKING:`` (annotations only) and packages' ``__init__`` left out."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            modules[".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)] = path
    edges = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        found = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        edges[name] = {m for m in found if m in modules and m != name}
    return edges


def test_no_two_modules_import_each_other_even_through_others():
    """No import cycle between modules, at any depth (function-local imports count)."""
    edges = _module_imports()
    cycles = []
    for start in edges:  # a path from a module back to itself
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "\n".join(sorted(set(cycles))[:5])
