"""Optional Weights & Biases logging: offline, without a network, beside metrics.jsonl."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path

import pytest

FINISH_TIMEOUT_S = 60.0


def wandb_records(path: Path) -> list:
    """The complete records of a W&B run file (``run-*.wandb``), as ``wandb_internal_pb2.Record``.

    The file is LevelDB's log format (as ``wandb sync`` reads it): a 7-byte header
    (``:W&B``, magic, version), then 32 KiB blocks of chunks, each ``<crc32 u32, length u16,
    type u8>`` and its bytes; type 1 is a whole record, 2/3/4 its first/middle/last part; a
    block's last 6 bytes or fewer are zero padding. A record cut off by the end of the file
    (still being written) is left out.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    if data[:4] != b":W&B":
        return []
    records, pos, parts = [], 7, b""
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:  # the block's padding
            pos += 32768 - pos % 32768
            continue
        _, size, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 or pos + 7 + size > len(data):  # padding, or a chunk not yet written
            break
        chunk, pos = data[pos + 7 : pos + 7 + size], pos + 7 + size
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            records.append(record)
    return records


def finished_records(path: Path, timeout_s: float = FINISH_TIMEOUT_S) -> list:
    """The file's records once its last one is the run's exit record.

    ``wandb.finish()`` returns when W&B's core has handled the run's exit, but (wandb 0.31) the
    core writes its buffered records to the file when it closes the run's stream afterwards,
    in its own process: right after a run ends the file can hold only its 7-byte header. So
    wait, at most ``timeout_s``, for the exit record, which W&B writes last.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        records = wandb_records(path)
        if records and records[-1].WhichOneof("record_type") == "exit":
            return records
        if time.monotonic() > deadline:
            kinds = [r.WhichOneof("record_type") for r in records]
            raise AssertionError(f"{path} has no exit record after {timeout_s:.0f} s: {kinds}")
        time.sleep(0.05)  # polling the condition above, not waiting a guessed time


def test_offline_run_logs_the_metrics(tiny_run, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tiny_run("policy_quick", "wandb.mode=offline", "wandb.project=embodied-test")
    found = list((run / "wandb").glob("offline-run-*"))
    assert len(found) == 1, found
    run_id = (run / "wandb_run_id").read_text().strip()
    assert found[0].name.endswith(run_id)
    records = finished_records(next(found[0].glob("run-*.wandb")))
    assert records[-1].exit.exit_code == 0
    # every metrics.jsonl event is a W&B history row at the same step, with the same values
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            history.setdefault(items["_step"], {}).update(items)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for event in logged:
        if event["event"] not in ("train", "val"):
            continue
        row = history[event["step"]]
        for key in ("loss", "grad_norm") if event["event"] == "train" else ("loss",):
            assert row[f"{event['event']}/{key}"] == pytest.approx(event[key], rel=1e-12), (event, key)


def test_missing_package_is_one_line(tmp_path, demo_dir, monkeypatch, capsys):
    from embodied.cli.train import main

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    out = tmp_path / "run"
    argv = ["policy_quick", "--out", str(out), f"data.paths=[{demo_dir}]", "steps=2", "wandb.mode=offline"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the wandb package is not installed; pip install 'embodied[wandb]'" in err
    assert "Traceback" not in err and not (out / "checkpoints").exists()
