"""The evaluation's files: ``results.json`` (everything, per episode too) and ``results.md`` (tables).

``results.json`` (format ``embodied-eval-results``, version 1) is the flat JSON of
:class:`~embodied.eval.rollout.EvalResults` (``success_rate``, ``ci_low``, ``ci_high``,
``tasks`` -> per-task summaries, ``overall``, ``episodes`` -> per-episode records, ...) plus
``protocol`` (which episodes ran: :mod:`embodied.eval.protocol`), ``format``,
``format_version``, ``checkpoint``, ``kind``, ``settings``, ``recognizer`` (its
validation accuracy, or null) and ``judge`` (the recognizer's verdict on the rollouts, or
null). Numbers that do not exist (a mean over no episode) are null, never NaN. Both files are
written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from embodied.eval.protocol import EMBODIED, describe
from embodied.eval.results import EvalResults
from embodied.fileio import json_safe, write_text

FORMAT = "embodied-eval-results"
FORMAT_VERSION = 1


def results_payload(
    results: EvalResults | None,
    *,
    checkpoint: str,
    kind: str,
    settings: dict,
    recognizer: dict | None = None,
    judge: dict | None = None,
) -> dict:
    """The content of ``results.json``; ``results`` None for a checkpoint without a policy."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "checkpoint": checkpoint, "kind": kind}
    payload.update(results.to_json() if results is not None else {})
    payload.update(settings=settings, recognizer=recognizer, judge=judge)
    return json_safe(payload)


def _num(x, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def _row(name: str, s: dict) -> str:
    rate = _num(s["success_rate"], ".2f")
    return (
        f"| {name} | {rate} | [{s['ci_low']:.2f}, {s['ci_high']:.2f}] | {s['successes']}/{s['episodes']} | "
        f"{_num(s['mean_return'])} | {_num(s['mean_length'])} | {_num(s['mean_steps_to_success'])} | "
        f"{s['errors']} |"
    )


def success_table(payload: dict) -> str:
    """The Markdown table of a ``results.json`` payload: a row per task, and the overall row
    (pooled over every episode)."""
    lines = [
        "| task | success | 95% CI (Wilson) | successes | mean return | mean length "
        "| steps to success | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(t, payload["tasks"][t]) for t in payload["task_names"]]
    lines.append(_row("**overall**", payload["overall"]))
    return "\n".join(lines)


def _rate(entry: dict) -> str:
    if not entry or entry.get("rate") is None:
        return "–"
    low, high = entry["ci"]
    return f"{entry['rate']:.2f} [{low:.2f}, {high:.2f}] (n={entry['n']})"


def results_markdown(payload: dict) -> str:
    """``results.md`` from the ``results.json`` payload."""
    lines = [f"# Evaluation of {payload['checkpoint']}", ""]
    s = payload["settings"]
    if "tasks" in payload:
        n_done = len(payload["episodes"])
        planned = payload["episodes_per_task"] * len(payload["task_names"])
        n, first = payload["episodes_per_task"], payload["seed_start"]
        protocol = payload.get("protocol") or {
            "name": EMBODIED,
            "seed_start": first,
            "horizon": s.get("horizon"),
        }
        lines += [
            f"{payload['suite']}, {len(payload['task_names'])} task(s) x {n} episodes, "
            f"{describe(protocol, n)}, {payload['workers']} worker(s), "
            f"the policy in {'each worker' if payload.get('policy_in_workers') else 'the main process'}, "
            f"{payload['env_steps']} steps in {payload['wall_s']:.1f} s "
            f"({payload['steps_per_s']:.0f} steps/s)",
            "",
        ]
        if payload["interrupted"]:
            lines += [
                f"**Interrupted**: {n_done} of {planned} episodes finished; the table counts those.",
                "",
            ]
        lines += [success_table(payload), ""]
        failures: dict[str, int] = {}
        for e in payload["episodes"]:
            if e["failure"] not in (None, "horizon"):
                failures[e["failure"]] = failures.get(e["failure"], 0) + 1
        if failures:
            lines += ["Errors (counted as failures):", ""]
            lines += [f"- {n} x {reason}" for reason, n in sorted(failures.items(), key=lambda kv: -kv[1])]
            lines.append("")
    rec = payload.get("recognizer")
    if rec:
        lines += ["## Recognizer", ""]
        if "error" in rec:
            lines += [f"Validation accuracy not measured: {rec['error']}", ""]
        else:
            low, high = rec["video_accuracy_ci"]
            lines += [
                f"Validation split ({rec['camera']} camera): clip accuracy {rec['clip_accuracy']:.3f} "
                f"({rec['clips']} clips), video accuracy {rec['video_accuracy']:.3f} "
                f"[{low:.2f}, {high:.2f}] ({rec['videos']} videos).",
                "",
            ]
    judge = payload.get("judge")
    if judge:
        lines += [
            "## Recognizer as judge of the rollouts",
            "",
            "Agreement: the recognized task is the instructed one.",
            "",
            "| task | agreement [95% CI] | mean alignment |",
            "|---|---|---:|",
        ]
        for task, entry in judge.get("per_task", {}).items():
            lines.append(f"| {task} | {_rate(entry)} | {_num(entry.get('alignment'), '.3f')} |")
        lines += [
            f"| **overall** | {_rate(judge['agreement'])} | "
            f"{_num(judge.get('alignment', {}).get('mean'), '.3f')} |",
            "",
            f"- agreement among successful episodes: {_rate(judge['agreement_success'])}",
            f"- agreement among failed episodes: {_rate(judge['agreement_failure'])}",
        ]
        a = judge.get("alignment")
        if a:
            lines += [
                f"- alignment of successful episodes: {_num(a['success_mean'], '.3f')} (n={a['success_n']}); "
                f"of failed ones: {_num(a['failure_mean'], '.3f')} (n={a['failure_n']}); "
                f"difference {_num(a['difference'], '.3f')}; AUROC for success {_num(a['auroc'], '.2f')}",
            ]
        lines.append("")
    return "\n".join(lines)


def write_results(out: Path, payload: dict) -> tuple[Path, Path, str]:
    """Write ``results.json`` and ``results.md`` into ``out``; returns both paths and the Markdown."""
    md = results_markdown(payload)
    json_path = write_text(out / "results.json", json.dumps(payload, indent=1, allow_nan=False) + "\n")
    md_path = write_text(out / "results.md", md)
    return json_path, md_path, md
