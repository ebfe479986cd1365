"""The benchmark's files: ``results.json``, ``results.md`` and the plots, each written atomically.

``results.json`` (format ``embodied-bench-results``, version 1)::

    preset, config            the preset's name and its full config
    tasks, seeds, methods     what was compared
    recognition_level         what the recognizers recognised: instruction or class
    complete                  every method finished every seed
    runs                      method -> seed -> {metrics, finished, train_wall_s, eval_wall_s, dir}
    summary                   family -> method -> key -> {mean, low, high, std, n, values, seeds}
    paired                    family -> {treatment, baseline, metrics: key -> the same, of the
                              per-seed differences treatment - baseline}
    ablations                 ablation/<name> -> {overrides, summary: family -> key -> interval,
                              paired: family -> key -> interval of ablation - joint} (with
                              ``ablations`` in the preset; else empty)
    wall_s, plots

Families and keys are those of :mod:`embodied.bench.aggregate` (``success``: ``overall``,
``tasks/<task>``; ``recognition``: ``video``, ``clip``, ``tasks/<task>``, ``early/<fraction>``;
``alignment``: ``recall@1_u2e``, ``recall@1_e2u``, ``chance@1``, ...). Numbers that do not
exist (an interval over one seed) are null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from embodied.bench.aggregate import PAIRS, ablations, aggregate, comparisons, paired
from embodied.bench.config import (
    ABLATION,
    LABELS,
    BenchConfig,
    ablation_title,
    label,
    load_ablations,
    load_comparisons,
)
from embodied.config import to_dict
from embodied.fileio import json_safe, write_text

FORMAT = "embodied-bench-results"
FORMAT_VERSION = 1


def tasks_of(runs: dict[str, dict[int, dict]]) -> list[str]:
    """The tasks of the runs, in the order the models list them (runs from before the task
    hierarchy list them as their classes)."""
    for method in ("policy", "joint", "recognizer"):
        for marker in runs.get(method, {}).values():
            details = marker.get("details", {})
            tasks = details.get("tasks") or details.get("classes")
            if tasks:
                return list(tasks)
    return []


def recognition_level(runs: dict[str, dict[int, dict]]) -> str:
    """What the recognizers recognised: ``instruction`` (data with a hierarchy) or ``class``."""
    for method in ("recognizer", "joint"):
        for marker in runs.get(method, {}).values():
            level = marker.get("details", {}).get("recognition", {}).get("level")
            if level:
                return level
    return "class"


def results_payload(cfg: BenchConfig, runs: dict[str, dict[int, dict]], wall_s: float) -> dict:
    seeds = list(range(cfg.seeds))
    metrics = {m: {s: r["metrics"] for s, r in v.items()} for m, v in runs.items()}
    overrides = load_ablations(cfg.ablations) if cfg.ablations else {}
    return json_safe(
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "preset": cfg.name,
            "config": to_dict(cfg),
            "tasks": tasks_of(runs),
            "recognition_level": recognition_level(runs),
            "seeds": seeds,
            "methods": list(cfg.methods),
            "complete": all(s in runs.get(m, {}) for m in cfg.methods for s in seeds),
            "runs": {
                m: {
                    str(s): {
                        "metrics": marker["metrics"],
                        "finished": marker.get("finished"),
                        "train_wall_s": marker.get("train_wall_s"),
                        "eval_wall_s": marker.get("eval_wall_s"),
                        "dir": str(Path(cfg.out) / m / f"seed{s}"),
                    }
                    for s, marker in sorted(by_seed.items())
                }
                for m, by_seed in runs.items()
            },
            "summary": aggregate(metrics),
            "paired": paired(metrics),
            "ablation_title": ablation_title(cfg.ablations) if cfg.ablations else None,
            "ablations": {
                m: {"overrides": overrides[m[len(ABLATION) :]], **numbers}
                for m, numbers in ablations(metrics).items()
                if m[len(ABLATION) :] in overrides
            },
            "comparisons": comparisons(metrics, load_comparisons(cfg.ablations)) if cfg.ablations else [],
            "wall_s": round(wall_s, 1),
        }
    )


# --------------------------------------------------------------------------- Markdown
def fmt(entry: dict | None, signed: bool = False, digits: int = 2) -> str:
    """``0.53 [0.40, 0.66]``; the mean alone when there is no interval (one seed); – when missing."""
    if not entry or entry.get("mean") is None:
        return "–"
    sign = "+" if signed else ""
    text = f"{entry['mean']:{sign}.{digits}f}"
    if entry.get("low") is not None and entry.get("high") is not None:
        text += f" [{entry['low']:{sign}.{digits}f}, {entry['high']:{sign}.{digits}f}]"
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _family_table(payload: dict, family: str, keys: list[tuple[str, str]], first: str) -> list[str]:
    """Rows ``keys`` (key, label) of one family: treatment and baseline with intervals, and Δ."""
    pair = payload["paired"].get(family, {})
    treatment, baseline = PAIRS[family]
    stats = payload["summary"].get(family, {})
    header = [first, LABELS[baseline], LABELS[treatment], f"Δ {LABELS[treatment]} − {LABELS[baseline]}"]
    rows = []
    for key, name in keys:
        rows.append(
            [
                name,
                fmt(stats.get(baseline, {}).get(key)),
                fmt(stats.get(treatment, {}).get(key)),
                fmt(pair.get("metrics", {}).get(key), signed=True),
            ]
        )
    return _table(header, rows)


def _minutes(payload: dict, key: str) -> str:
    seconds = sum(r.get(key) or 0 for by_seed in payload["runs"].values() for r in by_seed.values())
    return f"{seconds / 60:.1f}"


PAPER_DELTAS = {"success": "+0.035", "recognition": "+0.033"}
"""What the paper reports for alignment over the separately trained models (paper.md: +3.5
and +3.3 points), as fractions like every rate here."""


def early_keys(stats: Iterable[Mapping[str, object]]) -> list[tuple[str, str]]:
    """The ``early/<fraction>`` keys of some methods' recognition stats, earliest first, each
    with its label ("10%")."""
    found = {k for by_key in stats for k in by_key if k.startswith("early/")}
    fractions = sorted(found, key=lambda k: float(k.split("/", 1)[1]))
    return [(k, f"{float(k.split('/', 1)[1]):.0%}") for k in fractions]


CLAIM_SEEDS = 5
"""Training seeds a paired difference needs before it counts as a claim (design.md's protocol)."""


def half_width(entry: dict | None) -> str:
    """``±0.024 (5 seeds)``: the 95 % half-width of a paired difference, what its seeds can
    resolve; with fewer than :data:`CLAIM_SEEDS` seeds it says so (no claim: with 2 seeds that
    agree by chance the interval even collapses to a point)."""
    if not entry or entry.get("half_width") is None:
        return "–"
    n = entry.get("n") or 0
    return f"±{entry['half_width']:.3f} ({n} seeds{'' if n >= CLAIM_SEEDS else ', too few for a claim'})"


GALLERY_ROWS = (
    ("recall@1_episode", "episode", "chance@1_episode"),
    ("within_instruction@1", "episode among its instruction's", "chance@1_within_instruction"),
    ("recall@1_instruction", "instruction", "chance@1_instruction"),
    ("recall@1_class", "class", "chance@1_class"),
)
"""The probe's gallery retrieval: (key stem, what counts as found, its chance level's key)."""


def _headline(payload: dict) -> list[str]:
    """One row per claim: overall success, recognition (video, clip, earliest prefix, class),
    probe retrieval; each with the paired difference, the half-width of its interval (what the
    seeds can resolve) and the paper's difference."""
    summary, pairs = payload["summary"], payload["paired"]
    rows = []

    def row(family: str, key: str, name: str, paper: str = "") -> None:
        treatment, baseline = PAIRS[family]
        stats = summary.get(family, {})
        if key not in stats.get(treatment, {}) and key not in stats.get(baseline, {}):
            return
        diff = pairs.get(family, {}).get("metrics", {}).get(key)
        rows.append(
            [
                name,
                fmt(stats.get(baseline, {}).get(key)),
                fmt(stats.get(treatment, {}).get(key)),
                fmt(diff, signed=True),
                half_width(diff),
                paper,
            ]
        )

    row("success", "overall", "success (rollouts), policy alone → mirror", PAPER_DELTAS["success"])
    level = payload.get("recognition_level", "class")
    row(
        "recognition",
        "video",
        f"recognition ({level}), video level: recognizer alone → mirror",
        PAPER_DELTAS["recognition"],
    )
    row("recognition", "clip", f"recognition ({level}), clip level: recognizer alone → mirror")
    early = early_keys(summary.get("recognition", {}).values())
    if early:
        row(
            "recognition",
            early[0][0],
            f"recognition ({level}) after {early[0][1]} of a video: recognizer alone → mirror",
        )
    row("recognition", "class/video", "recognition (class), video level: recognizer alone → mirror")
    for stem, found, chance in GALLERY_ROWS[:2]:
        c = summary.get("alignment", {}).get("probe", {}).get(chance)
        at = f", chance {c['mean']:.2f}" if c and c.get("mean") is not None else ""
        for d, arrow in (("u2e", "U→E"), ("e2u", "E→U")):
            row("alignment", f"{stem}_{d}", f"probe Recall@1 {arrow}, {found}{at}: random init → trained")
    row("alignment", "recall@1_u2e", "probe Recall@1 U→E: random init → trained")
    row("alignment", "recall@1_e2u", "probe Recall@1 E→U: random init → trained")
    if not rows:
        return []
    header = ["claim", "baseline", "treatment", "Δ (paired, 95 % CI)", "95 % half-width", "paper's Δ"]
    return [
        "## Headline",
        "",
        "The half-width of each paired difference's 95 % interval is the smallest effect these seeds "
        "can tell from zero: a paper's Δ below it could be there and go unseen. A difference over "
        f"fewer than {CLAIM_SEEDS} training seeds is no claim, whatever its interval.",
        "",
        *_table(header, rows),
        "",
    ]


def _ablation_section(payload: dict) -> list[str]:
    """The ablation (or control) runs: overall success against the policy alone and the joint
    run, each paired difference with the half-width its seeds resolve; then recognition against
    the joint run for the runs that have a recognizer."""
    if not payload.get("ablations"):
        return []
    runs = payload["ablations"]
    joint, pairs = payload["summary"], payload["paired"]

    def name(method: str) -> str:
        return label(method).removeprefix("ablation ")

    def overrides(a: dict) -> str:
        return ", ".join(f"`{o}`" for o in a["overrides"])

    success = [
        ["policy alone", "–", fmt(joint.get("success", {}).get("policy", {}).get("overall")), "", "", "", ""],
        [
            "mirror (joint)",
            "–",
            fmt(joint.get("success", {}).get("joint", {}).get("overall")),
            fmt(pairs.get("success", {}).get("metrics", {}).get("overall"), signed=True),
            half_width(pairs.get("success", {}).get("metrics", {}).get("overall")),
            "",
            "",
        ],
    ]
    for method, a in runs.items():
        vs_policy = a.get("paired_policy", {}).get("success", {}).get("overall")
        vs_joint = a["paired"].get("success", {}).get("overall")
        success.append(
            [
                name(method),
                overrides(a),
                fmt(a["summary"].get("success", {}).get("overall")),
                fmt(vs_policy, signed=True),
                half_width(vs_policy),
                fmt(vs_joint, signed=True),
                half_width(vs_joint),
            ]
        )
    header = [
        "run",
        "overrides",
        "success",
        "Δ vs policy alone",
        "95 % half-width",
        "Δ vs mirror",
        "95 % half-width",
    ]
    lines = [
        f"## {payload.get('ablation_title') or 'Ablations of the mirror head'}",
        "",
        "The joint run with one override set each (the preset's `ablations`), every training seed; "
        "Δ: the per-seed paired difference against the policy alone and against the joint run of the "
        "same seed, with the half-width of its 95 % interval (the smallest difference these seeds "
        "tell from zero).",
        "",
        *_table(header, success),
        "",
    ]
    if payload.get("comparisons"):
        rows = []
        for c in payload["comparisons"]:
            d = c["success"].get("overall")
            rows.append(
                [f"{name(c['treatment'])} − {name(c['baseline'])}", fmt(d, signed=True), half_width(d)]
            )
        lines += [
            "Between the runs (the ablation file's `compare:`), success, paired by seed:",
            "",
            *_table(["treatment − baseline", "Δ (paired, 95 % CI)", "95 % half-width"], rows),
            "",
        ]
    # the earliest point of the early-recognition curve: where recognition is least saturated
    early = early_keys(a["summary"].get("recognition", {}) for a in runs.values())[:1]
    cols = [("video", "recognition (video)"), ("clip", "recognition (clip)")]
    cols += [(k, f"recognition after {seen}") for k, seen in early]
    recognizing = {m: a for m, a in runs.items() if a["summary"].get("recognition")}
    if recognizing:
        rows = [
            ["mirror (joint)", "–"]
            + [
                c
                for key, _ in cols
                for c in (fmt(joint.get("recognition", {}).get("joint", {}).get(key)), "")
            ]
        ]
        for method, a in recognizing.items():
            rows.append(
                [name(method), overrides(a)]
                + [
                    c
                    for key, _ in cols
                    for c in (
                        fmt(a["summary"]["recognition"].get(key)),
                        fmt(a["paired"].get("recognition", {}).get(key), signed=True),
                    )
                ]
            )
        header = ["run", "overrides"] + [c for _, title in cols for c in (title, "Δ vs mirror (joint)")]
        lines += ["Recognition, for the runs with a recognizer:", "", *_table(header, rows), ""]
    return lines


def _alignment_section(payload: dict) -> list[str]:
    """The probe: retrieval over the fixed gallery at every level, trained against random init,
    each with its chance level (older runs: Recall@1 of the validation pairs)."""
    stats = payload["summary"]["alignment"]
    probe = stats.get("probe", {}) or stats.get("probe_random", {})
    lines = [
        "## Spontaneous alignment (probe)",
        "",
        "The policy and the recognizer trained apart, frozen; only T_u and T_e trained, on the same "
        "architectures trained and randomly initialised. ",
    ]
    if "recall@1_episode_u2e" in probe:
        gallery = probe.get("gallery", {}).get("mean")
        lines[-1] += (
            f"Retrieval over a fixed gallery of one pair per validation episode ({gallery:.0f} episodes, "
            "each the mean of its pairs at evenly spaced steps): a query counts as found when its top-1 is "
            "its own episode, one of its instruction or one of its class; *among its instruction's*: "
            "the own episode ranked first among the episodes of the same instruction, what knowing "
            "the label alone cannot give."
            if gallery is not None
            else ""
        )
        lines.append("")
        keys, chances = [], {}
        for stem, found, chance in GALLERY_ROWS:
            for d, arrow in (("u2e", "U→E"), ("e2u", "E→U")):
                keys.append((f"{stem}_{d}", f"{arrow}: {found}"))
                chances[f"{stem}_{d}"] = probe.get(chance, {}).get("mean")
        table = _family_table(payload, "alignment", keys, "Recall@1")
        table[0] += " chance |"
        table[1] += "---|"
        for i, (key, _) in enumerate(keys):
            c = chances[key]
            table[2 + i] += f" {'–' if c is None else f'{c:.3f}'} |"
        return lines + table + [""]
    lines[-1] += "Recall@1 of the matching partner among the validation pairs."
    keys = [("recall@1_u2e", "Recall@1 U→E"), ("recall@1_e2u", "Recall@1 E→U"), ("chance@1", "chance")]
    return lines + [""] + _family_table(payload, "alignment", keys, "") + [""]


def _rollout_protocol(e: dict) -> str:
    """Which episodes the bench's rollouts ran (the eval settings)."""
    protocol = e.get("protocol", "embodied")
    if protocol == "embodied":
        return (
            f"held-out seeds {e['seed_start']}..{e['seed_start'] + e['episodes'] - 1}, "
            f"horizon {e['horizon'] or 'task default'}"
        )
    seed = e.get("protocol_seed")
    seed = "its default" if seed is None else seed
    return f"protocol {protocol} (its goals for seed {seed}, one episode each, its horizon)"


def results_markdown(payload: dict) -> str:
    cfg = payload["config"]
    e = cfg["eval"]
    tasks = payload["tasks"]
    seeds = payload["seeds"]
    done = {m: len(v) for m, v in payload["runs"].items()}
    lines = [
        f"# Benchmark `{payload['preset']}`: the mirror method against its baselines",
        "",
        f"Demonstrations: {', '.join(cfg['data']['paths'])}; {len(tasks)} task(s): {', '.join(tasks)}. "
        f"Training seeds {seeds[0]}..{seeds[-1]}, the same demonstrations for every method and seed. "
        f"Rollouts: {e['episodes']} episodes per task, {_rollout_protocol(e)}.",
        "",
        "Each cell: the mean over training seeds with its 95 % t interval; Δ: the mean of the per-seed "
        "paired differences with its 95 % t interval (an interval excluding 0 is a consistent difference); "
        "intervals are clipped to the range a rate can take. "
        "Finished runs: "
        + ", ".join(f"{LABELS[m]} {done.get(m, 0)}/{len(seeds)}" for m in payload["methods"])
        + ("" if payload["complete"] else " (**incomplete**: the numbers cover the finished seeds)")
        + f"; the runs took {_minutes(payload, 'train_wall_s')} min of training and "
        f"{_minutes(payload, 'eval_wall_s')} min of evaluation; "
        f"this invocation {payload['wall_s'] / 60:.1f} min.",
        "",
    ]
    lines += _headline(payload)
    if "success" in payload["summary"]:
        keys = [(f"tasks/{t}", t) for t in tasks] + [("overall", "**overall**")]
        lines += ["## Manipulation success (rollouts)", ""]
        lines += _family_table(payload, "success", keys, "task") + [""]
    if "recognition" in payload["summary"]:
        keys = [(f"tasks/{t}", t) for t in tasks]
        keys += [("video", "**overall (video level)**"), ("clip", "overall (clip level)")]
        keys += [("class/video", "class level (video)"), ("class/clip", "class level (clip)")]
        keys = [(k, n) for k, n in keys if any(k in by for by in payload["summary"]["recognition"].values())]
        lines += [
            "## Action recognition (validation demonstrations)",
            "",
            f"What is recognised: the {payload.get('recognition_level', 'class')}"
            + (
                " (the action; the class, the object family, beside it). "
                if payload.get("recognition_level") == "instruction"
                else ". "
            )
            + "Video level: one verdict per validation video from clips spread over it; per task, the "
            "share of its videos recognized.",
            "",
        ]
        lines += _family_table(payload, "recognition", keys, "task") + [""]
        keys = early_keys(payload["summary"]["recognition"].values())
        if keys:
            lines += [
                "### Early recognition",
                "",
                "Video-level accuracy when only the first part of each validation video is seen.",
                "",
            ]
            lines += _family_table(payload, "recognition", keys, "video seen") + [""]
    if "alignment" in payload["summary"]:
        lines += _alignment_section(payload)
    lines += _ablation_section(payload)
    lines += ["## Runs", ""]
    rows = []
    for method, by_seed in payload["runs"].items():
        for seed, r in by_seed.items():
            m = r["metrics"]
            success = m.get("success", {}).get("overall")
            video = m.get("recognition", {}).get("video")
            a = m.get("alignment", {})
            u2e, e2u = (a.get(f"recall@1_episode_{d}", a.get(f"recall@1_{d}")) for d in ("u2e", "e2u"))
            recall = f"{u2e:.2f} / {e2u:.2f}" if u2e is not None and e2u is not None else "–"
            rows.append(
                [
                    label(method),
                    seed,
                    "–" if success is None else f"{success:.2f}",
                    "–" if video is None else f"{video:.2f}",
                    recall,
                    f"{r['train_wall_s'] or 0:.0f}",
                    f"{r['eval_wall_s'] or 0:.0f}",
                ]
            )
    header = [
        "method",
        "seed",
        "success",
        "recognition (video)",
        "probe Recall@1 U→E / E→U",
        "train s",
        "eval s",
    ]
    lines += _table(header, [[str(c) for c in r] for r in rows]) + [""]
    if payload.get("plots"):
        lines += ["## Plots", ""] + [f"- `{p}`" for p in payload["plots"]] + [""]
    return "\n".join(lines)


def write_results(
    cfg: BenchConfig, runs: dict[str, dict[int, dict]], wall_s: float, extra_plots: list[Path] = ()
) -> tuple[dict, list[Path]]:
    """Write results.json, results.md and the plots into ``cfg.out``; (payload, paths written)."""
    from embodied.bench.plots import write_plots

    out = Path(cfg.out)
    payload = results_payload(cfg, runs, wall_s)
    plots = write_plots(payload, out) + [Path(p) for p in extra_plots]
    payload["plots"] = [p.name for p in plots]
    json_path = write_text(out / "results.json", json.dumps(payload, indent=1, allow_nan=False) + "\n")
    md_path = write_text(out / "results.md", results_markdown(payload))
    return payload, [json_path, md_path, *plots]
