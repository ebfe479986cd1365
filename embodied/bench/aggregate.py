"""From per-run numbers to the benchmark's claims: means with 95 % intervals over seeds, and
paired differences of the aligned method against its baseline (design.md, "Benchmark protocol").

A run's numbers (``bench.json``'s ``metrics``) come in families, each a nested dict of numbers:

- ``success``: the policy's rollout success, ``overall`` and ``tasks/<task>`` (policy, joint);
- ``recognition``: the recognizer's validation accuracy at the instruction level (the class
  level for data without a hierarchy), ``video``, ``clip``, ``tasks/<task>`` (video level),
  ``early/<fraction>``, and with a hierarchy ``class/video``, ``class/clip`` (recognizer, joint);
- ``alignment``: retrieval over the fixed gallery of validation episodes, both ways, at the
  episode, instruction and class levels and within an instruction, with chance levels, and
  CKA (probe, probe_random; the joint run's own numbers, trained at its positives, are not
  comparable and stay in its details).

:func:`aggregate` flattens each family to ``key -> number`` ("tasks/reach-v3") and, per method
and key, takes the mean over the seeds with a Student-t interval; :func:`paired` takes the
per-seed differences treatment - baseline on the seeds both finished; :func:`ablations` does
both for the ablation runs against the joint run. Plain numpy through
:mod:`embodied.stats`; every result is JSON-ready (NaN as None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from embodied.bench.config import ABLATION
from embodied.stats import mean_interval, paired_difference

FAMILIES = {
    "success": ("policy", "joint"),
    "recognition": ("recognizer", "joint"),
    "alignment": ("probe", "probe_random"),
}
"""Which methods report each family of numbers."""

PAIRS = {
    "success": ("joint", "policy"),
    "recognition": ("joint", "recognizer"),
    "alignment": ("probe", "probe_random"),
}
"""family -> (treatment, baseline) of the paired difference: the mirror's policy against the
policy alone, its recognizer against the recognizer alone, and trained against random-init
features under the same probe (the paper's spontaneous alignment)."""


def flatten(tree: Mapping, prefix: str = "") -> dict[str, float]:
    """{"tasks": {"a": 0.5}, "overall": 0.4} -> {"tasks/a": 0.5, "overall": 0.4}; non-numbers dropped."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out |= flatten(value, name + "/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def interval(values: list[float], seeds: list[int], difference: bool = False) -> dict:
    """Mean of ``values`` (one per seed of ``seeds``) with its 95 % t interval, JSON-ready.

    Every number here is a rate in [0, 1] (success, accuracy, recall, CKA), so the interval is
    clipped to [0, 1], or to [-1, 1] for a ``difference`` of two (the t interval of two or three
    seeds is wide enough to leave the range). With a single seed the interval and standard
    deviation are None: one seed supports no claim.
    """
    m = paired_difference(values, [0.0] * len(values)) if difference else mean_interval(values)
    lo = -1.0 if difference else 0.0
    return {
        "mean": m.mean,
        "low": _nan_to_none(max(m.low, lo)),
        "high": _nan_to_none(min(m.high, 1.0)),
        # before clipping: what these seeds can resolve (a true effect smaller than this half-width
        # is not told from 0 at 95 %)
        "half_width": _nan_to_none(m.high - m.mean),
        "std": _nan_to_none(m.std),
        "n": m.n,
        "values": [float(v) for v in values],
        "seeds": list(seeds),
    }


def _by_seed(runs: Mapping[int, Mapping], family: str) -> dict[int, dict[str, float]]:
    return {seed: flatten(r.get(family) or {}) for seed, r in sorted(runs.items()) if r.get(family)}


def aggregate(runs: Mapping[str, Mapping[int, Mapping]]) -> dict:
    """``runs[method][seed]`` -> ``{family: {method: {key: interval}}}`` over the finished seeds."""
    out: dict[str, dict] = {}
    for family, methods in FAMILIES.items():
        for method in methods:
            stats = _intervals(_by_seed(runs.get(method, {}), family))
            if stats:
                out.setdefault(family, {})[method] = stats
    return out


def paired(runs: Mapping[str, Mapping[int, Mapping]]) -> dict:
    """``{family: {treatment, baseline, metrics: {key: interval of the per-seed differences}}}``.

    Only seeds where both methods finished count, so every difference compares two runs on the
    same demonstrations, the same training seed and the same evaluation seeds.
    """
    out: dict[str, dict] = {}
    for family, (treatment, baseline) in PAIRS.items():
        metrics = _differences(
            _by_seed(runs.get(treatment, {}), family), _by_seed(runs.get(baseline, {}), family)
        )
        if metrics:
            out[family] = {"treatment": treatment, "baseline": baseline, "metrics": metrics}
    return out


def ablations(runs: Mapping[str, Mapping[int, Mapping]], baseline: str = "joint") -> dict:
    """The ablation runs (``ablation/<name>``, the joint run with one override set) against the
    joint run: ``{method: {"summary": {family: {key: interval}}, "paired": {family: {key:
    interval of the per-seed differences ablation - joint}}, "paired_policy": {"success": {key:
    interval of ablation - policy alone}}}}`` for success and recognition, on the seeds both
    finished, in the order of ``runs``. Against the policy alone too: a control that explains the
    mirror's gain gains as much over the policy as the mirror does."""
    out: dict[str, dict] = {}
    for method, by_seed in runs.items():
        if not method.startswith(ABLATION):
            continue
        summary, diffs, over_policy = {}, {}, {}
        for family in ("success", "recognition"):
            mine = _by_seed(by_seed, family)
            stats = _intervals(mine)
            if stats:
                summary[family] = stats
            against_joint = _differences(mine, _by_seed(runs.get(baseline, {}), family))
            if against_joint:
                diffs[family] = against_joint
            if family == "success":
                against_policy = _differences(mine, _by_seed(runs.get("policy", {}), family))
                if against_policy:
                    over_policy[family] = against_policy
        out[method] = {"summary": summary, "paired": diffs, "paired_policy": over_policy}
    return out


def comparisons(runs: Mapping[str, Mapping[int, Mapping]], pairs: list[tuple[str, str]]) -> list[dict]:
    """The success of each declared ``(treatment, baseline)`` pair of methods:
    ``[{"treatment", "baseline", "success": {key: interval of the per-seed differences}}]``, on
    the seeds both finished; a pair with no such seed yet is listed without numbers."""
    out = []
    for treatment, baseline in pairs:
        mine, base = (_by_seed(runs.get(m, {}), "success") for m in (treatment, baseline))
        out.append({"treatment": treatment, "baseline": baseline, "success": _differences(mine, base)})
    return out


def _intervals(per_seed: dict[int, dict]) -> dict:
    """``{key: interval over the seeds that have the key}`` of ``{seed: {key: number}}``."""
    stats = {}
    for key in dict.fromkeys(k for numbers in per_seed.values() for k in numbers):
        seeds = [s for s, numbers in per_seed.items() if key in numbers]
        stats[key] = interval([per_seed[s][key] for s in seeds], seeds)
    return stats


def _differences(mine: dict[int, dict], base: dict[int, dict]) -> dict:
    """``{key: interval of the per-seed differences mine - base}`` over the seeds both have the
    key on: every difference compares two runs of the same training seed."""
    diffs = {}
    for key in dict.fromkeys(k for numbers in mine.values() for k in numbers):
        both = [s for s, numbers in mine.items() if key in numbers and key in base.get(s, {})]
        if both:
            diffs[key] = interval([mine[s][key] - base[s][key] for s in both], both, difference=True)
    return diffs
