"""``embodied-bench``: the paper's comparison across methods and seeds, with tables and plots.

embodied-bench --preset quick                       # 3 tasks, small models, 3 seeds (CPU, ~5 min)
embodied-bench --preset quick --seeds 5 eval.episodes=20
embodied-bench --preset mt10                        # MT10 on a CPU (about an hour)
embodied-bench --preset large device=cuda           # bigger models, more steps, for a GPU
embodied-bench --preset quick --ablations           # also the paper's ablations (configs/ablations.yaml)
embodied-bench --preset quick --report-only         # re-aggregate the finished runs only
embodied-bench --preset visual --jobs 2             # two runs at once on this machine (cores / 2 each)
embodied-bench --preset visual --launcher slurm --slurm-partition gpu --slurm-gpus-per-task 1
                                                    # one SLURM job per run (submitit); waits, then reports
embodied-bench --preset visual --launcher slurm --no-wait   # submit and return; the same command
                                                    # again collects what finished, submits what failed

For each training seed it trains the policy alone, the recognizer alone, both with the mirror
head, and the probe of the first two (trained vs random init); rolls each policy out on
held-out seeds and scores each recognizer on the validation demonstrations. Writes
<out>/<method>/seed<k>/ (the runs, each with bench.json once evaluated), results.json,
results.md (mean and 95 % interval per method, the paired difference mirror - baseline per
task) and PNG plots. With --ablations, then trains and evaluates the joint run once per
override set of the ablation file, for every seed, under <out>/ablation/<name>/seed<k>/, and
reports each against the joint run. Run it again to resume: finished (method, seed) runs are
skipped, a run stopped during training continues from its last checkpoint. The runs go one
after another here, N at once (--jobs N), or to a SLURM cluster (--launcher slurm, or the
preset's `launcher:` section); the report is the same. Several at once or on SLURM, a run that
fails is reported (on SLURM with its job, log and the log's last lines), the others go on, and
the command exits 1.

PRESET is a YAML file or a name in configs/bench/; ``key.sub=value`` overrides any of its
fields (values read as YAML).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from embodied.errors import UserError, run_cli
from embodied.paths import resource_names

# Heavy modules (torch, the models) are imported inside main(): rollout worker processes
# started by `spawn` or the forkserver import the console script's module, and should not pay for them.


def parser() -> argparse.ArgumentParser:
    from embodied.bench.config import BenchConfig
    from embodied.config import describe

    p = argparse.ArgumentParser(
        prog="embodied-bench",
        description=__doc__ + "\nSettings (key: doc):\n  " + "\n  ".join(describe(BenchConfig)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides of the preset")
    p.add_argument(
        "--preset",
        default="quick",
        help="a YAML file or a name in configs/bench/ (default quick): "
        + ", ".join(resource_names("configs/bench")),
    )
    p.add_argument("--seeds", type=int, help="training seeds 0..N-1 (overrides the preset's)")
    p.add_argument("--out", help="output folder (overrides the preset's)")
    p.add_argument(
        "--ablations",
        nargs="?",
        const="ablations",
        metavar="FILE",
        help="also run the ablation override sets of FILE (a YAML file or a name in configs/; "
        "default: ablations, the paper's) as overrides of the joint run",
    )
    p.add_argument(
        "--report-only", action="store_true", help="train nothing: write the results of the finished runs"
    )
    p.add_argument(
        "--only-seeds",
        type=int,
        nargs="+",
        metavar="K",
        help="train and evaluate only these training seeds (shards: run one process per share of the "
        "seeds on one out folder, after the data exists; the results cover every finished run)",
    )
    p.add_argument(
        "--only-methods",
        nargs="+",
        metavar="METHOD",
        help="train and evaluate only these methods (or ablation/<name> runs), a shard as --only-seeds",
    )
    where = p.add_argument_group("where the runs go (the preset's `launcher:` section; key: launcher.*)")
    where.add_argument("--launcher", choices=("local", "slurm"), help="this machine or a SLURM cluster")
    where.add_argument("--jobs", type=int, metavar="N", help="local: N runs at once (default 1)")
    where.add_argument(
        "--no-wait",
        action="store_true",
        help="slurm: submit and return (the same command again collects what finished)",
    )
    for flag, key, kind, text in SLURM_FLAGS:
        where.add_argument(flag, dest=key, type=kind, metavar=key.upper(), help=f"slurm: {text}")
    where.add_argument(
        "--slurm-additional",
        action="append",
        metavar="NAME=VALUE",
        help="slurm: a further sbatch option, e.g. account=abc (repeat for more; "
        "launcher.slurm_additional_parameters)",
    )
    return p


def minutes(text: str) -> int:
    """``90``, ``1:30:00`` or ``1-00:00`` (sbatch's --time forms with hours) as whole minutes."""
    if text.isdigit():
        return int(text)
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    try:
        if not days and len(parts) < 3:
            raise ValueError
        h, m, sec = ([int(x) for x in parts] + [0, 0])[:3]
        return int(days or 0) * 24 * 60 + h * 60 + m + (1 if sec else 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not minutes or [D-]HH:MM[:SS]") from None


SLURM_FLAGS = (
    ("--slurm-partition", "slurm_partition", str, "the partition"),
    ("--slurm-time", "timeout_min", minutes, "time limit per job, minutes or [D-]HH:MM[:SS]"),
    ("--slurm-cpus-per-task", "cpus_per_task", int, "cores per job (its training threads)"),
    ("--slurm-gpus-per-task", "gpus_per_task", int, "GPUs per job"),
    ("--slurm-mem", "mem_gb", float, "memory per job in GB"),
    ("--slurm-array-parallelism", "slurm_array_parallelism", int, "at most this many jobs at once"),
)
"""The launcher's SLURM settings as flags: (flag, launcher field (submitit's name), type, help)."""


def launcher_overrides(args: argparse.Namespace) -> list[str]:
    """The launcher flags as ``launcher.*`` overrides (checked as the preset's section is)."""
    out = []
    if args.launcher:
        out.append(f"launcher.name={args.launcher}")
    if args.jobs is not None:
        out.append(f"launcher.jobs={args.jobs}")
    for _, key, _, _ in SLURM_FLAGS:
        value = getattr(args, key)
        if value is not None:
            out.append(f"launcher.{key}={value}")
    for item in args.slurm_additional or ():
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise UserError(f"--slurm-additional takes NAME=VALUE, got {item!r}")
        out.append(f"launcher.slurm_additional_parameters.{name}={value}")
    return out


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)

    def run() -> int:
        from embodied.bench import load_preset, run_bench
        from embodied.fileio import check_writable

        cfg = load_preset(args.preset, [*args.overrides, *launcher_overrides(args)])
        for flag, name, value in (
            ("--seeds", "seeds", args.seeds),
            ("--out", "out", args.out or None),
            ("--ablations", "ablations", args.ablations or None),
        ):
            if value is not None:
                try:  # the config checks itself, as for the override form (seeds=0)
                    cfg = dataclasses.replace(cfg, **{name: value})
                except ValueError as err:
                    raise UserError(f"{flag} {value}: {err}") from None
        check_writable(cfg.out, "the benchmark's output folder (out)")  # before hours of training
        result = run_bench(
            cfg,
            report_only=args.report_only,
            only_seeds=args.only_seeds,
            only_methods=args.only_methods,
            wait=not args.no_wait,
        )
        md = next((f for f in result["files"] if f.name == "results.md"), None)
        if md is not None:
            print(md.read_text())
        if result["failed"]:
            failed = result["failed"]
            lines = [f"{len(failed)} run(s) did not finish (the same command again runs them again):"]
            print("\n".join(lines + [f.report() for f in failed]), file=sys.stderr)
            return 1
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
