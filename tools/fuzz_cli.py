"""Hunt for tracebacks a user can cause: every command, flag by flag and key by key, with the bad
values a user plausibly types (negative, zero, huge, wrong type, empty, NaN, a directory or a
text file where a file is asked for, an empty or truncated HDF5, unknown names, duplicates).

    OMP_NUM_THREADS=1 python tools/fuzz_cli.py                 # every case, two at a time
    python tools/fuzz_cli.py --only 'train (seed|threads)' --jobs 1   # the cases whose name matches
    python tools/fuzz_cli.py --list                            # the cases, without running them

Each case runs its command as a subprocess with a timeout and is classified:

    clean      exit 2, exactly one ``error: ...`` line (or argparse's usage + error), no traceback
    accepted   exit 0 (fine where the value is valid; a defect where the case expects a refusal)
    TRACEBACK  a Python traceback in the output
    EXIT n     any other exit status
    HANG       still running at the timeout
    MESSY      exit 2 with no error line, or several
    LEFTOVER   refused, but its output path exists (half-written), or a file it was refused on changed
    skipped    a full-disk case without root (it mounts a 64 KiB tmpfs as the output's disk)

Interrupted runs (SIGINT after a few seconds) are clean with exit 130 and no partial or temporary
file left; full-disk cases with exit 2, one line, and none left.

The fixtures (a tiny dataset of 2 tasks x 3 demos at 16 px, a policy run and a joint run of 2
steps, a LeRobot export, and bad files) are made once under --work (default /tmp/embodied_fuzz)
and reused; each case's command and output are kept in cases/<n>/output.txt there. The rule these
cases check is design.md's: a user's error ends in one clear line and exit status 2, never a
traceback, and nothing half-written is left behind. A full run takes about 30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REFUSE, ANY = "refuse", "any"


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: str = REFUSE
    """refuse: exit 2 is the only right answer; any: exit 0 is fine too (a valid value)."""
    timeout: float = 60.0
    interrupt_after: float | None = None
    """Send SIGINT this many seconds in (an interrupted run): exit 130 and no leftovers are clean."""
    unchanged: list[str] = field(default_factory=list)
    """Files that must be the same bytes after a refusal (upgrade refused must not touch its file)."""
    full_disk: bool = False
    """{out} lies on a 64 KiB tmpfs of its own (a full disk; needs root, else the case is skipped):
    exit 2, one line, and nothing but finished files left on it."""


def fixtures(work: Path) -> dict[str, str]:
    """Make the fixtures once; returns the placeholders the cases use."""
    import h5py
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    env = run_env()
    data = work / "data"
    if not (data / "window-open-v3.hdf5").exists():
        subprocess.run(
            ["embodied-data", "collect", "--tasks", "drawer-open-v3", "window-open-v3", "--episodes", "3"]
            + ["--image-size", "16", "--workers", "1", "--out", str(data)],
            check=True,
            env=env,
            capture_output=True,
        )
    tiny = ["data.batch_size=4", "val_batches=1", "log_every=1"]
    runs = {
        "run_policy": ["policy_quick", f"data.paths=[{data}]", "steps=2", *tiny],
        "run_joint": ["joint_quick", f"data.paths=[{data}]", "steps=2", *tiny]
        + ["recognizer.width=4", "recognizer.depth=1", "data.clip_len=4", "mirror.dim=8"],
    }
    for name, argv in runs.items():
        if not (work / name / "checkpoints" / "last.pt").exists():
            subprocess.run(
                ["embodied-train", *argv, "--out", str(work / name), "--overwrite"],
                check=True,
                env=env,
                capture_output=True,
            )
    if not (work / "export" / "meta" / "info.json").exists():
        subprocess.run(
            ["embodied-data", "export", str(data / "drawer-open-v3.hdf5"), "--format", "lerobot"]
            + ["--out", str(work / "export"), "--overwrite"],
            check=True,
            env=env,
            capture_output=True,
        )
    bad = work / "bad"
    bad.mkdir(exist_ok=True)
    (bad / "text.hdf5").write_text("not an HDF5 file\n")
    (bad / "empty_file.hdf5").write_bytes(b"")
    (bad / "dir.hdf5").mkdir(exist_ok=True)
    (bad / "emptydir").mkdir(exist_ok=True)
    (bad / "textdir").mkdir(exist_ok=True)
    (bad / "textdir" / "notes.txt").write_text("hello\n")
    with h5py.File(bad / "empty.hdf5", "w"):
        pass
    with h5py.File(bad / "nodemos.hdf5", "w") as f:
        f.create_group("data").attrs["total"] = 0
    src = data / "drawer-open-v3.hdf5"
    blob = src.read_bytes()
    (bad / "truncated.hdf5").write_bytes(blob[: len(blob) // 2])
    shutil.copy(src, bad / "drawér ünïcode.hdf5")
    with h5py.File(bad / "nan_actions.hdf5", "w") as f:
        h5py_copy(h5py.File(src, "r"), f)
        f["data/demo_0/actions"][0] = np.nan
    pt = (work / "run_policy" / "checkpoints" / "last.pt").read_bytes()
    (bad / "truncated.pt").write_bytes(pt[: len(pt) // 2])
    (bad / "text.pt").write_text("not a checkpoint\n")
    (bad / "empty.pt").write_bytes(b"")
    (bad / "list.yaml").write_text("- a\n- b\n")
    (bad / "empty.yaml").write_text("")
    (bad / "broken.yaml").write_text("mode: [policy\n")
    (bad / "unknown_key.yaml").write_text("mode: policy\nbogus: 1\n")
    (bad / "binary.yaml").write_bytes(bytes(range(256)))
    (bad / "text.mp4").write_text("not a video\n")
    (bad / "lerobot_nometa").mkdir(exist_ok=True)
    (bad / "lerobot_badjson" / "meta").mkdir(parents=True, exist_ok=True)
    (bad / "lerobot_badjson" / "meta" / "info.json").write_text("{not json")
    (bad / "lerobot_emptyjson" / "meta").mkdir(parents=True, exist_ok=True)
    (bad / "lerobot_emptyjson" / "meta" / "info.json").write_text("{}")
    return {
        "data": str(data),
        "h5": str(src),
        "h5b": str(data / "window-open-v3.hdf5"),
        "run_policy": str(work / "run_policy"),
        "run_joint": str(work / "run_joint"),
        "export": str(work / "export"),
        "ckpt": str(work / "run_policy" / "checkpoints" / "last.pt"),
        **{k: str(bad / v) for k, v in BAD.items()},
    }


BAD = {
    "text_h5": "text.hdf5",
    "empty_file_h5": "empty_file.hdf5",
    "dir_h5": "dir.hdf5",
    "emptydir": "emptydir",
    "textdir": "textdir",
    "empty_h5": "empty.hdf5",
    "nodemos_h5": "nodemos.hdf5",
    "truncated_h5": "truncated.hdf5",
    "unicode_h5": "drawér ünïcode.hdf5",
    "nan_h5": "nan_actions.hdf5",
    "truncated_pt": "truncated.pt",
    "text_pt": "text.pt",
    "empty_pt": "empty.pt",
    "list_yaml": "list.yaml",
    "empty_yaml": "empty.yaml",
    "broken_yaml": "broken.yaml",
    "unknown_yaml": "unknown_key.yaml",
    "binary_yaml": "binary.yaml",
    "text_mp4": "text.mp4",
    "lerobot_nometa": "lerobot_nometa",
    "lerobot_badjson": "lerobot_badjson",
    "lerobot_emptyjson": "lerobot_emptyjson",
}


def h5py_copy(src, dst) -> None:
    for key, value in src.attrs.items():
        dst.attrs[key] = value
    for key in src:
        src.copy(src[key], dst, name=key)


# A path no process can create (its parent is a file), and one under /proc (not writable).
NOT_DIR = "/etc/hostname/sub"


def cases() -> list[Case]:
    c: list[Case] = []

    def add(name, argv, expect=REFUSE, **kw):
        c.append(Case(name, list(argv), expect, **kw))

    # ---------------------------------------------------------------- embodied-data collect
    base = ["embodied-data", "collect", "--tasks", "drawer-open-v3", "--episodes", "1"]
    base += ["--image-size", "8", "--workers", "1", "--horizon", "5", "--keep-failures", "--out", "{out}"]
    bad_flags = {
        "--suite": ["nope", "", "robosuite"],
        "--tasks": ["nope", "", "ünïcode", "[]"],
        "--episodes": ["0", "-1", "10000000000", "abc", "1.5"],
        "--cameras": ["nope", "", "corner nope"],
        "--image-size": ["0", "-8", "100000", "7", "abc"],
        "--mesh-detail": ["bogus"],
        "--seed": ["-1", "18446744073709551616", "abc"],
        "--out": ["{file}", NOT_DIR, "/proc/fuzz_out"],
        "--workers": ["0", "-1", "100000"],
        "--action-noise": ["-1", "nan", "inf"],
        "--horizon": ["-1", "1000000"],
        "--valid-fraction": ["-0.1", "1.5", "nan"],
        "--max-attempts": ["0", "-1"],
    }
    for flag, values in bad_flags.items():
        for v in values:
            add(f"collect {flag} {v!r}", replace_flag(base, flag, v))
    add("collect --tasks duplicated", replace_flag(base, "--tasks", "drawer-open-v3 drawer-open-v3"), ANY)
    add("collect --cameras duplicated", replace_flag(base, "--cameras", "corner corner"), ANY)
    add("collect --valid-fraction 1", replace_flag(base, "--valid-fraction", "1"), ANY)
    for recipe in ["nope", "{emptydir}", "{text_h5}", "{list_yaml}", "{broken_yaml}", "{binary_yaml}"]:
        add(f"collect recipe {recipe}", ["embodied-data", "collect", recipe, "--out", "{out}"])
    add("collect recipe unknown key", ["embodied-data", "collect", "{unknown_yaml}", "--out", "{out}"])
    add(
        "collect interrupted",
        replace_flag(replace_flag(base, "--episodes", "50"), "--horizon", "100"),
        interrupt_after=12,
    )

    # ---------------------------------------------------------------- info, validate, upgrade
    bad_paths = ["/nonexistent.hdf5", "{emptydir}", "{textdir}", "{text_h5}", "{empty_file_h5}"]
    bad_paths += ["{dir_h5}", "{empty_h5}", "{nodemos_h5}", "{truncated_h5}", ""]
    for verb in ("info", "validate"):
        for p in bad_paths:
            ok = ANY if (verb, p) == ("info", "{nodemos_h5}") else REFUSE  # info reports 0 demos
            add(f"{verb} {p or repr(p)}", ["embodied-data", verb, p], ok)
        add(f"{verb} unicode name", ["embodied-data", verb, "{unicode_h5}"], ANY)
        add(f"{verb} NaN actions", ["embodied-data", verb, "{nan_h5}"], ANY if verb == "info" else REFUSE)
        add(f"{verb} same file twice", ["embodied-data", verb, "{h5}", "{h5}"], ANY)
    for p in bad_paths:
        if p and not p.startswith("/nonexistent") and "dir" not in p:
            add(f"upgrade {p}", ["embodied-data", "upgrade", "{copy:" + p + "}"], unchanged=["{copy}"])
            add(
                f"upgrade --checksums {p}",
                ["embodied-data", "upgrade", "--checksums", "{copy:" + p + "}"],
                unchanged=["{copy}"],
            )
        else:
            add(f"upgrade {p or repr(p)}", ["embodied-data", "upgrade", p])

    # ---------------------------------------------------------------- replay, video
    for demo in ["demo_99", "", "data", "../demo_0", "demo_-1"]:
        add(f"replay --demo {demo!r}", ["embodied-data", "replay", "{h5}", "--demo", demo])
        add(
            f"video --demo {demo!r}", ["embodied-data", "video", "{h5}", "--demo", demo, "--out", "{out}.mp4"]
        )
    for p in ["/nonexistent.hdf5", "{text_h5}", "{empty_h5}", "{truncated_h5}", "{dir_h5}"]:
        add(f"replay {p}", ["embodied-data", "replay", p, "--demo", "demo_0"])
        add(f"video {p}", ["embodied-data", "video", p, "--demo", "demo_0", "--out", "{out}.mp4"])
    vbase = ["embodied-data", "video", "{h5}", "--demo", "demo_0", "--out", "{out}.mp4"]
    for flag, values in {
        "--out": ["{out}.avi", "{out}", "", "{emptydir}", NOT_DIR + ".mp4"],
        "--camera": ["nope", ""],
        "--fps": ["0", "-1", "nan", "100000"],
        "--size": ["-1", "5", "100000", "abc"],
    }.items():
        for v in values:
            add(f"video {flag} {v!r}", replace_flag(vbase, flag, v))

    # ---------------------------------------------------------------- export, import
    ebase = ["embodied-data", "export", "{h5}", "--format", "lerobot", "--out", "{out}"]
    for v in ["0", "-1", "nan", "inf", "abc"]:
        add(f"export --fps {v}", replace_flag(ebase, "--fps", v))
    for v in ["{file}", "{emptydir}", NOT_DIR, ""]:
        add(f"export --out {v!r}", replace_flag(ebase, "--out", v))
    add("export --format nope", replace_flag(ebase, "--format", "nope"))
    for p in ["/nonexistent.hdf5", "{text_h5}", "{empty_h5}", "{nodemos_h5}", "{truncated_h5}", "{emptydir}"]:
        add(f"export {p}", ["embodied-data", "export", p, "--format", "lerobot", "--out", "{out}"])
    add(
        "export same file twice",
        ["embodied-data", "export", "{h5}", "{h5}", "--format", "lerobot"] + ["--out", "{out}"],
        ANY,
    )
    for p in ["/nonexistent", "{emptydir}", "{h5}", "{lerobot_nometa}", "{lerobot_badjson}"]:
        add(f"import {p}", ["embodied-data", "import", p, "--format", "lerobot", "--out", "{out}"])
    add(
        "import {lerobot_emptyjson}",
        ["embodied-data", "import", "{lerobot_emptyjson}", "--format"] + ["lerobot", "--out", "{out}"],
    )

    # ---------------------------------------------------------------- embodied-train
    tbase = ["embodied-train", "policy_quick", "data.paths=[{data}]", "steps=1", "data.batch_size=4"]
    tbase += ["val_batches=1", "--out", "{out}"]
    rbase = ["embodied-train", "recognizer_quick", "data.paths=[{data}]", "steps=1", "data.batch_size=2"]
    rbase += [
        "val_batches=1",
        "recognizer.width=4",
        "recognizer.depth=1",
        "data.clip_len=4",
        "--out",
        "{out}",
    ]
    jbase = ["embodied-train", "joint_quick", "data.paths=[{data}]", "steps=1", "data.batch_size=2"]
    jbase += ["val_batches=1", "recognizer.width=4", "recognizer.depth=1", "data.clip_len=4"]
    jbase += ["mirror.dim=8", "--out", "{out}"]
    top = {
        "steps": ["0", "-1", "1e3", "''", ".nan", "100000000000000000000"],
        "log_every": ["0", "-1"],
        "val_every": ["-1"],
        "val_batches": ["0", "-1"],
        "ckpt_every": ["-1"],
        "rollout_every": ["-1"],
        "rollout_episodes": ["0", "-1"],
        "rollout_videos": ["-1"],
        "seed": ["-1", "1180591620717411303424", "abc"],
        "threads": ["-1", "100000"],
        "device": ["tpu", "cuda", "''"],
        "precision": ["fp16"],
        "mode": ["nope", "''", "probe", "frozen_u"],
        "out": ["''", NOT_DIR, "/proc/fuzz_out", "{file}"],
        "channels_last": ["maybe"],
        "wandb.mode": ["online", "x"],
        "data.paths": ["[]", "[/nonexistent]", "[{text_h5}]", "[{empty_h5}]", "[{emptydir}]", "[{textdir}]"]
        + ["[{truncated_h5}]", "[{nodemos_h5}]", "[{dir_h5}]", "''", "[{data},{data}]", "[{nan_h5}]"],
        "data.obs_keys": ["[nope]", "[]"],
        "data.obs_horizon": ["5", "0"],
        "data.action_horizon": ["0", "-1", "100000"],
        "data.batch_size": ["0", "-1", "1000000000", "1.5"],
        "data.num_workers": ["-1", "100000"],
        "data.image_cache_bytes": ["-1"],
        "data.max_demos": ["-1", "1000000"],
        "data.action_demos": ["-1", "1000000"],
        "optim.lr": ["0", "-1", ".inf", ".nan", "abc"],
        "optim.weight_decay": ["-1", ".nan", ".inf"],
        "optim.betas": ["[0.9]", "[]", "[2,3]", ".nan"],
        "optim.schedule": ["linear"],
        "optim.warmup_steps": ["-1", "1000000"],
        "optim.grad_clip": ["-1", ".nan", ".inf"],
        "optim.ema": ["1", "-0.1", ".nan"],
        "policy": ["3", "[]", "null"],
        "policy.name": ["nope", "''"],
        "policy.hidden_dim": ["0", "-1", "1000000000"],
        "policy.num_layers": ["0", "-1", "100000"],
        "policy.dropout": ["-0.5", "1.5", ".nan"],
        "policy.conditioning": ["x"],
        "policy.obs_keys": ["[nope]", "[]", "[corner_image]", "[robot_state,robot_state]"],
        "policy.head": ["3"],
        "policy.head.name": ["nope"],
        "policy.head.loss": ["x"],
        "policy.feature_tap": ["nope"],
        "policy.crop_fraction": ["0", "2", "-1"],
        "policy.instruction_dim": ["0", "-1"],
        "policy.low_dim_embed": ["0", "-1"],
        "policy.image_embed": ["0"],
        "policy.image_keypoints": ["0"],
        "policy.image_channels": ["0"],
    }
    valid = {"data.paths=[{data},{data}]", "data.max_demos=1000000", "data.action_demos=1000000"}
    valid |= {"optim.warmup_steps=1000000", "policy.obs_keys=[corner_image]"}  # an image policy
    for key, values in top.items():
        for v in values:
            argv = [*(tbase[:-2] if key == "out" else tbase), f"{key}={v}"]
            add(f"train {key}={v}", argv, ANY if f"{key}={v}" in valid else REFUSE)
    for v in ["0", "-1", "1000"]:
        add(f"train bc_rnn policy.history={v}", [*tbase, "policy.name=bc_rnn", f"policy.history={v}"])
    add("train bc_transformer num_heads=3", [*tbase, "policy.name=bc_transformer", "policy.num_heads=3"])
    add("train bc_transformer num_heads=0", [*tbase, "policy.name=bc_transformer", "policy.num_heads=0"])
    act = [*tbase, "policy.name=act", "policy.head.name=chunk", "policy.hidden_dim=16", "policy.num_heads=2"]
    act += ["policy.feedforward_dim=16"]
    for kv in ["policy.num_heads=3", "policy.latent_dim=0", "policy.kl_weight=-1", "policy.vae_layers=0"]:
        add(f"train act {kv}", [*act, kv])
    add("train act policy.decoder_layers=0", [*act, "policy.decoder_layers=0"])
    add("train chunk execute_steps=0", [*act, "policy.head.execute_steps=0"])
    add("train chunk execute_steps=99", [*act, "data.action_horizon=4", "policy.head.execute_steps=99"])
    add(
        "train chunk ensemble_coeff=.nan",
        [*act, "policy.head.temporal_ensemble=true"] + ["policy.head.ensemble_coeff=.nan"],
    )
    diff = [*tbase, "policy.name=diffusion", "policy.head.name=diffusion", "data.action_horizon=16"]
    diff += ["policy.head.down_dims=[8,16]", "policy.head.n_groups=4", "policy.head.step_embed_dim=8"]
    for kv in ["policy.head.horizon=32", "policy.head.n_groups=3", "policy.head.down_dims=[]"]:
        add(f"train diffusion {kv}", [*diff, kv])
    for kv in ["policy.head.num_inference_steps=0", "policy.head.num_train_timesteps=0"]:
        add(f"train diffusion {kv}", [*diff, kv])
    for kv in ["policy.head.n_action_steps=0", "policy.head.n_action_steps=99", "policy.head.kernel_size=0"]:
        add(f"train diffusion {kv}", [*diff, kv])
    add("train diffusion num_inference_steps>train", [*diff, "policy.head.num_inference_steps=1000"])
    add("train diffusion policy.head.sampler=x", [*diff, "policy.head.sampler=x"])
    add("train diffusion down_dims=[0]", [*diff, "policy.head.down_dims=[0]"])
    for kv in ["policy.head.modes=0", "policy.head.min_std=-1", "policy.head.min_std=.nan"]:
        add(f"train gmm {kv}", [*tbase, "policy.head.name=gmm", kv])
    add("train gmm predict=x", [*tbase, "policy.head.name=gmm", "policy.head.predict=x"])
    rec = {
        "data.camera": ["nope", "''", "corner_image"],
        "data.clip_len": ["0", "-1", "100000"],
        "data.clip_stride": ["0", "-1", "100000"],
        "recognizer": ["3"],
        "recognizer.name": ["nope"],
        "recognizer.width": ["0", "-1", "1000000"],
        "recognizer.depth": ["0", "100"],
        "recognizer.blocks": ["0"],
        "recognizer.kernel_size": ["2", "0", "-1"],
        "recognizer.temporal_kernel": ["2"],
        "recognizer.stem_kernel": ["4"],
        "recognizer.crop_fraction": ["0", "2"],
        "recognizer.color_jitter": ["-1", "2", ".nan"],
        "recognizer.input_size": ["3", "-1", "100000"],
        "recognizer.feature_tap": ["nope"],
        "recognizer.dropout": ["2", "-1"],
        "recognizer.instruction_loss_weight": ["-1", ".nan"],
    }
    for key, values in rec.items():
        for v in values:
            add(f"train recognizer {key}={v}", [*rbase, f"{key}={v}"])
    vt = [*rbase, "recognizer.name=video_transformer", "recognizer.width=8", "recognizer.heads=2"]
    for kv in ["recognizer.heads=3", "recognizer.heads=0", "recognizer.patch_size=0"]:
        add(f"train video_transformer {kv}", [*vt, kv])
    for kv in ["recognizer.patch_size=1000", "recognizer.tubelet_frames=0", "recognizer.tubelet_frames=100"]:
        add(f"train video_transformer {kv}", [*vt, kv])
    add("train video_transformer mlp_ratio=0", [*vt, "recognizer.mlp_ratio=0"])
    mir = {
        "mirror": ["3"],
        "mirror.dim": ["0", "-1", "1000000"],
        "mirror.temperature": ["0", "-1", ".nan", ".inf"],
        "mirror.positives": ["x"],
        "mirror.weight": ["-1", ".nan"],
        "mirror.lambda_ee": ["-1", ".nan"],
        "mirror.lr": ["0", "-1", ".nan"],
    }
    for key, values in mir.items():
        for v in values:
            add(f"train joint {key}={v}", [*jbase, f"{key}={v}"])
    pbase = ["embodied-train", "probe_quick", "data.paths=[{data}]", "steps=1", "data.batch_size=2"]
    pbase += ["val_batches=1", "--out", "{out}"]
    good = ["probe.policy_ckpt={run_joint}", "probe.recognizer_ckpt={run_joint}", "mirror.dim=8"]
    for what in ("policy_ckpt", "recognizer_ckpt"):
        for v in ["/nonexistent", "{emptydir}", "{text_pt}", "{empty_pt}", "{truncated_pt}", "{h5}", "''"]:
            add(f"train probe.{what}={v}", [*pbase, *good, f"probe.{what}={v}"])
    add("train probe.recognizer_ckpt=policy run", [*pbase, *good, "probe.recognizer_ckpt={run_policy}"])
    add("train probe.init=x", [*pbase, *good, "probe.init=x"])
    for item in ["foo", "=1", ".=1", "data..paths=1", "data=3", "data.paths.x=1", "ünï=1", "steps"]:
        add(f"train override {item!r}", [*tbase, item])
    for cfg in ["nope", "{emptydir}", "{text_h5}", "{list_yaml}", "{broken_yaml}", "{binary_yaml}"]:
        add(f"train config {cfg}", ["embodied-train", cfg, "--out", "{out}"])
    add(
        "train config empty yaml",
        ["embodied-train", "{empty_yaml}", "data.paths=[{data}]", "steps=1"]
        + ["data.batch_size=4", "val_batches=1", "--out", "{out}"],
        ANY,
    )
    for d in ["/nonexistent", "{emptydir}", "{h5}", "{textdir}"]:
        add(f"train --resume {d}", ["embodied-train", "--resume", d])
    add(
        "train --resume changed hidden_dim",
        ["embodied-train", "--resume", "{copy:run_policy}"] + ["policy.hidden_dim=8"],
    )
    add("train --resume truncated last.pt", ["embodied-train", "--resume", "{copy_trunc:run_policy}"])
    add(
        "train --resume other config", ["embodied-train", "recognizer_quick", "--resume", "{copy:run_policy}"]
    )
    add("train --out existing run", ["embodied-train", "policy_quick", "--out", "{run_policy}"])
    add("train --out a file", [*tbase[:-2], "--out", "{file}"])
    add("train interrupted", [*tbase, "steps=100000", "val_every=0"], interrupt_after=20, timeout=90)

    # ---------------------------------------------------------------- embodied-eval
    ev = ["embodied-eval", "{run_policy}", "--episodes", "1", "--workers", "0", "--horizon", "3"]
    ev += ["--out", "{out}"]
    for p in ["/nonexistent", "{emptydir}", "{text_pt}", "{empty_pt}", "{truncated_pt}", "{h5}", ""]:
        add(f"eval checkpoint {p or repr(p)}", ["embodied-eval", p, "--out", "{out}"])
    evf = {
        "--episodes": ["0", "-1", "abc", "1000000000000"],
        "--tasks": ["nope", "", "button-press-topdown-v3", "mt10"],
        "--suite": ["nope", "robosuite"],
        "--workers": ["-1", "100000"],
        "--seed-start": ["-1", "18446744073709551616"],
        "--horizon": ["-1", "100000000"],
        "--protocol": ["nope", ""],
        "--seed": ["-1", "18446744073709551616"],
        "--videos": ["-1"],
        "--cameras": ["nope", ""],
        "--fps": ["0", "-1", "nan"],
        "--video-size": ["-1", "5", "100000"],
        "--judge-episodes": ["-1"],
        "--data": ["/nonexistent", "{text_h5}", "{emptydir}"],
        "--clips": ["0", "-1"],
        "--crop": ["bad", "1,2,3", "-1,0,5,5", "0,0,0,0"],
        "--device": ["tpu", "cuda", "", "cuda:7"],
        "--out": ["{file}", NOT_DIR, "/proc/fuzz_out"],
    }
    for flag, values in evf.items():
        for v in values:
            add(f"eval {flag} {v!r}", replace_flag(ev, flag, v))
    add("eval --tasks duplicated", replace_flag(ev, "--tasks", "drawer-open-v3 drawer-open-v3"), ANY)
    add("eval --videos more than episodes", replace_flag(ev, "--videos", "100000"), ANY)  # the first K
    add("eval --videos 1 --fps 0", [*ev, "--videos", "1", "--fps", "0"])
    add("eval --classify without recognizer", ["embodied-eval", "{run_policy}", "--classify", "{text_mp4}"])
    for v in ["/nonexistent.mp4", "{text_mp4}", "{emptydir}", "{h5}"]:
        add(f"eval --classify {v}", ["embodied-eval", "{run_joint}", "--classify", v])
    add(
        "eval joint --data text",
        ["embodied-eval", "{run_joint}", "--episodes", "1", "--workers", "0"]
        + ["--horizon", "3", "--data", "{text_h5}", "--out", "{out}"],
    )
    add(
        "eval interrupted",
        [*replace_flag(replace_flag(ev, "--episodes", "200"), "--horizon", "200")],
        interrupt_after=20,
        timeout=90,
    )

    # ---------------------------------------------------------------- a full disk
    full = {
        "collect": base,
        "train": tbase,
        "train joint": jbase,
        "export": ebase,
        "import": ["embodied-data", "import", "{export}", "--format", "lerobot", "--out", "{out}"],
        "video": [*vbase[:-1], "{out}/demo.mp4", "--size", "64"],
        "eval": [*replace_flag(ev, "--horizon", "40"), "--videos", "1", "--video-size", "256"],
    }
    for name, argv in full.items():
        add(f"full disk: {name}", argv, full_disk=True, timeout=120)

    # ---------------------------------------------------------------- embodied-bench
    bb = ["embodied-bench", "--preset", "tiny", "data.paths=[{data}]", "--out", "{out}", "--report-only"]
    bench = {
        "--preset": ["nope", "{emptydir}", "{list_yaml}", "{text_h5}"],
        "--seeds": ["abc", "1000000000"],
        "--out": ["{file}", NOT_DIR, ""],
        "--only-seeds": ["-1", "99", "abc"],
        "--only-methods": ["nope", ""],
        "--launcher": ["x"],
        "--jobs": ["0", "-1", "abc"],
        "--slurm-time": ["abc", "-5", "0"],
        "--slurm-cpus-per-task": ["0", "-1"],
        "--slurm-gpus-per-task": ["-1"],
        "--slurm-mem": ["-1", "0", "nan"],
        "--slurm-array-parallelism": ["0"],
        "--slurm-additional": ["noequals", "=x"],
        "--ablations": ["/nonexistent.yaml", "{list_yaml}", "{emptydir}"],
    }
    for flag, values in bench.items():
        for v in values:
            argv = replace_flag(bb, flag, v) if flag in bb else [*bb, flag, v]
            add(f"bench {flag} {v!r}", argv)
    bover = {
        "seeds": ["0", "-1"],
        "name": ["''", "a/b"],
        "data.paths": ["[]", "[/nonexistent]"],
        "data.recipe": ["nope"],
        "eval.episodes": ["0", "-1"],
        "eval.workers": ["-1"],
        "eval.horizon": ["0", "-1"],
        "eval.protocol": ["nope"],
        "eval.protocol_seed": ["-1"],
        "eval.seed_start": ["-1"],
        "eval.tasks": ["[nope]", "[]"],
        "eval.suite": ["nope"],
        "eval.clips_per_video": ["0"],
        "eval.envs_per_worker": ["0"],
        "launcher.jobs": ["0"],
        "launcher.poll_s": ["0", "-1", ".nan"],
        "launcher.timeout_min": ["0", "-1"],
        "launcher.mem_gb": ["-1"],
        "launcher.cpus_per_task": ["0"],
        "device": ["tpu"],
        "policy.config": ["nope"],
        "policy.overrides": ["[bogus=1]", "[noequals]"],
        "shared": ["[bogus=1]"],
        "ablations": ["nope"],
    }
    for key, values in bover.items():
        for v in values:
            add(f"bench {key}={v}", [*bb, f"{key}={v}"])
    add("bench data.paths text file", [*bb[:-1], "data.paths=[{text_h5}]"], timeout=90)
    return c


def replace_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag``'s value(s) replaced by ``value`` (split on spaces; added if absent)."""
    values = value.split(" ") if value else [""]
    if flag not in argv:
        return [*argv, flag, *values]
    i = argv.index(flag)  # every flag of the bases takes one value
    return [*argv[: i + 1], *values, *argv[i + 2 :]]


