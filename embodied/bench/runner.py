"""Run the comparison: for every seed, train and evaluate every method; resume what finished.

    summary = run_bench(load_preset("quick"))

Layout of ``cfg.out``::

    <method>/seed<k>/        the training run (embodied-train's folder: config.yaml, checkpoints/,
                             summary.json, tsne.png for joint and probe) and bench.json, written
                             last: the run's evaluation, which marks the (method, seed) finished
    ablation/<name>/seed<k>/ the ablation runs (``ablations``): the joint run with one override set
    results.json, results.md, *.png       the aggregate (embodied.bench.report)

One seed after the other, its methods in the order of :data:`~embodied.bench.config.METHODS`
(the probe needs that seed's policy and recognizer runs); then, with ``ablations``, every
ablation run of every seed. That is the default launcher; ``launcher.jobs: N`` runs N at once
here and ``launcher.name: slurm`` each as a SLURM job (:mod:`embodied.bench.launchers`,
:mod:`embodied.bench.slurm`), a run always after those whose checkpoints it reads. Every
method trains through :func:`embodied.train.train` (:func:`run_one`) with the typed config:
its own YAML and overrides, then ``shared`` (policy, recognizer, joint), then an ablation's
own overrides, then what the bench fixes (the data, the seed, the output folder, the device,
no rollouts during training).

Evaluation of a finished run (:func:`evaluate_run`), from its ``checkpoints/last.pt``:

- a policy (policy, joint): rollouts of every trained task, ``eval.episodes`` each from seed
  ``eval.seed_start`` on, the same seeds for every method and training seed (paired), all
  above the demonstration seeds;
- a recognizer (recognizer, joint): :func:`embodied.eval.recognition.evaluate_recognizer`
  on the valid split of the demonstrations: video- and clip-level accuracy, per task, and the
  early-recognition curve;
- a probe: from the run's last validation, retrieval over the fixed gallery of one pair per
  validation episode at the episode, instruction and class levels and within an instruction,
  both ways, each with its chance level (older runs without it: Recall@1 of the pairs).

Resume: a (method, seed) with a ``bench.json`` made with the same settings is skipped; with
other settings it is an error (delete the folder or choose another ``out``); a run killed
during training continues from its last checkpoint; one killed during its evaluation is
evaluated again.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from embodied.bench.config import (
    ABLATION,
    COMPARED_METHODS,
    METHOD_OBJECTIVES,
    PROBES,
    BenchConfig,
    base_method,
    label,
    load_ablations,
    load_comparisons,
)
from embodied.config import apply_overrides, from_dict, load_yaml, to_dict
from embodied.errors import UserError
from embodied.fileio import json_safe, replace_atomically, write_text
from embodied.paths import resolve_resource

RUN_FORMAT = "embodied-bench-run"
RUN_FORMAT_VERSION = 1
MARKER = "bench.json"
"""Written last in a run folder: the (method, seed) is finished."""

FREE_SETTINGS = (
    "eval.workers",
    "eval.envs_per_worker",
    "eval.policy_in_workers",
    "train.out",
    "train.device",
    "train.data.paths",
    "train.data.num_workers",
    "train.data.image_cache_bytes",
    "train.probe.policy_ckpt",
    "train.probe.recognizer_ckpt",
    "train.wandb",
)
"""Settings a finished run may differ in and still count: where things are (a moved bench
folder or dataset) and how fast they run do not change its numbers."""

COMPARED = {"joint": ("policy", "recognizer")}
"""The joint run must train its policy as the policy run does and its recognizer as the
recognizer run does, or the paired differences compare more than the alignment."""


def log(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- configs
def run_dir(cfg: BenchConfig, method: str, seed: int) -> Path:
    return Path(cfg.out) / method / f"seed{seed}"


def train_config(cfg: BenchConfig, method: str, seed: int):
    """The :class:`~embodied.train.TrainConfig` of ``method`` at training seed ``seed``."""
    from embodied.train.config import TrainConfig
    from embodied.train.objective import registered

    kind = base_method(method)
    run = cfg.probe if kind in PROBES else getattr(cfg, kind)
    path = resolve_resource(run.config, "configs")
    raw = load_yaml(path)
    overrides = list(run.overrides) + (list(cfg.shared) if kind in COMPARED_METHODS else [])
    if method.startswith(ABLATION):
        overrides += ablation_runs(cfg)[method]
    apply_overrides(raw, overrides)
    raw.setdefault("data", {})["paths"] = list(cfg.data.paths)
    raw.update(seed=seed, out=str(run_dir(cfg, method, seed)), device=cfg.device, rollout_every=0)
    objectives = registered()
    frozen = objectives[raw["mode"]].frozen if raw.get("mode") in objectives else ()
    if frozen:  # the frozen models: this seed's runs of the methods that train them alone
        probe = raw.setdefault("probe", {})
        probe.update({f"{name}_ckpt": str(run_dir(cfg, name, seed)) for name in sorted(frozen)})
        if kind in PROBES:
            probe["init"] = PROBES[kind]
    where = f"{path} ({method} of preset {cfg.name})"
    tcfg = from_dict(TrainConfig, raw, where)
    if method.startswith(ABLATION):  # a variant of the joint run or a control in its place: a policy
        if "policy" not in tcfg.objective.trains:
            raise UserError(
                f"{where}: the {method} run trains no policy (mode {tcfg.mode}): nothing to compare"
            )
        return tcfg
    expected = METHOD_OBJECTIVES[kind]
    if tcfg.mode != expected:
        raise UserError(f"{where}: the {method} run needs a {expected} config, got mode {tcfg.mode}")
    return tcfg


def ablation_runs(cfg: BenchConfig) -> dict[str, list[str]]:
    """``{"ablation/<name>": overrides}`` of the preset's ablation file (none without one)."""
    if cfg.ablations is None:
        return {}
    load_comparisons(cfg.ablations)  # a bad `compare:` fails before anything trains, not in the report
    return {f"{ABLATION}{name}": overrides for name, overrides in load_ablations(cfg.ablations).items()}


