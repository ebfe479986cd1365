"""``embodied-bench``: the paper's comparison across methods and seeds, with tables and plots.

embodied-bench --preset quick                       # 3 tasks, small models, 3 seeds (CPU, ~5 min)
embodied-bench --preset quick --seeds 5 eval.episodes=20
embodied-bench --preset mt10                        # MT10 on a CPU (about an hour)
embodied-bench --preset large device=cuda           # bigger models, more steps, for a GPU
embodied-bench --preset quick --ablations           # also the paper's ablations (configs/ablations.yaml)
embodied-bench --preset quick --report-only         # re-aggregate the finished runs only
embodied-bench --preset visual --only-seeds 0 2 4 & embodied-bench --preset visual --only-seeds 1 3
                                                    # two shards side by side (one core each)

For each training seed it trains the policy alone, the recognizer alone, both with the mirror
head, and the probe of the first two (trained vs random init); rolls each policy out on
held-out seeds and scores each recognizer on the validation demonstrations. Writes
<out>/<method>/seed<k>/ (the runs, each with bench.json once evaluated), results.json,
results.md (mean and 95 % interval per method, the paired difference mirror - baseline per
task) and PNG plots. With --ablations, then trains and evaluates the joint run once per
override set of the ablation file, for every seed, under <out>/ablation/<name>/seed<k>/, and
reports each against the joint run. Run it again to resume: finished (method, seed) runs are
skipped, a run stopped during training continues from its last checkpoint.

PRESET is a YAML file or a name in configs/bench/; ``key.sub=value`` overrides any of its
fields (values read as YAML).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from embodied.errors import run_cli
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)

    def run() -> int:
        from embodied.bench import load_preset, run_bench
        from embodied.fileio import check_writable

        cfg = load_preset(args.preset, args.overrides)
        if args.seeds is not None:
            cfg = dataclasses.replace(cfg, seeds=args.seeds)
        if args.out:
            cfg = dataclasses.replace(cfg, out=args.out)
        if args.ablations:
            cfg = dataclasses.replace(cfg, ablations=args.ablations)
        check_writable(cfg.out, "the benchmark's output folder (out)")  # before hours of training
        result = run_bench(cfg, report_only=args.report_only, only_seeds=args.only_seeds)
        md = next((f for f in result["files"] if f.name == "results.md"), None)
        if md is not None:
            print(md.read_text())
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