def run_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MUJOCO_GL", "egl")
    env["PYTHONWARNINGS"] = "ignore"
    return env


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def run_case(i: int, case: Case, fx: dict[str, str], work: Path) -> tuple[str, str]:
    """Run one case; returns (verdict, detail)."""
    scratch = work / "cases" / f"{i:03d}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    out = scratch / "out"
    disk = scratch / "full"
    if case.full_disk:
        if not mount_tmpfs(disk, 64 << 10):
            return "skipped", "a full disk needs root, to mount a tmpfs"
        out = disk / "out"
    try:
        return _run_case(case, fx, scratch, out, disk)
    finally:
        if case.full_disk:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def mount_tmpfs(folder: Path, size: int) -> bool:
    folder.mkdir(exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)]
    return subprocess.run(mount, capture_output=True).returncode == 0


def _run_case(case: Case, fx: dict[str, str], scratch: Path, out: Path, disk: Path) -> tuple[str, str]:
    plain = scratch / "a_file"
    plain.write_text("a file, not a folder\n")
    subs = {**fx, "out": str(out), "file": str(plain)}
    copy = None

    def fill(arg: str) -> str:
        nonlocal copy
        if arg.startswith(("{copy:", "{copy_trunc:")):
            kind, key = arg[1:-1].split(":", 1)
            src = Path(fill(key) if key.startswith("{") else subs[key])
            copy = scratch / src.name
            if src.is_dir():
                shutil.copytree(src, copy)
                if kind == "copy_trunc":
                    last = copy / "checkpoints" / "last.pt"
                    last.write_bytes(last.read_bytes()[:1000])
            else:
                shutil.copy(src, copy)
            return str(copy)
        for k, v in subs.items():
            arg = arg.replace("{" + k + "}", v)
        return arg

    argv = [fill(a) for a in case.argv]
    watched = [Path(fill(p).replace("{copy}", str(copy))) for p in case.unchanged]
    before = {p: digest(p) for p in watched}
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        env=run_env(),
        cwd=scratch,
        start_new_session=True,
        # A shell's background job ignores SIGINT, and so would the command (Python installs
        # its KeyboardInterrupt handler only where SIGINT is not ignored): restore it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        if case.interrupt_after is not None:
            try:
                proc.wait(case.interrupt_after)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=case.timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        (scratch / "output.txt").write_text(f"$ {' '.join(argv)}\nstill running after {case.timeout} s\n")
        return "HANG", f"still running after {case.timeout:.0f} s"
    took = time.monotonic() - start
    rc = proc.returncode
    text = stdout + stderr
    (scratch / "output.txt").write_text(f"$ {' '.join(argv)}\nexit {rc}\n{stdout}\n--- stderr\n{stderr}")
    errors = [line for line in stderr.splitlines() if line.startswith("error: ") or ": error: " in line]
    if argv[:2] == ["embodied-data", "validate"]:  # its report: a line per problem, then the verdict
        errors = [line for line in stderr.splitlines() if line.startswith("invalid: ")]
    last = errors[-1] if errors else (stderr.strip().splitlines() or [""])[-1]
    detail = f"{took:4.1f}s {last[:160]}"
    if "Traceback (most recent call last)" in text:
        tail = [line for line in text.splitlines() if line.strip()][-1:]
        return "TRACEBACK", f"{took:4.1f}s {tail[0][:160] if tail else ''}"
    if case.interrupt_after is not None or case.full_disk:
        left = leftovers(disk if case.full_disk else out)
        if case.full_disk and rc == 2 and len(errors) == 1:
            return ("LEFTOVER", f"{detail} partial: {left}") if left else ("clean", detail)
        if case.full_disk and rc == 0:
            return "ACCEPTED", f"{detail} (it fitted on the disk)"
        if rc not in (0, 130):
            return f"EXIT {rc}", detail
        return ("LEFTOVER", f"{detail} partial: {left}") if left else ("clean", f"{took:4.1f}s exit {rc}")
    if rc == 0:
        return ("accepted" if case.expect == ANY else "ACCEPTED"), detail
    if rc != 2:
        return f"EXIT {rc}", detail
    changed = [str(p) for p in watched if digest(p) != before[p]]
    if changed:
        return "LEFTOVER", f"{detail} changed: {changed}"
    if out.exists() or Path(f"{out}.mp4").exists() or Path(f"{out}.avi").exists():
        return "LEFTOVER", f"{detail} left {out}*"
    if len(errors) != 1:
        return "MESSY", f"{took:4.1f}s {len(errors)} error lines: {stderr.strip()[-200:]}"
    return "clean", detail


