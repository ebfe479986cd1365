"""``embodied-eval``: roll a trained policy out: success with intervals, videos, the recognizer's verdict.

embodied-eval runs/joint_quick                          # the run's checkpoints/last.pt, 50 episodes per task
embodied-eval runs/joint_quick/checkpoints/best.pt --episodes 20 --tasks drawer-open-v3
embodied-eval runs/policy_mt10 --workers 4 --videos 2 --cameras corner corner2
embodied-eval runs/policy_mt10 --videos-only --videos 3 --gif
embodied-eval runs/policy_mt10 --protocol metaworld     # Meta-World's own: 50 goals per task, 500 steps
embodied-eval runs/recognizer_mt10                      # a recognizer alone: its report on the valid split
embodied-eval runs/joint_quick --classify runs/joint_quick/eval/videos/*.mp4  # which task is each?

Writes ``results.json`` (everything, per episode too) and ``results.md`` (a table per task and
overall, with 95 % Wilson intervals) into --out (default: ``<run folder>/eval/``), videos into
its ``videos/`` folder, and prints the table. Episode i of every task uses seed
--seed-start + i; the default start is above every demonstration seed. --protocol metaworld
runs Meta-World's protocol instead, for results to set beside published Meta-World numbers:
per task the 50 goals its benchmark draws for --seed (Meta-World's MT10/MT25/MT50 when the
tasks are exactly that set, else MT1 per task), one episode per goal, 500 steps, success at
any step; --episodes N takes the first N goals its evaluator visits (LeRobot reports 10 per
task: --episodes 10). results.json's ``protocol`` says which ran. A checkpoint with a
recognizer also gets its validation accuracy and its verdict on the rollouts (does it
recognize the instructed task?); with a mirror head too, each episode's alignment, related
to success. Ctrl-C writes the episodes finished so far.

The recognizer's report on the validation split of the demonstrations (--data, default the
training run's data) goes into the same folder: ``recognition.json`` (clip- and video-level
top-1 and top-5, per-class accuracy, the confusion matrix, early recognition),
``confusion.png``, ``early_recognition.json`` and ``early_recognition.png`` (accuracy after
seeing the first 10, 25, 50 and 100 % of each episode). Where a clip's span is longer than
the frames available (a short episode, an early prefix, a short video), the last frame is
repeated.

--classify VIDEO ... classifies video files (MP4, GIF; one frame per environment step, e.g. a
policy's rollout) with the checkpoint's recognizer and prints the predicted task and
instruction with their probabilities and the top 5; nothing is rolled out or written. The
captioned rollout videos embodied-eval writes are recognized and their first camera's image
is used (--crop).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from embodied.errors import UserError, run_cli
from embodied.fileio import check_writable
from embodied.limits import MAX_FPS, check_image_side, check_range
from embodied.paths import checkpoint_path

# Heavy modules (torch, the models) are imported inside main(): worker processes started by
# `spawn` or the forkserver import the console script's module, and should not pay for them.


def parser() -> argparse.ArgumentParser:
    from embodied.eval.settings import EvalSettings

    default = EvalSettings()  # the flags' defaults are the settings' own (but --episodes: 50)
    p = argparse.ArgumentParser(
        prog="embodied-eval", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", help="a checkpoint .pt file, or a run folder (its checkpoints/last.pt)")
    p.add_argument("--episodes", type=int, default=50, help="episodes per task (default 50)")
    p.add_argument(
        "--tasks", nargs="+", help="tasks or task sets to evaluate (default: every task trained on)"
    )
    p.add_argument("--suite", help="the suite the tasks are expected from (default: the checkpoint's)")
    p.add_argument(
        "--workers",
        type=int,
        default=default.workers,
        help=f"environments in parallel processes; 0: in process (default {default.workers})",
    )
    p.add_argument(
        "--policy-in-main",
        action="store_true",
        help="run the policy in this process for every environment in lock-step (the default on a GPU; "
        "on a CPU each worker runs a copy of it)",
    )
    p.add_argument(
        "--seed-start",
        type=int,
        default=default.seed_start,
        help=f"seed of each task's first episode ({default.seed_start})",
    )
    p.add_argument("--horizon", type=int, default=0, help="episode step limit; 0: each task's default")
    p.add_argument(
        "--protocol",
        default=default.protocol,
        help="which episodes run: embodied (default: seeds from --seed-start, each task's horizon) or a "
        "suite's own: metaworld (Meta-World's goals for --seed, one episode per goal, 500 steps)",
    )
    p.add_argument(
        "--seed",
        type=int,
        help="the seed a suite's own protocol draws its goals from (metaworld: 42, as Meta-World's "
        "documentation)",
    )
    p.add_argument(
        "--videos",
        type=int,
        metavar="K",
        help="write the first K episodes of each task as videos (default 0; with --videos-only 1)",
    )
    p.add_argument(
        "--cameras", nargs="+", help="cameras of the videos, side by side (default: the observer camera)"
    )
    p.add_argument("--gif", action="store_true", help="videos as GIF instead of MP4")
    p.add_argument("--fps", type=int, default=20, help="video frames per second")
    p.add_argument(
        "--video-size",
        type=int,
        default=256,
        help="side of each camera in the videos, in pixels, rendered for watching apart from the "
        "policy's observations (default 256; 0: the observations' size, enlarged)",
    )
    p.add_argument(
        "--videos-only",
        action="store_true",
        help="only render K (--videos, default 1) episodes per task as videos",
    )
    p.add_argument(
        "--judge-episodes",
        type=int,
        metavar="N",
        help="episodes per task the recognizer judges (default: all; 0: none). Recording the observer "
        "camera costs a render per step",
    )
    p.add_argument(
        "--data",
        nargs="+",
        help="demonstrations for the recognizer's validation accuracy "
        "(default: the training run's data.paths)",
    )
    p.add_argument(
        "--classify",
        nargs="+",
        metavar="VIDEO",
        help="only classify these video files (mp4, gif) with the recognizer: task, instruction, top 5",
    )
    p.add_argument(
        "--clips",
        type=int,
        default=default.clips_per_video,
        help="clips averaged per video: --classify, the recognizer report and its verdicts "
        f"(default {default.clips_per_video})",
    )
    p.add_argument(
        "--crop",
        default="auto",
        metavar="auto|none|TOP,LEFT,HEIGHT,WIDTH",
        help="part of each --classify frame the recognizer sees; auto: the first camera of an "
        "embodied-eval rollout video, else the whole frame (default auto)",
    )
    p.add_argument("--device", default="cpu", help="torch device of the models (default cpu)")
    p.add_argument("--out", help="output folder (default: <run folder>/eval)")
    return p


def run_folder(checkpoint: Path) -> Path:
    """The training run's folder of a checkpoint file or folder."""
    if checkpoint.is_dir():
        return checkpoint
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


