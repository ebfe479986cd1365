"""``embodied-data``: collect demonstrations, and inspect, check, replay and export them.

embodied-data collect quick                       # a recipe from datasets/recipes/
embodied-data collect --tasks mt10 --episodes 50 --out datasets/mt10
embodied-data info datasets/quick
embodied-data validate datasets/quick/drawer-open-v3.hdf5
embodied-data upgrade datasets/old                  # format_version 1 -> 2 (class hierarchy), in place
embodied-data upgrade datasets/old --checksums      # and Fletcher-32 checksums on every dataset
embodied-data replay datasets/quick/drawer-open-v3.hdf5 --demo demo_0
embodied-data video datasets/quick/drawer-open-v3.hdf5 --demo demo_0 --out demo0.mp4
embodied-data video datasets/quick/drawer-open-v3.hdf5 --demo demo_0 --out demo0.mp4 --size 256
embodied-data export datasets/quick --format lerobot --out exports/quick   # a LeRobotDataset v3.0
embodied-data import exports/quick --format lerobot --out datasets/from_lerobot   # and back
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from embodied.config import describe, from_dict, load_yaml
from embodied.data.recipe import CollectConfig
from embodied.errors import UserError, run_cli
from embodied.paths import resolve_resource, resource_names


def _collect_parser(sub) -> None:
    p = sub.add_parser(
        "collect",
        help="run scripted experts and write one robomimic-format HDF5 per task",
        description="Run scripted experts and write one HDF5 per task. Settings come from a recipe "
        "(a YAML file, or a name in datasets/recipes/) and flags, flags winning.\n\n"
        + "\n".join(describe(CollectConfig)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "recipe",
        nargs="?",
        help="dataset recipe: a YAML path or a name in datasets/recipes/: "
        + ", ".join(resource_names("datasets/recipes")),
    )
    p.add_argument("--suite", help="simulation suite (a spec under envs/; default metaworld)")
    p.add_argument("--tasks", nargs="+", help="task names or sets (mt10, mt50, quick)")
    p.add_argument("--episodes", type=int, help="demonstrations per task")
    p.add_argument("--cameras", nargs="+", help="camera streams; the first is the observer camera")
    p.add_argument("--image-size", type=int, help="image side in pixels")
    p.add_argument(
        "--mesh-detail",
        choices=["full", "low"],
        help="how the cameras draw meshes: full (Meta-World's own look, the default) or low "
        "(large meshes simplified: small frames several times cheaper, ~1/255 off per pixel)",
    )
    p.add_argument("--seed", type=int, help="first episode seed")
    p.add_argument("--out", help="output folder")
    p.add_argument("--workers", type=int, help="worker processes")
    p.add_argument("--keep-failures", action="store_true", default=None, help="keep failed episodes too")
    p.add_argument(
        "--next-obs",
        action="store_true",
        default=None,
        help="also store next_obs (robomimic's offline-RL algorithms read it)",
    )
    p.add_argument("--action-noise", type=float, help="std of Gaussian noise on expert actions")
    p.add_argument("--horizon", type=int, help="episode step limit (0: the task default)")
    p.add_argument("--valid-fraction", type=float, help="share of demos in mask/valid")
    p.add_argument("--max-attempts", type=int, help="give up on a task after this many x episodes tries")
    p.add_argument("--overwrite", action="store_true", help="replace existing files made with other settings")


def collect_config(args: argparse.Namespace) -> CollectConfig:
    raw: dict = {}
    where = "collect flags"
    if args.recipe:
        path = resolve_resource(args.recipe, "datasets/recipes")
        raw = load_yaml(path)
        where = str(path)
        raw.setdefault("out", f"datasets/{path.stem}")
    for f in dataclasses.fields(CollectConfig):
        value = getattr(args, f.name, None)
        if value is not None:
            raw[f.name] = value
    return from_dict(CollectConfig, raw, where)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="embodied-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="verb", required=True)
    _collect_parser(sub)
    p = sub.add_parser("info", help="summarise demonstration files")
    p.add_argument("paths", nargs="+", help="HDF5 files or folders of them")
    p = sub.add_parser("validate", help="check the whole schema; exit 2 if invalid")
    p.add_argument("paths", nargs="+", help="HDF5 files or folders of them")
    p = sub.add_parser(
        "upgrade",
        help="rewrite format_version 1 files as version 2 (classes and instruction ids from the suite spec)",
    )
    p.add_argument("paths", nargs="+", help="HDF5 files or folders of them")
    p.add_argument(
        "--checksums",
        action="store_true",
        help="also rewrite every dataset with HDF5's Fletcher-32 checksum (files written before them)",
    )
    p = sub.add_parser("replay", help="re-simulate a demo from its states and actions")
    p.add_argument("path")
    p.add_argument("--demo", required=True, help="demo name, e.g. demo_0")
    p = sub.add_parser("video", help="write a stored camera stream as a video")
    p.add_argument("path")
    p.add_argument("--demo", required=True, help="demo name, e.g. demo_0")
    p.add_argument("--out", required=True, help="output file (.mp4 or .gif)")
    p.add_argument("--camera", help="camera stream (default: the first stored)")
    p.add_argument("--fps", type=int, default=20)
    p.add_argument(
        "--size",
        type=int,
        default=0,
        help="render every stored state again at this many pixels (8 to 1024), for watching (e.g. 256); "
        "default 0: the stored frames, enlarged",
    )
    p.add_argument("--raw", action="store_true", help="the stored frames exactly, without captions")
    p = sub.add_parser("export", help="write demonstration files in another framework's format")
    p.add_argument("paths", nargs="+", help="HDF5 files or folders of them")
    p.add_argument(
        "--format",
        required=True,
        choices=["lerobot"],
        help="lerobot: a LeRobotDataset v3.0 folder (parquet, MP4, meta/)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--fps",
        type=int,
        help="frames per second (default: the suite's control rate, Meta-World 80; robosuite's control_freq)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p = sub.add_parser(
        "import",
        help="turn another framework's dataset into demonstration files (one HDF5 per task)",
        description="A local LeRobotDataset v3.0 folder -> one HDF5 per task: tasks from its task "
        "table (a registered suite's task where the text is its instruction), videos decoded, fps "
        "and the train/valid split kept, actions outside [-1, 1] scaled from the data's min and max.",
    )
    p.add_argument("path", help="the dataset's folder (meta/info.json, data/, videos/)")
    p.add_argument("--format", required=True, choices=["lerobot"], help="lerobot: a LeRobotDataset v3.0")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)

    def run() -> int:
        from embodied.data import inspect

        if args.verb == "collect":
            from embodied.data.collect import collect

            cfg = collect_config(args)
            summaries = collect(cfg, overwrite=args.overwrite)
            for s in summaries:
                if s.get("skipped"):
                    print(f"{s['task']}: complete, skipped ({s['path']})")
                else:
                    print(
                        f"{s['task']}: {s['demos']} demos from {s['attempts']} episodes "
                        f"(expert success {s['expert_success']:.0%}) -> {s['path']}"
                    )
            return 0
        if args.verb == "info":
            print(inspect.info(args.paths))
            return 0
        if args.verb == "validate":
            problems = inspect.validate(args.paths)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                print(f"invalid: {len(problems)} problem(s)", file=sys.stderr)
                return 2
            print("valid")
            for path in inspect.core_schema_files(args.paths):
                print(
                    f"{path}: robomimic's core schema; embodied's extensions absent (format_version, "
                    "suite, each demo's task, instruction, class and success): tasks from env_args.env_name"
                )
            for note in [*inspect.checksum_notes(args.paths), *inspect.mask_notes(args.paths)]:
                print(note)
            return 0
        if args.verb == "upgrade":
            for line in inspect.upgrade(args.paths, checksums=args.checksums):
                print(line)
            return 0
        if args.verb == "replay":
            print(inspect.replay(args.path, args.demo))
            return 0
        if args.verb == "video":
            print(
                inspect.export_video(
                    args.path, args.demo, args.out, args.camera, args.fps, args.size, args.raw
                )
            )
            return 0
        if args.verb == "export":
            from embodied.data.export import export_lerobot

            info = export_lerobot(args.paths, args.out, fps=args.fps, overwrite=args.overwrite)
            cams = [k for k, ft in info["features"].items() if ft["dtype"] == "video"]
            print(
                f"{args.out}: LeRobotDataset {info['codebase_version']}, {info['total_episodes']} episodes, "
                f"{info['total_frames']} frames, {info['total_tasks']} tasks, {info['fps']} fps"
                + (f", videos: {', '.join(cams)}" if cams else "")
            )
            return 0
        if args.verb == "import":
            from embodied.data.lerobot_import import import_lerobot

            files = import_lerobot(args.path, args.out, overwrite=args.overwrite)
            print(inspect.info([str(f) for f in files]))
            return 0
        raise UserError(f"unknown verb {args.verb}")

    return run_cli(run)


if __name__ == "__main__":
    sys.exit(main())