def leftovers(out: Path) -> list[str]:
    """Files under ``out`` that are temporary or half-written (``*.tmp*``, partial names)."""
    if not out.exists():
        return []
    return [
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.name.endswith(".part") or ".tmp" in p.name or p.name.startswith(".")
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work", default="/tmp/embodied_fuzz", help="fixtures and scratch folders")
    parser.add_argument("--jobs", type=int, default=2, help="cases at once")
    parser.add_argument("--only", default="", help="only the cases whose name matches this regex")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args()
    todo = [c for c in cases() if re.search(args.only, c.name)]
    if args.list:
        for c in todo:
            print(f"{c.name:60s} {' '.join(c.argv)}")
        return 0
    work = Path(args.work)
    print(f"making fixtures under {work} ...", flush=True)
    fx = fixtures(work)
    print(f"{len(todo)} cases, {args.jobs} at a time", flush=True)
    counts: dict[str, int] = {}
    bad = 0

    def one(item):
        i, case = item
        return case, run_case(i, case, fx, work)

    with ThreadPoolExecutor(args.jobs) as pool:
        for case, (verdict, detail) in pool.map(one, enumerate(todo)):
            counts[verdict.split()[0]] = counts.get(verdict.split()[0], 0) + 1
            defect = verdict not in ("clean", "accepted")
            bad += defect
            print(f"{'!!' if defect else '  '} {verdict:9s} {case.name:55s} {detail}", flush=True)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + f"; defects: {bad}/{len(todo)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
