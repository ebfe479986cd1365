"""What Fletcher-32 checksums cost: write and read time and file size of one demonstration file
written with and without them (the same arrays, chunks and attributes).

    python tools/bench_checksums.py datasets/lookalike/drawer-open-v3.hdf5 --repeats 5

Writes both copies to a temporary folder (page cache warm: the figures are the CPU's cost,
not the disk's), reads each whole (every dataset, images included) and prints the medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py

from embodied.data import schema, upgrade


def read_all(path: Path) -> int:
    """Read every dataset whole; returns the bytes read."""
    found: list[h5py.Dataset] = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda _, item: found.append(item) if isinstance(item, h5py.Dataset) else None)
        return sum(item[()].nbytes for item in found)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("path")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for label, sums in (("without", {}), ("with", {"fletcher32": True})):
                upgrade.CHECKSUMS = sums  # copy_with_checksums writes what this names
                out = Path(tmp) / f"{label}.hdf5"
                t0 = time.perf_counter()
                with h5py.File(args.path, "r") as src, h5py.File(out, "w") as dst:
                    upgrade.copy_with_checksums(src, dst)
                t1 = time.perf_counter()
                read_all(out)
                t2 = time.perf_counter()
                r = results.setdefault(label, {"write": [], "read": [], "size": []})
                r["write"].append(t1 - t0)
                r["read"].append(t2 - t1)
                r["size"].append(out.stat().st_size)
    upgrade.CHECKSUMS = schema.CHECKSUMS
    med = {k: {m: statistics.median(v) for m, v in r.items()} for k, r in results.items()}
    for label, m in med.items():
        print(
            f"{label:8s} write {m['write']:.3f} s  read {m['read']:.3f} s  size {m['size'] / 2**20:.2f} MiB"
        )
    w, o = med["with"], med["without"]
    print(
        f"with/without: write {w['write'] / o['write']:.2f}x, read {w['read'] / o['read']:.2f}x, "
        f"size +{w['size'] - o['size']} bytes ({(w['size'] / o['size'] - 1) * 100:.3f} %)"
    )


if __name__ == "__main__":
    main()
