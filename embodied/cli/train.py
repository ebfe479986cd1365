"""``embodied-train``: train a policy, a recognizer, both with alignment, or probe frozen models.

    embodied-train policy_quick                          # a config from configs/
    embodied-train configs/joint_quick.yaml steps=2000 optim.lr=3e-4 mirror.positives=episode
    embodied-train joint_quick --out runs/joint_seed1 seed=1
    embodied-train --resume runs/joint_seed1             # continue exactly where it stopped
    embodied-train --resume runs/joint_seed1 steps=4000  # ... and train longer
    torchrun --nproc_per_node=2 -m embodied.cli.train joint_quick   # one process per device

CONFIG is a YAML file or the name of one in configs/; ``key.sub=value`` overrides any field
(values read as YAML). An output folder that exists is refused unless --resume continues it
or --overwrite replaces it. A resumed run takes its config from the checkpoint; given a
CONFIG too, the two must agree on everything but the settings listed under --resume.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from embodied.config import apply_overrides, describe, from_dict, load_config, overridden
from embodied.errors import Stopped, UserError, run_cli
from embodied.paths import checkpoint_path, resolve_resource, resource_names

if TYPE_CHECKING:
    from embodied.train.config import TrainConfig

# The training config is imported where it is used, the objectives only to train: they import
# torch and the models (seconds), which parsing a command line, finding its CONFIG and writing
# --help must not wait for.


def train_configs() -> list[str]:
    """The names in configs/ that are training configs (they set a ``mode``; the ablation files
    there are override sets of the bench)."""
    from embodied.config import load_yaml

    return [
        name for name in resource_names("configs") if "mode" in load_yaml(resolve_resource(name, "configs"))
    ]


RESUME_HELP = "continue the run in DIR from checkpoints/last.pt; may change only: "


def objective_summaries() -> dict[str, str]:
    """mode -> summary of every registered objective, in registration order, read from the source
    of the entries (``name`` and ``summary`` of each ``@register`` class in the modules that
    :mod:`embodied.train.objectives` imports, in its order), since importing them imports torch
    and the models; tests/test_startup.py checks it against the registry."""
    folder = Path(__file__).resolve().parents[1] / "train" / "objectives"
    package = ast.parse((folder / "__init__.py").read_text(encoding="utf-8"))
    modules = [a.name for node in package.body if isinstance(node, ast.ImportFrom) for a in node.names]
    summaries = {}
    for module in modules:
        for node in ast.parse((folder / f"{module}.py").read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(d) == "register" for d in node.decorator_list
            ):
                attrs = {
                    stmt.targets[0].id: stmt.value.value
                    for stmt in node.body
                    if isinstance(stmt, ast.Assign)
                    and isinstance(stmt.targets[0], ast.Name)
                    and isinstance(stmt.value, ast.Constant)
                }
                summaries[attrs["name"]] = attrs["summary"]
    return summaries


class _Parser(argparse.ArgumentParser):
    """Writes its long help (every objective and every setting, read from the training config and
    the objectives' source) only when it is asked for."""

    def format_help(self) -> str:
        from embodied.train.config import RESUME_FREE_KEYS, TrainConfig

        self.description = (
            __doc__
            + "\nObjectives (mode: what trains):\n"
            + "\n".join(f"  {name}: {summary}" for name, summary in objective_summaries().items())
            + "\n\nSettings (key: doc):\n  "
            + "\n  ".join(describe(TrainConfig))
        )
        for action in self._actions:
            if action.dest == "resume":
                action.help = RESUME_HELP + ", ".join(RESUME_FREE_KEYS)
        return super().format_help()


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="embodied-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "config",
        nargs="?",
        help="config: a YAML path or a name in configs/ (optional with --resume): "
        + ", ".join(train_configs()),
    )
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides")
    p.add_argument(
        "--resume",
        metavar="DIR",
        help=RESUME_HELP + "(the settings listed by --help)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the outputs of an earlier run in the folder"
    )
    p.add_argument("--out", metavar="DIR", help="output folder (overrides the config's out)")
    return p


def command_line(args: argparse.Namespace) -> tuple[Path | None, list[str]]:
    """The CONFIG file (None: the stored one of --resume) and the overrides, checked as far as
    can be without torch: the file exists, the run to resume has a checkpoint."""
    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config and not Path(config).exists():
        overrides.insert(0, config)  # `--resume DIR key=value`: no CONFIG, only overrides
        config = None
    if args.resume:
        if args.out:
            raise UserError("--out and --resume exclude each other (a resumed run stays in its folder)")
        if config is None and not checkpoint_path(args.resume).is_file():
            raise UserError(f"{args.resume}: no checkpoints/last.pt to resume from")
    elif config is None:
        raise UserError("a CONFIG (a YAML file or a name in configs/) is needed, or --resume DIR")
    return (resolve_resource(config, "configs") if config is not None else None), overrides


def train_config(args: argparse.Namespace) -> TrainConfig:
    from embodied.train.config import TrainConfig

    path, overrides = command_line(args)
    if args.resume:
        if path is not None:
            cfg = load_config(TrainConfig, path, overrides)
        else:
            from embodied.train.checkpoint import read_checkpoint

            payload = read_checkpoint(args.resume)
            raw = apply_overrides(json.loads(payload["config"]), overrides)
            cfg = from_dict(TrainConfig, raw, f"{args.resume} (stored config)", given=overridden(overrides))
        return dataclasses.replace(cfg, out=str(args.resume))
    cfg = load_config(TrainConfig, path, overrides)
    return dataclasses.replace(cfg, out=args.out) if args.out else cfg


def _alone() -> bool:
    """No launcher started this process among others (torchrun sets WORLD_SIZE, srun a step's
    task count), so an error of the command line is this process's to report."""
    return os.environ.get("WORLD_SIZE", "1") == "1" and os.environ.get("SLURM_STEP_NUM_TASKS", "1") == "1"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_intermixed_args(argv)  # flags may follow the overrides

    def run() -> int:
        if _alone():  # a missing CONFIG or run is reported before torch is imported
            command_line(args)
        from embodied.train.distributed import launched_rank, same_everywhere
        from embodied.train.loop import train

        try:
            with same_everywhere():  # under torchrun: rank 0 alone reports a bad command line
                cfg = train_config(args)
            train(cfg, resume=bool(args.resume), overwrite=args.overwrite)  # rollouts: the default evaluator
        except KeyboardInterrupt:
            if launched_rank():  # Ctrl-C reaches every process of a torchrun run: rank 0 says so
                raise Stopped(status=130) from None
            raise
        return 0

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
