"""The whole grid: :func:`run_bench` plans every (method, seed) run of a preset, sends them where
``cfg.launcher`` says (:mod:`.launchers`: one after another here, several at once, or SLURM jobs
through :mod:`.slurm`), then writes the report of every finished run (:mod:`.report`). One run
is :func:`~embodied.bench.runner.run_one`, the same wherever it goes.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from embodied.bench import launchers
from embodied.bench.config import BenchConfig
from embodied.bench.report import write_results
from embodied.bench.runner import (
    ablation_runs,
    check_comparable,
    collect_finished,
    copy_tsne,
    ensure_data,
    log,
    run_one,
)
from embodied.config import to_dict
from embodied.data.identity import dataset_identity
from embodied.errors import UserError
from embodied.fileio import write_text


def run_bench(
    cfg: BenchConfig,
    report_only: bool = False,
    only_seeds: list[int] | None = None,
    only_methods: list[str] | None = None,
    wait: bool = True,
) -> dict:
    """Train, evaluate and aggregate every (method, seed) of ``cfg``; write the results.

    Where the runs go is ``cfg.launcher`` (:mod:`embodied.bench.launchers`): one after another
    here (the default), several at once here, or SLURM jobs; the report is the same.
    ``only_seeds`` / ``only_methods``: train and evaluate these training seeds / methods only
    (a shard: several processes or machines may each take some of one bench folder; the results
    cover every finished run, so the last shard to finish writes them whole). ``wait=False``
    (SLURM): submit and return; the same call again collects what finished. Returns ``{"ran":
    [(method, seed)], "skipped": [...], "failed": [Failure], "submitted": [((method, seed), job
    id)], "queued": [runs still on the cluster], "files": [paths], "results": payload}``. One
    after another a failing run stops the bench; several at once or on SLURM the others go on
    and the failures are returned. Ctrl-C writes the results of the runs finished so far, then
    stops.
    """
    seeds = list(range(cfg.seeds)) if only_seeds is None else sorted(set(only_seeds))
    outside = [s for s in seeds if not 0 <= s < cfg.seeds]
    if outside:
        raise UserError(f"seed {outside[0]} is not one of the preset's training seeds 0..{cfg.seeds - 1}")
    started = time.perf_counter()
    outcome = launchers.Outcome()
    files, payload = [], {}
    out = Path(cfg.out)
    ablations = ablation_runs(cfg)  # a bad ablation file fails here, before any training
    if not report_only:
        runs = launchers.plan(cfg, seeds, only_methods)  # an unknown method fails here
        check_comparable(cfg)
        ensure_data(cfg)
        data = dataset_identity(cfg.data.paths)
        out.mkdir(parents=True, exist_ok=True)
        # the ablation file's override sets themselves: the file may be gone when the preset is read
        preset = to_dict(cfg) | ({"ablation_runs": ablations} if ablations else {})
        write_text(out / "preset.yaml", _yaml(preset))
    try:
        if not report_only and cfg.launcher.name == "slurm":
            from embodied.bench.slurm import run_slurm

            outcome = run_slurm(cfg, runs, data, wait=wait)
        elif not report_only and cfg.launcher.jobs > 1:
            outcome = launchers.run_local(cfg, runs, data, cfg.launcher.jobs)
        elif not report_only:
            # The comparison first, every seed; then the ablations, every seed (plan's order).
            todo = launchers.sort_out(cfg, runs, data, outcome)
            for run in runs:
                if run in todo:
                    _, status = run_one(cfg, run.method, run.seed, data)
                    (outcome.ran if status == "ran" else outcome.skipped).append(run.key)
    finally:
        finished = collect_finished(cfg)
        if finished:
            tsne = copy_tsne(cfg)
            payload, files = write_results(cfg, finished, time.perf_counter() - started, tsne)
            log(f"wrote {', '.join(str(f) for f in files)}")
        elif report_only:
            raise UserError(f"{cfg.out}: no finished run to report")
    if outcome.skipped:
        log(f"skipped {len(outcome.skipped)} finished run(s); ran {len(outcome.ran)}")
    return {
        "ran": outcome.ran,
        "skipped": outcome.skipped,
        "failed": outcome.failed,
        "submitted": outcome.submitted,
        "queued": outcome.queued,
        "files": files,
        "results": payload,
    }


def _yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False)
