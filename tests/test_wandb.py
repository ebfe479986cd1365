"""Optional Weights & Biases logging: offline, without a network, beside metrics.jsonl."""

from __future__ import annotations

import json
import sys

import pytest


def test_offline_run_logs_the_metrics(tiny_run, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tiny_run("policy_quick", "wandb.mode=offline", "wandb.project=embodied-test")
    found = list((run / "wandb").glob("offline-run-*"))
    assert len(found) == 1, found
    run_id = (run / "wandb_run_id").read_text().strip()
    assert found[0].name.endswith(run_id)
    # The offline run file holds each logged key and value as JSON text (W&B's records are
    # protobuf; its reader lives in its Go core, not in Python).
    record = next(found[0].glob("run-*.wandb")).read_bytes()
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last_val = [e for e in logged if e["event"] == "val"][-1]
    for key in ("val/loss", "train/loss"):
        assert key.encode() in record
    assert json.dumps(last_val["loss"]).encode() in record


def test_missing_package_is_one_line(tmp_path, demo_dir, monkeypatch, capsys):
    from embodied.cli.train import main

    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    out = tmp_path / "run"
    argv = ["policy_quick", "--out", str(out), f"data.paths=[{demo_dir}]", "steps=2", "wandb.mode=offline"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "the wandb package is not installed; pip install 'embodied[wandb]'" in err
    assert "Traceback" not in err and not (out / "checkpoints").exists()
