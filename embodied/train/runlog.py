"""A run's output folder and its log: the folder checks, ``metrics.jsonl`` and TensorBoard events,
the progress bar, metric averaging and the printed summary."""

from __future__ import annotations

import json
import math
import secrets
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
from tqdm import tqdm

from embodied import keys as K
from embodied.data.schema import IMAGE_SUFFIX
from embodied.errors import UserError, one_line
from embodied.fileio import check_writable, replace_atomically
from embodied.train import checkpoint as ckpt
from embodied.train.config import WandbConfig

# --------------------------------------------------------------------------- output folder
WANDB_ID = "wandb_run_id"
"""The W&B run id of the run in a folder: a resumed run goes on logging into the same W&B run."""


def check_wandb(cfg: WandbConfig) -> None:
    """Before the long work: W&B logging asked for and the package missing is one line."""
    if cfg.mode == "off":
        return
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise UserError(
            f"wandb.mode {cfg.mode}: the wandb package is not installed; pip install 'embodied[wandb]'"
        ) from None


OUTPUTS = (
    "config.yaml",
    "metrics.jsonl",
    "summary.json",
    "tsne.png",
    "checkpoints",
    "videos",
    "wandb",
    WANDB_ID,
)
"""What a run writes in its folder, besides TensorBoard's events.out.tfevents.* files."""


def check_out(out: Path, resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: output folder is a file")
    check_writable(out)  # before the data are read and the models built
    if resume:
        if not ckpt.checkpoint_path(out).is_file():
            raise UserError(f"{out}: no checkpoints/last.pt to resume from (start again with --overwrite)")
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out}: output folder exists; --resume {out} continues it, --overwrite starts again")


def clear_outputs(out: Path) -> None:
    """Remove what an earlier run wrote here (only that: other files stay)."""
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for path in out.glob("events.out.tfevents.*"):
        path.unlink()


class RunLog:
    """metrics.jsonl (one JSON line per event), TensorBoard scalars and the progress bar; rank 0 only."""

    def __init__(
        self,
        out: Path | None,
        start: int,
        total: int,
        wandb: WandbConfig | None = None,
        config: dict | None = None,
    ) -> None:
        self.out = out
        self.bar = tqdm(
            total=total, initial=start, disable=out is None, unit="step", dynamic_ncols=True, mininterval=1.0
        )
        self.jsonl = self.tb = self.wandb = None
        self._hook = None  # the threading.excepthook this log replaced, restored at close
        if out is None:
            return
        path = out / "metrics.jsonl"
        if start and path.exists():  # resumed: drop what the killed run logged after its checkpoint
            kept = [line for line in path.read_text().splitlines() if _step_of(line) <= start]
            replace_atomically(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept)))
        self.jsonl = path.open("a")
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out), purge_step=start + 1 if start else None)
        self._quiet_writer_threads()
        if wandb is not None and wandb.mode != "off":
            try:
                self.wandb = _wandb_run(out, wandb, config or {}, resumed=bool(start))
            except BaseException:
                self.close()
                raise

    def event(self, kind: str, step: int, metrics: dict[str, float]) -> None:
        if self.jsonl is None:
            return
        clean = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()
        }
        self.jsonl.write(json.dumps({"event": kind, "step": step, **clean}) + "\n")
        self.jsonl.flush()
        scalars = {f"{kind}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
        for k, v in scalars.items():
            self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def videos(self, kind: str, step: int, paths: list[Path]) -> None:
        """GIF videos (training's rollouts) into TensorBoard and W&B, where users look first, as
        ``<kind>/video/<file name>``. TensorBoard's image panel plays an animated GIF: the summary
        torch's ``add_video`` writes, made here from the file, as ``add_video`` needs moviepy (and
        moviepy 2 lacks the ``moviepy.editor`` it imports)."""
        if self.tb is None or not paths:
            return
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        for path in paths:
            with Image.open(path) as gif:
                width, height = gif.size
            image = Summary.Image(
                height=height, width=width, colorspace=3, encoded_image_string=path.read_bytes()
            )
            summary = Summary(value=[Summary.Value(tag=f"{kind}/video/{path.stem}", image=image)])
            self.tb._get_file_writer().add_summary(summary, step)  # as SummaryWriter.add_video does
        if self.wandb is not None:
            import wandb

            self.wandb.log(
                {f"{kind}/video/{p.stem}": wandb.Video(str(p), format="gif") for p in paths}, step=step
            )

    def images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """(H, W, 3) uint8 images (sample frames of the training data) into TensorBoard and W&B."""
        if self.tb is None or not images:
            return
        for tag, image in images.items():
            self.tb.add_image(tag, image, step, dataformats="HWC")
        if self.wandb is not None:
            import wandb

            self.wandb.log({tag: wandb.Image(image) for tag, image in images.items()}, step=step)

    def note(self, text: str) -> None:
        if self.out is not None:
            tqdm.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
        try:
            if self.jsonl is not None:
                self.jsonl.close()
                self.tb.close()
            if self.wandb is not None:
                self.wandb.finish()
        finally:
            if self._hook is not None:
                threading.excepthook, self._hook = self._hook, None

    def _quiet_writer_threads(self) -> None:
        """TensorBoard writes its events from a thread of its own: on a full disk that thread's
        OSError would be printed as a traceback, and the writer raises the same error again in
        this thread at the next event or flush, where training ends in one line (train's
        handling of a full disk). So the thread's own report is left out while the run lasts."""
        previous = threading.excepthook

        def hook(args) -> None:
            if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
                return
            previous(args)

        self._hook, threading.excepthook = previous, hook


def _wandb_run(out: Path, cfg: WandbConfig, config: dict, resumed: bool):
    """A W&B run logging into ``out/wandb``; a resumed training run continues its W&B run."""
    import wandb

    id_file = out / WANDB_ID
    run_id = id_file.read_text().strip() if resumed and id_file.is_file() else secrets.token_hex(6)
    try:
        run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            name=cfg.name or out.resolve().name,
            id=run_id,
            resume="allow",
            dir=str(out),
            mode=cfg.mode,
            config=config,
        )
    except wandb.Error as err:  # no API key, no network, an unknown entity: the user's to fix
        raise UserError(
            f"wandb.mode {cfg.mode}: W&B did not start ({one_line(err, limit=200)}); "
            "log in ('wandb login' or WANDB_API_KEY) or use wandb.mode=offline"
        ) from None
    replace_atomically(id_file, lambda tmp: tmp.write_text(run_id + "\n"))
    return run


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return 1 << 62


