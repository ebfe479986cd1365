"""What a set of demonstration files is, in a few numbers: what a benchmark records beside a
finished run, so that a run made on other data (collected again, with other settings or another
renderer) is seen as stale instead of skipped."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable

import numpy as np

from embodied.data.files import demo_names, env_args_of, open_file, reading
from embodied.data.schema import expand_paths


def dataset_identity(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> dict[str, dict]:
    """``{file name: identity}`` of the files ``paths`` name (folders: their ``*.hdf5``).

    A file's identity: its ``env_args`` (the suite, the task, the collection's settings, e.g. the
    cameras and their size), its format version, its demo and sample counts, and a digest of the
    bytes of every demo's actions and of the first frame of each of its first demo's image
    streams (a few KB read: a renderer that changes the images changes the digest). Keyed by
    file name, not path, so moving the data is no change.
    """
    identity = {}
    for path in expand_paths(paths):
        with open_file(path) as f, reading(path):
            data = f["data"]
            digest = hashlib.sha256()
            names = demo_names(data)
            for name in names:
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(data[name]["actions"][()]).tobytes())
            if names:
                obs = data[names[0]].get("obs", {})
                for key in sorted(k for k in obs if k.endswith("_image")):
                    digest.update(key.encode())
                    digest.update(np.ascontiguousarray(obs[key][0]).tobytes())
            version = data.attrs.get("format_version")
            identity[path.name] = {
                "env_args": json.loads(json.dumps(env_args_of(f, str(path)), default=str)),
                "format_version": None if version is None else int(version),
                "demos": len(names),
                "samples": int(sum(int(data[n].attrs.get("num_samples", 0)) for n in names)),
                "digest": f"sha256:{digest.hexdigest()}",
            }
    return identity
