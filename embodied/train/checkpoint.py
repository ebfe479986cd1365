"""Checkpoints: plain data only, loadable with ``torch.load(..., weights_only=True)``.

``<out>/checkpoints/last.pt`` (every ``ckpt_every`` steps and at the end) holds everything an
exact resume needs; ``best.pt`` (lowest validation loss) holds the models only. Both are
written atomically (a temporary file, then ``os.replace``), so a run killed while saving
keeps its previous checkpoint. Layout (format version 1; built by :func:`run_payload` and
:func:`training_state`, read back by :func:`restore_training`)::

    format, format_version   "embodied-train-checkpoint", 1
    kind                     the run's mode: the registered objective (policy, recognizer, joint, ...)
    config                   JSON of the TrainConfig
    spec                     JSON of the training data's DataSpec
    stats                    {key: {"mean": tensor, "std": tensor}} normalisation of the train split
    models                   {name: {"config": JSON, "spec": JSON, "dims": [..], "state": state dict}}
                             name in policy, recognizer, mirror and the parts an objective adds
                             (:mod:`embodied.train.models`); the EMA weights when EMA is on
    train                    (last.pt only) step, data position, optimizer, scheduler, scaler,
                             EMA, the trained (non-averaged) weights, best validation, and the
                             random states of python, numpy and torch of every process
    hash                     "sha256:<hex>" of everything above (:func:`content_hash`)

The hash covers every value the file holds (each tensor's dtype, shape and bytes, every number
and string, in order), so a flipped byte inside a tensor, which ``torch.load`` cannot notice,
is refused on every load (resume, eval, probe, bench) as one line naming the file.
Checkpoints written before the hash existed have none and load unverified (same format
version: the hash is an added key, which older readers ignore).

Each model carries its own config and spec, so :func:`load_model` rebuilds it from the file
alone, without the code that trained it or the dataset.
"""

from __future__ import annotations

import errno
import hashlib
import json
import random
import struct
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from embodied.config import from_dict, to_dict
from embodied.data.spec import DataSpec
from embodied.errors import UserError
from embodied.fileio import replace_atomically
from embodied.paths import checkpoint_path
from embodied.train.config import TrainConfig
from embodied.train.models import rebuild
from embodied.train.objective import checkpoint_objective

FORMAT = "embodied-train-checkpoint"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- integrity
HASH_KEY = "hash"
HASH_ALGORITHM = "sha256"


def content_hash(payload: dict) -> str:
    """``sha256:<hex>`` over a checkpoint's contents (all but its ``hash``), independent of
    how torch lays the file out: containers in order, each value tagged with its type, each
    tensor's dtype, shape and raw bytes."""
    digest = hashlib.new(HASH_ALGORITHM)
    _feed(digest, {k: v for k, v in payload.items() if k != HASH_KEY})
    return f"{HASH_ALGORITHM}:{digest.hexdigest()}"


def _feed(digest, obj) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        # raw bytes of any dtype (bf16 included); reshape(-1): a 0-d tensor cannot be viewed as bytes
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, dict):
        digest.update(f"D{len(obj)}".encode())
        for key, value in obj.items():
            _feed(digest, key)
            _feed(digest, value)
    elif isinstance(obj, (list, tuple)):
        digest.update(f"L{len(obj)}".encode())
        for value in obj:
            _feed(digest, value)
    elif isinstance(obj, bool) or obj is None:
        digest.update(f"B{obj}".encode())
    elif isinstance(obj, int):
        digest.update(f"I{obj};".encode())
    elif isinstance(obj, float):
        digest.update(b"F" + struct.pack("<d", obj))  # exact, NaN and infinities included
    elif isinstance(obj, str):
        data = obj.encode("utf-8", "surrogatepass")
        digest.update(f"S{len(data)}:".encode() + data)
    else:  # whatever else torch's safe unpickler gives back (torch.Size is a tuple; dtypes, devices)
        text = repr(obj).encode()
        digest.update(f"R{type(obj).__name__}{len(text)}:".encode() + text)


def verify_hash(payload: dict, path: Path) -> None:
    """Refuse a checkpoint whose contents differ from its stored hash; one without a hash
    (written before checkpoints carried one) passes unverified."""
    stored = payload.get(HASH_KEY)
    if stored is None:
        return
    if not isinstance(stored, str) or content_hash(payload) != stored:
        raise UserError(
            f"{path}: checkpoint is corrupted (its contents do not match the hash stored in it); "
            "use another checkpoint or train again"
        )


