"""Rollouts during training: the policy in the simulator, through the evaluation's settings object.

    metrics = rollout_metrics(evaluator, policy, spec, cfg.rollout_episodes)

Every task of the policy's data, ``episodes`` each, from the held-out seed start
(:class:`~embodied.eval.settings.EvalSettings` with its defaults otherwise), by ``evaluator``:
:func:`simulator_rollouts` (:func:`embodied.eval.rollout.evaluate_policy`) unless a caller, a
test, injects its own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

import torch
from torch import nn

from embodied.data.spec import DataSpec
from embodied.eval.results import EvalResults
from embodied.eval.rollout import evaluate_policy
from embodied.eval.settings import EvalSettings, Videos


class PolicyEvaluator(Protocol):
    def __call__(self, policy: nn.Module, spec: DataSpec, settings: EvalSettings):
        """Roll ``policy`` (trained on ``spec``) out as ``settings`` say; returns a mapping (or
        dataclass) of results, e.g. ``success_rate``."""


def simulator_rollouts(policy: nn.Module, spec: DataSpec, settings: EvalSettings) -> EvalResults:
    """The default :class:`PolicyEvaluator`: :func:`~embodied.eval.rollout.evaluate_policy`."""
    return evaluate_policy(policy, spec, settings=settings)


def rollout_metrics(
    evaluator: PolicyEvaluator | None,
    policy: nn.Module,
    spec: DataSpec,
    episodes: int,
    videos: Videos | None = None,
) -> dict[str, float]:
    """The numbers of ``evaluator`` (None: :func:`simulator_rollouts`) rolling ``policy`` out for
    ``episodes`` episodes of every task of ``spec.task_names`` from the held-out seed start, for
    the metrics log; ``videos``: the rollout videos the simulator's rollouts write (an injected
    evaluator writes none). The policy runs in eval mode; its mode and torch's random state are
    as they were after, so that rollouts do not change the training that follows them."""
    settings = EvalSettings(tasks=list(spec.task_names), episodes=episodes)
    was_training = policy.training
    with torch.random.fork_rng(devices=[]):
        policy.eval()
        try:
            if evaluator is None and videos is not None:
                result = evaluate_policy(policy, spec, settings=settings, videos=videos)
            else:
                result = (evaluator or simulator_rollouts)(policy, spec, settings)
        finally:
            policy.train(was_training)
    return numeric_results(result)


def numeric_results(result) -> dict[str, float]:
    """The numbers of an evaluator's result (a mapping or a dataclass), for the metrics log."""
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        # Top-level fields only: asdict would deep-copy every episode record.
        result = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    if not isinstance(result, Mapping):
        return {}
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