def check_comparable(cfg: BenchConfig) -> None:
    """The joint run must match the policy run on the policy's settings and the recognizer run
    on the recognizer's (model, data window or clip, batch size, steps, optimiser)."""
    joint = to_dict(train_config(cfg, "joint", 0))
    keys = {
        "policy": ("policy", "data.obs_horizon", "data.action_horizon"),
        "recognizer": ("recognizer", "data.clip_len", "data.clip_stride", "data.camera"),
    }
    common = ("data.batch_size", "steps", "optim")
    for other in COMPARED["joint"]:
        theirs = to_dict(train_config(cfg, other, 0))
        for key in (*keys[other], *common):
            diff = _difference(key, _get(joint, key), _get(theirs, key))
            if diff:
                raise UserError(
                    f"preset {cfg.name}: the joint and {other} runs would not compare: {diff} "
                    f"(joint vs {other}); align them, e.g. under `shared`"
                )


def _get(tree: dict, dotted: str):
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _difference(key: str, a, b) -> str:
    """The first dotted key where ``a`` and ``b`` differ, as ``key: a vs b``; '' when equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            found = _difference(f"{key}.{k}", a.get(k), b.get(k))
            if found:
                return found
        return ""
    return "" if a == b else f"{key}: {a!r} vs {b!r}"


# --------------------------------------------------------------------------- data
def ensure_data(cfg: BenchConfig) -> None:
    """Collect the preset's recipe into its folder when files are missing (complete ones are kept)."""
    from embodied.data.collect import CollectConfig, collect
    from embodied.data.schema import expand_paths

    if cfg.data.recipe is None:
        expand_paths(cfg.data.paths)  # a missing file or folder is a UserError here, before training
        return
    path = resolve_resource(cfg.data.recipe, "datasets/recipes")
    recipe = from_dict(CollectConfig, {**load_yaml(path), "out": cfg.data.paths[0]}, str(path))
    log(f"demonstrations: {recipe.out} (recipe {path.name}; missing files are collected)")
    collect(recipe)


# --------------------------------------------------------------------------- one run
def settings_of(cfg: BenchConfig, tcfg) -> dict:
    """What a finished run's numbers depend on besides its data: its training config and the
    evaluation settings."""
    return {"train": to_dict(tcfg), "eval": to_dict(cfg.eval)}


def stale_data(marker: dict, data: dict) -> str | None:
    """Why a finished run's data (``marker["data"]``, :func:`~embodied.data.identity.dataset_identity`)
    is not ``data``; None when it is the same."""
    made_on = marker.get("data")
    if made_on is None:
        return "it records no data identity (made before runs recorded it)"
    for name in sorted(set(made_on) | set(data)):
        old, new = made_on.get(name), data.get(name)
        if old is None or new is None:
            return f"{name} {'is new' if old is None else 'is gone'} in {', '.join(data) or 'the data'}"
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if changed:
            return f"{name} differs in {', '.join(changed)} (collected again or with other settings)"
    return None