# --------------------------------------------------------------------------- files
def save_checkpoint(path: Path, payload: dict) -> None:
    """Write ``payload`` with its content hash, atomically: a temporary file beside the
    target, then one rename. ``payload`` itself is not changed."""
    payload = {**{k: v for k, v in payload.items() if k != HASH_KEY}, HASH_KEY: content_hash(payload)}
    try:
        replace_atomically(path, lambda tmp: torch.save(payload, tmp))
    except OSError as err:  # named by the checkpoint, not by its temporary file (removed)
        raise OSError(err.errno, err.strerror, str(path)) from None
    except RuntimeError as err:
        # torch's zip writer reports a short write (a full disk) as "unexpected pos ...", no errno
        if "PytorchStreamWriter" not in str(err) and "inline_container" not in str(err):
            raise
        raise OSError(errno.ENOSPC, "a short write: is the disk full?", str(path)) from None


def read_checkpoint(path: str | Path) -> dict:
    """Load and check a checkpoint file (or a run folder's last.pt); problems are UserErrors."""
    path = checkpoint_path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        with warnings.catch_warnings():  # torch warns about a pickle's unknown objects, then refuses it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # torch raises many kinds of error (and long advice) for a foreign file
        raise UserError(f"{path}: not a readable checkpoint: {_what_file(path)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an embodied training checkpoint")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"{path}: checkpoint format version {version}; this embodied reads version {FORMAT_VERSION}"
        )
    verify_hash(payload, path)
    return payload


def _what_file(path: Path) -> str:
    """What a file that ``torch.load`` refused looks like, in a few words."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as err:
        return f"cannot read it ({err.strerror or err})"
    if not head:
        return "the file is empty"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "an HDF5 file (demonstrations?); give a .pt file from embodied-train"
    if head.startswith(b"PK\x03\x04"):
        return (
            "a torch file holding Python objects or damaged; embodied checkpoints hold plain data only "
            "and are never unpickled"
        )
    if head[:1] == b"\x80":
        return "a Python pickle; embodied checkpoints hold plain data only and are never unpickled"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the end of the sample
            return "unknown binary content"
    return "a text file"


def checkpoint_config(payload: dict, path: str | Path) -> TrainConfig:
    return from_dict(TrainConfig, json.loads(payload["config"]), f"{path} (stored config)")


class LoadedRun(NamedTuple):
    """What :func:`load_model` rebuilds from a checkpoint."""

    kind: str
    """The run's objective (its ``mode``)."""
    models: dict[str, nn.Module]
    """``{name: model}`` in eval mode (policy, recognizer, mirror, ..., as the run had them)."""
    spec: DataSpec
    """The training data's spec."""
    config: TrainConfig


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedRun:
    """Rebuild the trained models of a checkpoint (a .pt file or a run folder), on ``device``,
    with the EMA weights when EMA was on."""
    payload = read_checkpoint(path)
    models = {}
    for name, entry in payload["models"].items():
        model, _, _ = rebuild(name, entry)
        models[name] = model.to(device).eval()
    spec = DataSpec.from_json(json.loads(payload["spec"]))
    return LoadedRun(payload["kind"], models, spec, checkpoint_config(payload, path))


def source_entry(payload: dict, path: str | Path, name: str) -> dict:
    """The stored model ``name`` of a read checkpoint, for probing; another kind is a UserError."""
    kind = payload["kind"]
    provides = checkpoint_objective(kind, str(checkpoint_path(path))).provides
    if name not in provides or name not in payload["models"]:
        raise UserError(f"{checkpoint_path(path)}: a {kind} checkpoint holds no trained {name}")
    return payload["models"][name]


