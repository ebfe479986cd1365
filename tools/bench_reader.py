"""Reader throughput: embodied's DemoDataset against robomimic's SequenceDataset, same file, same run.

    python tools/bench_reader.py                      # collects a small file if none is given
    python tools/bench_reader.py datasets/quick/drawer-open-v3.hdf5 --seq 10 --batches 200

Both read execution windows of ``--seq`` steps (observations and actions) of the same
low-dim keys (``--images`` adds the camera stream to both) with a DataLoader of the same
batch size in the main process, robomimic with its recommended ``hdf5_cache_mode="low_dim"``.
Prints samples/s, the ratio (target >= 3x) and the memory each dataset added (RSS).
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import psutil
import torch

LOW_DIM = ["robot_state", "object_state", "goal"]


def rss() -> float:
    gc.collect()
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def throughput(loader, batches: int) -> float:
    it = iter(loader)
    next(it)  # warm-up
    n, t0 = 0, time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        n += len(batch["actions"])
    return n / (time.perf_counter() - t0)


def ensure_file(path: str | None) -> Path:
    if path:
        return Path(path)
    from embodied.data.collect import CollectConfig, collect_task

    out = Path(tempfile.mkdtemp()) / "drawer-open-v3.hdf5"
    cfg = CollectConfig(tasks=["drawer-open-v3"], episodes=20, image_size=64, out=str(out.parent))
    collect_task(cfg, "drawer-open-v3", out)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", nargs="?", help="a demonstration file (default: collect 20 demos of drawer-open)")
    p.add_argument("--seq", type=int, default=10, help="window length (robomimic's default history is 10)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--images", action="store_true", help="also read the corner camera stream")
    args = p.parse_args()
    torch.set_num_threads(1)
    path = ensure_file(args.path)
    keys = LOW_DIM + (["corner_image"] if args.images else [])

    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset

    from embodied.data.reader import DemoDataset, make_loader

    ObsUtils.initialize_obs_utils_with_obs_specs(
        {"obs": {"low_dim": LOW_DIM, "rgb": [k for k in keys if k.endswith("_image")]}}
    )
    m0 = rss()
    theirs = SequenceDataset(
        str(path),
        obs_keys=keys,
        dataset_keys=["actions"],
        seq_length=args.seq,
        frame_stack=1,
        pad_seq_length=True,
        pad_frame_stack=True,
        get_pad_mask=True,
        hdf5_cache_mode="low_dim",
        load_next_obs=False,
    )
    m1 = rss()
    ours = DemoDataset(path, split="all", obs_keys=keys, obs_horizon=args.seq, action_horizon=args.seq)
    m2 = rss()
    rm_loader = torch.utils.data.DataLoader(
        theirs, batch_size=args.batch, shuffle=True, num_workers=0, drop_last=True
    )
    our_loader = make_loader(ours, args.batch, shuffle=True, seed=0)

    rm = throughput(rm_loader, args.batches)
    em = throughput(our_loader, args.batches)
    print(f"file: {path}  samples: {len(ours)}  window: {args.seq}  keys: {', '.join(keys)}")
    print(f"{'reader':<28}{'samples/s':>12}{'memory (MiB)':>15}")
    print(f"{'robomimic SequenceDataset':<28}{rm:>12.0f}{m1 - m0:>15.1f}")
    print(f"{'embodied DemoDataset':<28}{em:>12.0f}{m2 - m1:>15.1f}")
    print(f"embodied/robomimic = {em / rm:.1f}x (target >= 3x)")


if __name__ == "__main__":
    main()