def parse_crop(text: str):
    """--crop: "auto", None for "none", or (top, left, height, width)."""
    if text in ("auto", "none"):
        return None if text == "none" else text
    try:
        crop = tuple(int(v) for v in text.split(","))
    except ValueError:
        crop = ()
    if len(crop) != 4 or min(crop[:2]) < 0 or min(crop[2:]) < 1:
        raise UserError(f"--crop {text!r}: give auto, none or TOP,LEFT,HEIGHT,WIDTH in pixels")
    return crop


def classify_videos(args: argparse.Namespace, path: Path, kind: str, recognizer, spec, config) -> int:
    """--classify: each video's predicted task and instruction, with probabilities and the top 5."""
    from embodied.eval.classify import classify_file

    if recognizer is None:
        raise UserError(f"{checkpoint_path(path)}: a {kind} checkpoint holds no recognizer to classify with")
    crop = parse_crop(args.crop)
    for video in args.classify:  # every name checked before any is classified
        if not Path(video).is_file():
            raise UserError(f"{video}: no such video file")
    for video in args.classify:
        pred = classify_file(
            recognizer, video, spec, clip_stride=config.data.clip_stride, num_clips=args.clips, crop=crop
        )
        line = f"{video}: {pred.task} (p={pred.probability:.3f})"
        if pred.instruction is not None:
            line += f', instruction "{pred.instruction}" (p={pred.instruction_probability:.3f})'
        print(line)
        print(f"  top {len(pred.top)}: " + ", ".join(f"{name} {p:.3f}" for name, p in pred.top))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_cli(lambda: evaluate(args))