# --------------------------------------------------------------------------- resume
def config_differences(old: dict, new: dict, free: tuple[str, ...], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts, leaving out ``free`` keys."""
    out = []
    for key in sorted(set(old) | set(new)):
        dotted = prefix + key
        if dotted in free:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, free, dotted + ".")
        elif a != b:
            out.append(f"{dotted}: {a!r} (checkpoint) vs {b!r}")
    return out


SPEC_FIELDS = (
    "action_dim",
    "obs_horizon",
    "action_horizon",
    "clip_len",
    "image_size",
    "mesh_detail",
    "classes",
    "instructions",
)
"""What of a DataSpec must match between a checkpoint and the data it goes on with."""


def check_spec(
    expected: DataSpec,
    got: DataSpec,
    where: str,
    keys: list[str] | None = None,
    fields: tuple[str, ...] = SPEC_FIELDS,
) -> None:
    """The data must be what a model was trained on: the same streams (all, or ``keys``) and ``fields``."""
    if keys is None:
        if sorted(expected.obs_shapes) != sorted(got.obs_shapes):
            raise UserError(
                f"the data does not match {where}: observation keys {sorted(got.obs_shapes)}, "
                f"the checkpoint's {sorted(expected.obs_shapes)}"
            )
        keys = list(expected.obs_shapes)
    for key in keys:
        a, b = expected.obs_shapes.get(key), got.obs_shapes.get(key)
        if a != b:
            raise UserError(
                f"the data does not match {where}: observation {key!r} has shape {b}, the checkpoint's {a}"
            )
    for name in fields:
        a, b = getattr(expected, name), getattr(got, name)
        if a != b:
            raise UserError(f"the data does not match {where}: {name} {b}, the checkpoint's {a}")


# --------------------------------------------------------------------------- random states
def rng_state() -> dict:
    """This process's python, numpy and torch (CPU and CUDA) random states as plain data."""
    version, mt, gauss = random.getstate()
    np_state = np.random.get_state(legacy=True)  # noqa: NPY002  (the global generator others may draw from)
    state = {
        "python": {"version": version, "state": list(mt), "gauss": gauss},
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, n["pos"], n["has_gauss"], n["gauss"]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def stats_to_tensors(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {k: {kk: torch.as_tensor(np.asarray(vv)) for kk, vv in v.items()} for k, v in stats.items()}


# --------------------------------------------------------------------------- the layout
def run_payload(cfg: TrainConfig, spec: DataSpec, stats: dict, entries: dict[str, dict]) -> dict:
    """The part of the layout every checkpoint holds (best.pt holds only this); ``entries``:
    :func:`model_entry` of each model."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": cfg.mode,
        "config": json.dumps(to_dict(cfg)),
        "spec": json.dumps(spec.to_json()),
        "stats": stats_to_tensors(stats),
        "models": entries,
    }


def training_state(
    *,
    step: int,
    sampler,
    num_samples: int,
    world_size: int,
    optimizer,
    scheduler,
    scaler,
    ema,
    module,
    best: dict,
    last: dict,
    rngs: list[dict],
    wall_s: float = 0.0,
) -> dict:
    """last.pt's ``train`` entry: everything an exact resume needs beyond the models. With EMA
    the models hold the averaged weights, so the trained ones are kept here too."""
    epoch, pos = sampler.position(step)
    return {
        "step": step,
        "epoch": epoch,
        "batch_in_epoch": pos,
        "batches_per_epoch": sampler.batches_per_epoch,
        "num_samples": num_samples,
        "world_size": world_size,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler else {},
        "ema": ema.state_dict() if ema else {},
        "weights": {k: v.detach().cpu() for k, v in module.state_dict().items()} if ema else {},
        "best": best,
        "last": last,
        "rng": rngs,
        # training wall time up to this step, across resumes (the summary's total)
        "wall_s": wall_s,
    }


def restore_training(
    saved: dict, module, optimizer, scheduler, scaler, ema, sampler, rank: int, world_size: int
) -> tuple[int, dict, dict, float]:
    """Load a last.pt's training state (:func:`training_state`) into the run's objects; returns
    (step, best, last metrics, training wall time so far; 0 from checkpoints older than it). A
    different number of processes or train split is an error."""
    state = saved["train"]
    if state["world_size"] != world_size:
        raise UserError(
            f"the checkpoint was trained by {state['world_size']} process(es); resume with as many "
            f"(torchrun --nproc_per_node={state['world_size']}), not {world_size}"
        )
    if (state["num_samples"], state["batches_per_epoch"]) != (sampler.num_samples, sampler.batches_per_epoch):
        raise UserError(
            f"the train split has {sampler.num_samples} samples; the checkpoint's had "
            f"{state['num_samples']} (the data changed since)"
        )
    if state["weights"]:
        module.load_state_dict(state["weights"])
    else:
        for name, entry in saved["models"].items():
            module.models[name].load_state_dict(entry["state"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"][rank])
    return int(state["step"]), dict(state["best"]), dict(state["last"]), float(state.get("wall_s", 0.0))
