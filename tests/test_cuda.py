"""The CUDA path: training with autocast on a GPU, its summary, and its checkpoints evaluated on
the GPU and on a CPU. Skipped where no CUDA device is present (CI); run on a lent GPU by
``tools/gpu_check.sh``. The first test runs everywhere: what a run's summary says of its device.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from embodied.train.step import autocast_dtype, precision

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY_VISUAL = (
    "policy.hidden_dim=16",
    "policy.image_channels=8",
    "policy.image_embed=16",
    "recognizer.width=4",
    "recognizer.depth=2",
    "recognizer.input_size=16",
    "mirror.dim=8",
)


def summary_of(run) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_a_cpu_run_says_fp32_and_no_gpu_memory(tiny_run):
    s = summary_of(tiny_run("policy_quick", "policy.hidden_dim=16", "device=cpu"))
    assert s["device"] == "cpu" and s["precision"] == "fp32" and s["cuda_max_memory_mib"] is None
    assert autocast_dtype(torch.device("cpu"), "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        autocast_dtype(torch.device("cpu"), "fp8")


@pytest.fixture(scope="module")
def cuda_run(tiny_run):
    """A joint visual run of 2 steps on the GPU (autocast by default)."""
    return tiny_run("joint_visual", *TINY_VISUAL, "device=cuda")


@cuda
def test_joint_visual_trains_on_cuda_in_mixed_precision(cuda_run):
    s = summary_of(cuda_run)
    assert s["device"].startswith("cuda") and s["precision"] in ("bf16", "fp16")
    assert s["cuda_max_memory_mib"] > 0
    assert math.isfinite(s["train"]["loss"]) and math.isfinite(s["val"]["loss"])


@cuda
def test_autocast_on_cuda_stays_close_to_fp32():
    from test_train_speed_paths import build, joint_config, loss_and_grads, make_batch

    from embodied.train.step import to_device

    device = torch.device("cuda")
    module = build(joint_config()).to(device)
    batch = to_device(make_batch(), device)
    autocast, _ = precision(device, "auto")
    loss32, feats32, _ = loss_and_grads(module, batch)
    loss16, feats16, _ = loss_and_grads(module, batch, autocast=autocast)
    torch.testing.assert_close(loss16, loss32, rtol=3e-2, atol=3e-2)
    for f32, f16 in zip(feats32, feats16, strict=True):
        assert torch.nn.functional.cosine_similarity(f16.float(), f32, dim=-1).min() > 0.98


@cuda
@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_a_cuda_checkpoint_evaluates_on_either_device(cuda_run, tmp_path, device):
    from embodied.cli.eval import main as eval_main

    out = tmp_path / device
    argv = [str(cuda_run), "--episodes", "1", "--horizon", "8", "--workers", "0", "--device", device]
    assert eval_main([*argv, "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert data["overall"]["episodes"] == 2 and "video_accuracy" in data["recognizer"]


@cuda
def test_a_cpu_run_resumes_on_cuda(tiny_run):
    from embodied.cli.train import main as train_main

    run = tiny_run("policy_quick", "policy.hidden_dim=16", "device=cpu")
    assert train_main(["--resume", str(run), "steps=4", "device=cuda"]) == 0
    s = summary_of(run)
    assert s["steps"] == 4 and s["device"].startswith("cuda") and math.isfinite(s["train"]["loss"])


@cuda
def test_compile_on_cuda_is_refused_before_any_output(tmp_path, capsys, demo_dir):
    from embodied.cli.train import main as train_main

    out = tmp_path / "run"
    argv = ["policy_quick", "--out", str(out), f"data.paths=[{demo_dir}]", "device=cuda", "compile=true"]
    assert train_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "compile=true on CUDA" in err[0] and not out.exists()