class Averager:
    """Mean of each metric over the steps since the last reset (NaN values left out)."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, float], weight: int = 1) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and math.isfinite(v):
                self.sums[k] = self.sums.get(k, 0.0) + weight * v
                self.counts[k] = self.counts.get(k, 0) + weight

    def mean(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


def format_summary(s: dict) -> str:
    """A few lines for the terminal."""
    speed = f"{s['wall_time_s']:.0f} s ({s['samples_per_s']:.0f} samples/s)"
    if s.get("cuda_max_memory_mib") is not None:
        speed += f", {s['cuda_max_memory_mib']:.0f} MiB of GPU memory at most"
    lines = [f"done: {s['mode']}, {s['steps']} steps in {speed}"]
    parts = []
    if "loss" in s["train"]:
        parts.append(f"train loss {s['train']['loss']:.4f}")
    val = s["val"]
    if "loss" in val:
        parts.append(f"val loss {val['loss']:.4f} (best {s['best_val_loss']:.4f} at step {s['best_step']})")
    for key in ("recognizer/class_acc", "policy/mse"):
        if key in val:
            parts.append(f"val {key} {val[key]:.3f}")
    if parts:
        lines.append(" | ".join(parts))
    if "recall@1_u2e" in val:
        lines.append(
            "val pair Recall@1 u->e {:.3f}, e->u {:.3f}; pair Recall@5 u->e {:.3f}, e->u {:.3f} "
            "(chance @1 {:.3f}, @5 {:.3f}; {:.0f} pairs)".format(
                val["recall@1_u2e"],
                val["recall@1_e2u"],
                val["recall@5_u2e"],
                val["recall@5_e2u"],
                val["chance@1"],
                val["chance@5"],
                val["pairs"],
            )
        )
    if "gallery/gallery" in val:
        parts = []
        for level in ("episode", "instruction", "class"):
            u2e, e2u = (_fmt(val.get(f"gallery/recall@1_{level}_{d}")) for d in ("u2e", "e2u"))
            parts.append(f"{level} {u2e}/{e2u} (chance {_fmt(val.get(f'gallery/chance@1_{level}'))})")
        parts.append(
            f"episode within its instruction {_fmt(val.get('gallery/within_instruction@1_u2e'))}/"
            f"{_fmt(val.get('gallery/within_instruction@1_e2u'))} "
            f"(chance {_fmt(val.get('gallery/chance@1_within_instruction'))})"
        )
        lines.append(
            f"val gallery Recall@1 u->e/e->u over {val['gallery/gallery']:.0f} episodes: " + "; ".join(parts)
        )
    if "cka" in val:
        lines.append(
            "val cosine of positives {}, of negatives {}, of partners {}; "
            "linear CKA of the raw features {}".format(
                *(_fmt(val.get(k)) for k in ("cos_pos", "cos_neg", "pair_cos", "cka"))
            )
        )
    shown = ("success_rate", "ci_low", "ci_high", "mean_return")
    rollout = {k: v for k, v in s["rollout"].items() if k in shown} or s["rollout"]
    if rollout:
        lines.append("rollout " + ", ".join(f"{k} {v:.3f}" for k, v in rollout.items()))
    if s["checkpoints"]:
        lines.append("checkpoints: " + ", ".join(s["checkpoints"].values()))
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def nan_to_none(metrics: dict) -> dict:
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in metrics.items()}


def sample_frames(batch: dict, rows: int = 4) -> dict[str, np.ndarray]:
    """What the first training batch shows, as images for TensorBoard and W&B: the observer
    camera's clips (``samples/clip``: a row per sample, its frames left to right) and each image
    observation (``samples/<key>``: a row per sample, its window's frames), for ``rows`` samples."""
    streams = {}
    if batch.get(K.VIDEO) is not None:
        streams["samples/clip"] = batch[K.VIDEO]  # (B, T, 3, H, W) uint8
    for key, value in (batch.get(K.OBS) or {}).items():
        if key.endswith(IMAGE_SUFFIX):
            streams[f"samples/{key}"] = value  # (B, To, 3, H, W)
    out = {}
    for tag, value in streams.items():
        x = value[:rows].detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value[:rows])
        if x.ndim != 5 or x.dtype != np.uint8:
            continue
        b, t, c, h, w = x.shape
        out[tag] = x.transpose(0, 3, 1, 4, 2).reshape(b * h, t * w, c)  # (B, T, 3, H, W) -> (B*H, T*W, 3)
    return out