def evaluate(args: argparse.Namespace) -> int:
    minimum = {
        "episodes": 1,
        "fps": 1,
        "video_size": 0,
        "workers": 0,
        "videos": 0,
        "horizon": 0,
        "judge_episodes": 0,
        "clips": 1,
        "seed_start": 0,
        "seed": 0,
    }
    for name, low in minimum.items():
        value = getattr(args, name)
        if value is not None and value < low:
            raise UserError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
    try:  # the upper ends too, before the checkpoint is loaded (embodied.limits)
        check_image_side("--video-size (0: the observations' size)", args.video_size, zero_ok=True)
        check_range("--fps", args.fps, 1, MAX_FPS)
    except ValueError as err:
        raise UserError(str(err)) from None
    if args.videos_only and args.videos == 0:
        raise UserError("--videos-only --videos 0 would render nothing; give --videos K (K >= 1)")
    parse_crop(args.crop)  # a malformed --crop is refused with or without --classify
    if not checkpoint_path(args.checkpoint).is_file():  # said before torch is imported (seconds)
        raise UserError(f"{checkpoint_path(args.checkpoint)}: no such checkpoint")
    import torch

    from embodied.eval.checkpoint import checkpoint_target, evaluate_checkpoint
    from embodied.eval.recognition import REPORT_FILES
    from embodied.eval.report import results_payload, success_table, write_results
    from embodied.eval.settings import Videos, make_settings
    from embodied.seeds import EVAL_SEED_START
    from embodied.sim import load_suite
    from embodied.train.checkpoint import load_model

    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UserError(f"--device {args.device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: CUDA is not available here")
    path = Path(args.checkpoint)
    loaded = load_model(path, device=device)
    kind, models, spec, config = loaded
    if args.classify:
        return classify_videos(args, path, kind, models.get("recognizer"), spec, config)
    out = Path(args.out) if args.out else run_folder(path) / "eval"
    check_writable(out, "--out")  # before the rollouts, not after them
    policy, recognizer = models.get("policy"), models.get("recognizer")
    if args.videos_only and policy is None:
        raise UserError(f"{checkpoint_path(path)}: a {kind} checkpoint holds no policy to roll out")
    if policy is None and recognizer is None:
        raise UserError(
            f"{checkpoint_path(path)}: a {kind} checkpoint holds neither a policy nor a recognizer"
        )
    if args.data and recognizer is None:  # the data would go unread, and the user would not know
        raise UserError(
            f"--data: a {kind} checkpoint holds no recognizer; --data is the recognizer's validation data"
        )
    settings = make_settings(
        tasks=args.tasks,
        suite=args.suite,
        episodes=(args.videos or 1) if args.videos_only else args.episodes,  # --videos 0 refused above
        seed_start=args.seed_start,
        horizon=args.horizon or None,  # --horizon 0: each task's default
        protocol=args.protocol,
        protocol_seed=args.seed,
        workers=args.workers,
        policy_in_workers=False if args.policy_in_main else None,
        clips_per_video=args.clips,
    )
    if args.seed_start < EVAL_SEED_START:
        print(
            f"warning: seeds below {EVAL_SEED_START} are demonstration seeds; the results are not held out",
            file=sys.stderr,
        )
    if args.protocol != "embodied" and policy is not None:  # drawing its goals builds environments
        print(f"protocol {args.protocol}: drawing its goals", file=sys.stderr)
    # The suite, tasks, observer camera and protocol's episodes, resolved once for everything below.
    target = checkpoint_target(loaded, settings)
    cameras = load_suite(target.suite).check_cameras(args.cameras or (target.observer,))
    videos = Videos(
        episodes=settings.episodes if args.videos_only else min(args.videos or 0, settings.episodes),
        folder=out / "videos",
        cameras=cameras,
        gif=args.gif,
        fps=args.fps,
        size=args.video_size,
    )

    if args.videos_only:
        ev = evaluate_checkpoint(
            loaded, settings, target=target, recognize=False, videos=videos, progress=True
        )
        for e in ev.results.episodes:
            outcome = "success" if e.success else f"failed ({e.failure})"
            print(f"{e.video}: {e.task} seed {e.seed}, {e.length} steps, {outcome}")
        return 0

    ev = evaluate_checkpoint(
        loaded,
        settings,
        target=target,
        recognizer_data=args.data,
        report_dir=out,
        judge_episodes=settings.episodes if args.judge_episodes is None else args.judge_episodes,
        videos=videos,
        progress=True,
        skip_missing_data=True,
        keep_partial=True,  # Ctrl-C or a full disk: the finished episodes go to results.json
    )
    results, judge = ev.results, ev.judge
    if policy is None:
        print(
            f"note: a {kind} checkpoint has no policy: no rollouts, the recognizer's accuracy only",
            file=sys.stderr,
        )
    rec_acc = None
    if ev.recognition is not None:
        rec_acc = ev.recognition.to_json()
    elif ev.recognition_error is not None:
        rec_acc = {"error": ev.recognition_error}

    recorded = {  # results.json's record of what ran
        "episodes": settings.episodes,
        "workers": settings.workers,
        "seed_start": settings.seed_start,
        "horizon": settings.horizon,
        "protocol": settings.protocol,
        "protocol_seed": settings.protocol_seed,
        "videos": args.videos,
        "cameras": list(cameras),
        "observer": target.observer,
        "device": args.device,
        "tasks": target.tasks,
    }
    payload = results_payload(
        results,
        checkpoint=str(checkpoint_path(path)),
        kind=kind,
        settings=recorded,
        recognizer=rec_acc,
        judge=judge or None,
    )
    json_path, md_path, md = write_results(out, payload)
    print(success_table(payload) if results is not None else md)
    if judge and judge.get("agreement"):
        a = judge["agreement"]
        print(f"recognizer agrees with the instructed task in {a['rate']:.0%} of {a['n']} judged episodes")
    print(f"wrote {json_path} and {md_path}")
    written = [e.video for e in results.episodes if e.video] if results is not None else []
    if written:
        shown = ", ".join(Path(v).name for v in written[:4]) + (", ..." if len(written) > 4 else "")
        print(f"wrote {len(written)} video(s) into {Path(written[0]).parent}: {shown}")
    if rec_acc is not None and "error" not in rec_acc:
        early = ", ".join(f"{e['fraction']:.0%} {e['accuracy']:.2f}" for e in rec_acc["early_recognition"])
        print(f"recognizer early recognition (video top-1 after seeing): {early}")
        print(f"wrote the recognizer report into {out}: {', '.join(REPORT_FILES)}")
    if ev.failure is not None:
        raise UserError(f"{ev.failure}; the {len(results.episodes)} finished episode(s) are in {json_path}")
    if ev.interrupted:
        done = len(results.episodes)
        print(f"interrupted: {done} finished episode(s) written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