def _current(settings: dict, where: Path) -> dict:
    """A finished run's settings read through today's config classes: a field added since it
    ran takes its default (the behaviour the run had) and is no difference."""
    from embodied.bench.config import BenchEval
    from embodied.train.config import TrainConfig

    return {
        "train": to_dict(from_dict(TrainConfig, settings.get("train", {}), str(where))),
        # Markers written when 0 stood for a default are upgraded (EvalSettings.upgrade_raw).
        "eval": to_dict(from_dict(BenchEval, settings.get("eval", {}), str(where))),
    }


def read_marker(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
        return None
    return data


def evaluate_run(cfg: BenchConfig, method: str, folder: Path) -> tuple[dict, dict]:
    """(metrics, details) of a trained run: see the module doc; metrics feed the aggregate."""
    import torch

    from embodied.eval.checkpoint import evaluate_checkpoint
    from embodied.train.checkpoint import checkpoint_path, load_model
    from embodied.train.objective import checkpoint_objective

    device = "cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu"
    loaded = load_model(folder, device=device)
    objective = checkpoint_objective(loaded.kind, str(checkpoint_path(folder)))
    ev = evaluate_checkpoint(  # what the run trained is evaluated: a policy rolled out, a recognizer
        loaded,
        cfg.eval,
        rollouts="policy" in objective.trains,
        recognize="recognizer" in objective.trains,
        recognizer_data=cfg.data.paths,
    )
    spec = ev.spec
    metrics: dict = {}
    details: dict = {"classes": list(spec.classes), "tasks": spec.task_names}
    if ev.results is not None:
        result = ev.results
        metrics["success"] = {
            "overall": result.success_rate,
            "tasks": {t: s.success_rate for t, s in result.tasks.items()},
        }
        details["rollouts"] = {
            "episodes": result.overall.episodes,
            "successes": result.overall.successes,
            "ci": [result.ci_low, result.ci_high],
            "errors": result.overall.errors,
            "tasks": {t: dataclasses.asdict(s) for t, s in result.tasks.items()},
            "env_steps": result.env_steps,
            "steps_per_s": result.steps_per_s,
        }
    if ev.recognition is not None:
        report = ev.recognition
        metrics["recognition"] = {
            "video": report.video_accuracy,
            "clip": report.clip_accuracy,
            "tasks": per_task(report, spec),
            "early": {str(x["fraction"]): x["accuracy"] for x in report.early_recognition},
        }
        if report.class_level:  # the instruction is what is recognised; the class beside it
            metrics["recognition"]["class"] = {
                "video": report.class_level["video_accuracy"],
                "clip": report.class_level["clip_accuracy"],
            }
        details["recognition"] = report.to_json()
    summary = json.loads((folder / "summary.json").read_text()) if (folder / "summary.json").exists() else {}
    val = summary.get("val", {})
    if "recall@1_u2e" in val:
        # the fixed gallery (one pair per validation episode, every level) when the run has it
        gallery = {k.removeprefix("gallery/"): v for k, v in val.items() if k.startswith("gallery/")}
        rates = gallery or {k: val.get(k) for k in ("recall@1_u2e", "recall@1_e2u", "chance@1")}
        rates["cka"] = val.get("cka")
        details["alignment"] = rates | {
            k: val.get(k) for k in ("recall@5_u2e", "recall@5_e2u", "pair_cos", "pairs")
        }
        if objective.probes:  # joint's head trained at its positives: not the probe's
            metrics["alignment"] = rates
    details["train"] = {k: summary.get(k) for k in ("steps", "wall_time_s", "best_val_loss", "device")}
    return metrics, details


def per_task(report, spec) -> dict[str, float | None]:
    """Video-level accuracy of each task from a recognizer report at either level: at the
    instruction level each task's is its instruction's (a Meta-World task has one)."""
    if report.level != "instruction":
        return {c: v["accuracy"] for c, v in report.per_class.items()}
    names = spec.task_names
    return {
        task: report.per_class.get(spec.instructions[spec.task_instructions[i]], {}).get("accuracy")
        for i, task in enumerate(names)
        if i < len(spec.task_instructions)
    }


def finished_marker(
    cfg: BenchConfig, method: str, seed: int, data: dict, settings: dict | None = None
) -> dict | None:
    """The marker of (method, seed) when it finished with the same settings (``settings_of``,
    made here when not given) on the same ``data``; None when it has not finished; a
    :class:`UserError` when it finished with others."""
    from embodied.train.checkpoint import config_differences

    folder = run_dir(cfg, method, seed)
    marker = read_marker(folder / MARKER)
    if marker is None:
        return None
    if settings is None:
        settings = settings_of(cfg, train_config(cfg, method, seed))
    diffs = config_differences(_current(marker["settings"], folder / MARKER), settings, FREE_SETTINGS)
    stale = stale_data(marker, data)
    if not diffs and stale is None:
        return marker
    why = f"other settings ({diffs[0]}, the finished run's first)" if diffs else f"other data: {stale}"
    raise UserError(f"{folder} holds a finished run made with {why}; delete it or choose another out")


def run_one(cfg: BenchConfig, method: str, seed: int, data: dict) -> tuple[dict, str]:
    """Train (or resume) and evaluate one (method, seed), or skip it when finished with the same
    settings on the same ``data`` (:func:`~embodied.data.identity.dataset_identity` of the
    preset's files); (marker, status)."""
    from embodied.provenance import provenance
    from embodied.train.checkpoint import checkpoint_path
    from embodied.train.loop import train

    folder = run_dir(cfg, method, seed)
    tcfg = train_config(cfg, method, seed)
    settings = settings_of(cfg, tcfg)
    marker = finished_marker(cfg, method, seed, data, settings)
    if marker is not None:
        return marker, "skipped"
    name = f"seed {seed}, {label(method)}"
    resume = checkpoint_path(folder).is_file()
    log(f"{name}: {'resuming' if resume else 'training'} ({tcfg.steps} steps) in {folder}")
    started = time.perf_counter()
    summary = train(tcfg, resume=resume, overwrite=not resume)
    # a resumed run's total, the processes before this one included (to their last checkpoint)
    train_s = summary.get("total_wall_time_s") or (time.perf_counter() - started)
    log(f"{name}: evaluating")
    started = time.perf_counter()
    metrics, details = evaluate_run(cfg, method, folder)
    marker = {
        "format": RUN_FORMAT,
        "format_version": RUN_FORMAT_VERSION,
        "method": method,
        "seed": seed,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "train_wall_s": round(train_s, 2),
        "eval_wall_s": round(time.perf_counter() - started, 2),
        "metrics": metrics,
        "details": details,
        "settings": settings,
        "data": data,
        # the code, libraries and machine the run was trained and evaluated with
        "provenance": provenance(threads=tcfg.threads or None),
    }
    write_text(folder / MARKER, json.dumps(json_safe(marker), indent=1, allow_nan=False) + "\n")
    log(f"{name}: done ({_brief(metrics)})")
    return marker, "ran"


def _brief(metrics: dict) -> str:
    parts = []
    if "success" in metrics and metrics["success"]["overall"] is not None:
        parts.append(f"success {metrics['success']['overall']:.2f}")
    if "recognition" in metrics:
        parts.append(f"video accuracy {metrics['recognition']['video']:.2f}")
    if "alignment" in metrics:
        a = metrics["alignment"]
        if "recall@1_episode_u2e" in a:
            parts.append(
                f"gallery Recall@1 episode u->e {a['recall@1_episode_u2e']:.2f}, e->u "
                f"{a['recall@1_episode_e2u']:.2f} (chance {a['chance@1_episode']:.2f})"
            )
        else:
            parts.append(f"Recall@1 u->e {a['recall@1_u2e']:.2f}, e->u {a['recall@1_e2u']:.2f}")
    return ", ".join(parts) or "no numbers"


# --------------------------------------------------------------------------- the bench
def collect_finished(cfg: BenchConfig) -> dict[str, dict[int, dict]]:
    """``{method: {seed: marker}}`` of every finished run in ``cfg.out`` for the preset's seeds."""
    out: dict[str, dict[int, dict]] = {}
    for method in (*cfg.methods, *ablation_runs(cfg)):
        for seed in range(cfg.seeds):
            marker = read_marker(run_dir(cfg, method, seed) / MARKER)
            if marker is not None:
                out.setdefault(method, {})[seed] = marker
    return out


def copy_tsne(cfg: BenchConfig) -> list[Path]:
    """The t-SNE of the shared space of the first seed's joint (and trained probe) run, beside the results."""
    copied = []
    for method in ("joint", "probe"):
        for seed in range(cfg.seeds):
            src = run_dir(cfg, method, seed) / "tsne.png"
            if src.is_file():
                dst = Path(cfg.out) / f"tsne_{method}.png"
                copied.append(replace_atomically(dst, lambda tmp, src=src: shutil.copyfile(src, tmp)))
                break
    return copied
