"""Reader throughput: embodied's DemoDataset against robomimic's SequenceDataset, same file, same run.

    python tools/bench_reader.py                      # collects a small file if none is given
    python tools/bench_reader.py datasets/quick/drawer-open-v3.hdf5 --seq 10 --batches 200

Both read execution windows of ``--seq`` steps (observations and actions) of the same
low-dim keys (``--images`` adds the camera stream to both) with a DataLoader of the same
batch size in the main process, robomimic with ``hdf5_cache_mode="low_dim"`` (``--rm-cache all`` for its
full cache; ``--stream`` makes embodied read images from disk too).
Prints samples/s, the ratio (target >= 3x) and the memory each dataset holds (the RSS it
added; for embodied at least the bytes of its arrays, since freed pages may be reused).
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
    p.add_argument("--rm-cache", default="low_dim", choices=["low_dim", "all"], help="robomimic's cache mode")
    p.add_argument("--stream", action="store_true", help="embodied reads images from disk (no image cache)")
    args = p.parse_args()
    torch.set_num_threads(1)
    path = ensure_file(args.path)
    keys = LOW_DIM + (["corner_image"] if args.images else [])

    import robomimic.utils.obs_utils as ObsUtils
    from robomimic.utils.dataset import SequenceDataset

    from embodied.data.reader import DemoDataset
    from embodied.train.sampling import ShardedBatches, train_loader

    ObsUtils.initialize_obs_utils_with_obs_specs(
        {"obs": {"low_dim": LOW_DIM, "rgb": [k for k in keys if k.endswith("_image")]}}
    )
    # One reader at a time: h5py refuses robomimic's SWMR handle beside a plain one on one file.
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
        hdf5_cache_mode=args.rm_cache,
        load_next_obs=False,
    )
    m1 = rss()
    rm_loader = torch.utils.data.DataLoader(theirs, batch_size=args.batch, shuffle=True, drop_last=True)
    rm = throughput(rm_loader, args.batches)
    theirs.close_and_delete_hdf5_handle()
    del theirs, rm_loader

    m2 = rss()
    cache = 0 if args.stream else 4 << 30
    ours = DemoDataset(
        path,
        split="all",
        obs_keys=keys,
        obs_horizon=args.seq,
        action_horizon=args.seq,
        image_cache_bytes=cache,
    )
    m3 = rss()
    em = throughput(
        train_loader(ours, ShardedBatches(len(ours), args.batch, seed=0), num_workers=0), args.batches
    )
    print(f"file: {path}  samples: {len(ours)}  window: {args.seq}  keys: {', '.join(keys)}")
    print(f"robomimic cache: {args.rm_cache}; embodied images: {'streamed' if args.stream else 'in memory'}")
    print(f"{'reader':<28}{'samples/s':>12}{'memory (MiB)':>15}")
    print(f"{'robomimic SequenceDataset':<28}{rm:>12.0f}{m1 - m0:>15.1f}")
    held = sum(a.nbytes for a in ours.low_dim.values())
    held += sum(a.nbytes for a in ours.images.values()) if ours.images_in_memory else 0
    print(f"{'embodied DemoDataset':<28}{em:>12.0f}{max(m3 - m2, held / 2**20):>15.1f}")
    print(f"embodied/robomimic = {em / rm:.1f}x (target >= 3x)")


if __name__ == "__main__":
    main()
