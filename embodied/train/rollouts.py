"""The seam to simulator rollouts during training.

Training does not depend on the evaluation package: it takes any callable with the shape of
:class:`PolicyEvaluator`, by default ``embodied.eval.rollout.evaluate_policy`` when that module
is installed, and skips rollouts with a logged note when it is not.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Protocol

from torch import nn

from embodied.models.common import DataSpec


class PolicyEvaluator(Protocol):
    def __call__(
        self, policy: nn.Module, spec: DataSpec, task_names: list[str], episodes: int, seed_start: int
    ):
        """Roll ``policy`` out for ``episodes`` episodes per task from seed ``seed_start`` on; returns
        a mapping (or dataclass) of results, e.g. ``success_rate``."""


def installed_evaluator() -> PolicyEvaluator | None:
    """``embodied.eval.rollout.evaluate_policy`` if installed, else None."""
    try:
        module = importlib.import_module("embodied.eval.rollout")
    except ModuleNotFoundError as err:
        if err.name in ("embodied.eval", "embodied.eval.rollout"):
            return None
        raise  # the module exists but something it imports is missing: a real error
    return getattr(module, "evaluate_policy", None)


def numeric_results(result) -> dict[str, float]:
    """The numbers of an evaluator's result (a mapping or a dataclass), for the metrics log."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        # Top-level fields only: asdict would deep-copy every episode record.
        result = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    if not isinstance(result, Mapping):
        return {}
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
