"""Recognizer quality on held-out demonstrations: the recognition issue's benchmark.

    python tools/bench_recognizer.py runs/recognizer_mt10
    python tools/bench_recognizer.py runs/joint_mt10/checkpoints/best.pt --data datasets/mt10 --device cuda
    python tools/bench_recognizer.py runs/recognizer_mt10 --out runs/recognizer_mt10/bench   # + the files

Evaluates a trained checkpoint's recognizer on the ``valid`` split (held-out episodes) of the
demonstrations (default: the training run's ``data.paths``) with
:func:`embodied.eval.recognition.evaluate_recognizer` and prints the report as tables:
clip-level top-1/top-5 (clips from anywhere in the episode), video-level top-1/top-5 (softmax
averaged over --clips clips, with a 95 % Wilson interval), early recognition after seeing the
first 10/25/50/100 % of each episode, and per-class accuracy with each class's most frequent
confusion. The target is video-level top-1 >= 0.95 on MT10; the last line says whether it is
met (exit status 0 either way). With --out the report's files are written too
(recognition.json, confusion.png, early_recognition.json and .png).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from embodied.errors import UserError, run_cli

TARGET = 0.95
"""Video-level top-1 the issue asks for on MT10's held-out episodes."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint .pt file, or a run folder (its checkpoints/last.pt)")
    p.add_argument("--data", nargs="+", help="demonstration files or folders (default: the run's data.paths)")
    p.add_argument("--split", default="valid", choices=["valid", "train", "all"], help="split (valid)")
    p.add_argument("--clips", type=int, default=5, help="clips averaged per video (default 5)")
    p.add_argument(
        "--clips-per-episode", type=int, default=10, help="clip-level clips per episode (default 10)"
    )
    p.add_argument("--batch-size", type=int, default=64, help="clips per forward pass (default 64)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--out", help="also write the report's files into this folder")
    return p


def run(args: argparse.Namespace) -> int:
    import torch

    from embodied.eval.recognition import evaluate_recognizer, open_clips, report_table, write_report
    from embodied.train.checkpoint import checkpoint_path, load_model

    if min(args.clips, args.clips_per_episode, args.batch_size) < 1:
        raise UserError("--clips, --clips-per-episode and --batch-size must be at least 1")
    kind, models, spec, config = load_model(args.checkpoint, device=torch.device(args.device))
    recognizer = models.get("recognizer")
    if recognizer is None:
        raise UserError(f"{checkpoint_path(args.checkpoint)}: a {kind} checkpoint holds no recognizer")
    paths = args.data or config.data.paths
    dataset = open_clips(paths, spec, config.data.camera, config.data.clip_stride, split=args.split)
    start = time.perf_counter()
    try:
        report = evaluate_recognizer(
            recognizer,
            dataset,
            clips_per_video=args.clips,
            clips_per_episode=args.clips_per_episode,
            batch_size=args.batch_size,
        )
    finally:
        dataset.close()
    seconds = time.perf_counter() - start

    rc = config.recognizer
    print(
        f"{checkpoint_path(args.checkpoint)} ({kind}, {rc.name if rc else 'recognizer'}) on the {args.split} "
        f"split of {', '.join(map(str, paths))}: {report.videos} episodes of {len(report.classes)} tasks, "
        f"{report.camera} camera, clips of {report.clip_len} frames at stride {report.clip_stride}; "
        f"{seconds:.1f} s on {args.device}"
    )
    print()
    print(report_table(report))
    print()
    met = report.video_accuracy >= TARGET
    print(f"video-level top-1 {report.video_accuracy:.3f}: target >= {TARGET} {'met' if met else 'NOT met'}")
    if args.out:
        written = write_report(report, Path(args.out))
        print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_cli(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
