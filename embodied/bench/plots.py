"""The benchmark's plots, from the ``results.json`` payload: matplotlib's Agg through a bare
``Figure`` (no pyplot state), each PNG written whole or not at all.

- ``success.png``: success per task (and overall) of each policy, mean over seeds with its
  95 % interval, each seed a dot;
- ``recognition.png``: video-level recognition accuracy per task (and overall) of each
  recognizer, the same way;
- ``early_recognition.png``: accuracy against the fraction of the video seen, per recognizer,
  with the interval as a band;
- ``probe_recall.png``: Recall@1 both ways of the probe over the episode gallery (its own
  episode; its own episode among its instruction's), trained against random init, and chance;
- ``ablations.png``: overall success and recognition of the joint run and each ablation run.

The t-SNE of the shared space is drawn by training's last validation (``tsne.png`` of the joint
and probe runs); :func:`embodied.bench.runner.copy_tsne` puts it beside these.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embodied.bench.aggregate import FAMILIES
from embodied.bench.config import label
from embodied.fileio import replace_atomically

COLORS = {
    "policy": "#8c8c8c",
    "recognizer": "#8c8c8c",
    "joint": "#1f77b4",
    "probe": "#2ca02c",
    "probe_random": "#bdbdbd",
}


def save(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG atomically (a temporary file, then a rename)."""
    return replace_atomically(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def bars(
    path: Path,
    stats: dict[str, dict],
    keys: list[tuple[str, str]],
    methods: list[str],
    ylabel: str,
    title: str,
    chance: float | None = None,
) -> Path:
    """Grouped bars: one group per (key, label), one bar per method (mean, interval, seed dots)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 0.45 * len(keys) * len(methods) + 2.0), 4.0))
    ax = fig.add_subplot()
    width = 0.8 / len(methods)
    x = np.arange(len(keys))
    for j, method in enumerate(methods):
        entries = [stats.get(method, {}).get(key) for key, _ in keys]
        pos = x - 0.4 + width * (j + 0.5)
        mean = np.array([e["mean"] if e else np.nan for e in entries])
        low = np.array([e["low"] if e and e["low"] is not None else np.nan for e in entries])
        high = np.array([e["high"] if e and e["high"] is not None else np.nan for e in entries])
        err = np.stack([mean - low, high - mean])  # (2, K); NaN: no interval (one seed)
        color = COLORS.get(method, f"C{j % 9 + 1}")  # ablation runs: the colour cycle after joint's C0
        ax.bar(pos, mean, width * 0.9, color=color, label=label(method))
        ax.errorbar(pos, mean, yerr=np.nan_to_num(err), fmt="none", ecolor="black", capsize=3, lw=1)
        for p, e in zip(pos, entries, strict=True):
            if e:
                ax.scatter([p] * len(e["values"]), e["values"], s=10, color="black", zorder=3)
    if chance is not None:
        ax.axhline(chance, color="black", ls="--", lw=1, label="chance")
    rotate = len(keys) > 4
    ax.set_xticks(
        x, [label for _, label in keys], rotation=30 if rotate else 0, ha="right" if rotate else "center"
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save(fig, path)


def early_curve(path: Path, stats: dict[str, dict], methods: list[str]) -> Path | None:
    """Accuracy against the fraction of each validation video seen, per method, interval as a band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.0))
    ax = fig.add_subplot()
    drawn = False
    for method in methods:
        early = {
            float(k.split("/", 1)[1]): v for k, v in stats.get(method, {}).items() if k.startswith("early/")
        }
        if not early:
            continue
        f = np.array(sorted(early))
        mean = np.array([early[x]["mean"] for x in f])
        baseline = method in ("policy", "recognizer", "probe_random")
        style = dict(ls="--", marker="s") if baseline else dict(ls="-", marker="o")
        ax.plot(f, mean, color=COLORS.get(method), label=label(method), **style)
        low = np.array([early[x]["low"] if early[x]["low"] is not None else np.nan for x in f])
        high = np.array([early[x]["high"] if early[x]["high"] is not None else np.nan for x in f])
        if np.isfinite(low).all():
            ax.fill_between(f, np.clip(low, 0, 1), np.clip(high, 0, 1), color=COLORS.get(method), alpha=0.2)
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("fraction of the video seen")
    ax.set_ylabel("video-level accuracy")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(0, 1.02)
    ax.set_title("early recognition (validation videos)")
    ax.legend(fontsize=8, frameon=False, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return save(fig, path)


def write_plots(payload: dict, out: Path) -> list[Path]:
    """Every plot the payload has numbers for; the paths written."""
    written: list[Path] = []
    summary = payload["summary"]
    tasks = payload["tasks"]
    if "success" in summary:
        keys = [(f"tasks/{t}", t) for t in tasks] + [("overall", "overall")]
        written.append(
            bars(
                out / "success.png",
                summary["success"],
                keys,
                [m for m in FAMILIES["success"] if m in summary["success"]],
                "success rate",
                "manipulation success per task (mean over seeds, 95 % CI)",
            )
        )
    if "recognition" in summary:
        methods = [m for m in FAMILIES["recognition"] if m in summary["recognition"]]
        keys = [(f"tasks/{t}", t) for t in tasks] + [("video", "overall")]
        written.append(
            bars(
                out / "recognition.png",
                summary["recognition"],
                keys,
                methods,
                "video-level accuracy",
                "action recognition per task (validation videos, mean over seeds, 95 % CI)",
            )
        )
        curve = early_curve(out / "early_recognition.png", summary["recognition"], methods)
        if curve is not None:
            written.append(curve)
    if "alignment" in summary:
        stats = summary["alignment"]
        if any("recall@1_episode_u2e" in v for v in stats.values()):  # the gallery, every level
            keys = [
                (f"{stem}_{d}", f"{arrow} {name}")
                for stem, name in (("recall@1_episode", "episode"), ("within_instruction@1", "in instr."))
                for d, arrow in (("u2e", "U→E"), ("e2u", "E→U"))
            ]
            chance_key, title = "chance@1_episode", "probe over the episode gallery: trained vs random init"
        else:
            keys = [("recall@1_u2e", "Recall@1 U→E"), ("recall@1_e2u", "Recall@1 E→U")]
            chance_key, title = "chance@1", "probe of frozen features: trained vs random init"
        chances = [v[chance_key]["mean"] for v in stats.values() if chance_key in v]
        written.append(
            bars(
                out / "probe_recall.png",
                stats,
                keys,
                [m for m in FAMILIES["alignment"] if m in stats],
                "Recall@1",
                title,
                chance=float(np.mean(chances)) if chances else None,
            )
        )
    if payload.get("ablations"):
        # the policy alone too: a control is read against both ends of the mirror's gain
        stats = {
            m: {f"{f}/{k}": v for f, by in summary.items() for k, v in by.get(m, {}).items()}
            for m in ("policy", "joint")
        }
        for method, a in payload["ablations"].items():
            stats[method] = {f"{f}/{k}": v for f, by in a["summary"].items() for k, v in by.items()}
        keys = [("success/overall", "success"), ("recognition/video", "recognition (video)")]
        keys += [("recognition/clip", "recognition (clip)")]
        written.append(
            bars(
                out / "ablations.png",
                stats,
                keys,
                list(stats),
                "rate",
                f"{(payload.get('ablation_title') or 'ablations of the mirror head').lower()} "
                "(mean over seeds, 95 % CI)",
            )
        )
    return written
