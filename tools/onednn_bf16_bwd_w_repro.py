"""Minimal reproduction: oneDNN's bf16 backward-weights kernel on AMX reads memory it never wrote.

    python tools/onednn_bf16_bwd_w_repro.py

A bf16 convolution that strides over an input so narrow that some kernel columns meet only
zero padding (here a 3 x 3, stride-2 convolution of 1 x 1 pixels: columns 0 and 2 of the
kernel only ever see the padding) must give those columns a weight gradient of exactly 0.
With oneDNN 3.12 (torch 2.13.0+cpu) on a CPU with AMX (``brgconv_bwd_w:avx10_1_512_amx`` in
``ONEDNN_VERBOSE=1``) they get whatever the kernel's scratch memory held: NaN when the heap held
NaN bytes, enormous values when it held large ones, 0 when it happened to hold zeros; the
centre column, the forward pass and the input gradient are right, fp32 is right. It hits
width only (every column a stride-2 or stride-3 kernel leaves on the padding), at one thread
and at two; heights and time are fine.

The heap is "poisoned" first (tensors of NaN or 1e30 allocated and freed, so the next
allocations reuse their bytes), which makes the result reproducible; in a long process
(a test session) whatever earlier work left on the heap plays that part, which is why such a
fault comes and goes between runs. ``embodied.recognizers.conv3d.Conv3d`` runs these
convolutions in fp32 under bf16 autocast. Without AMX (bf16 emulated or AVX512-BF16 only)
the script reports no fault.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F


def poison(value: float) -> None:
    """Leave freed heap blocks of many sizes holding ``value`` (as fp32 bytes)."""
    blocks = [
        torch.full((n,), value) for n in (256, 512, 1024, 2048, 4096, 8192, 16384, 65536) for _ in range(4)
    ]
    del blocks


def padding_column_gradients(value: float, trials: int = 20, width: int = 1) -> tuple[int, float]:
    """(trials whose edge kernel columns got a bf16 weight gradient off the fp64 one, largest error).

    At ``width`` 1 the edge columns meet only padding, so their gradient is exactly 0."""
    bad, largest = 0, 0.0
    for _ in range(trials):
        x = torch.relu(torch.randn(4, 16, 1, width)).bfloat16().requires_grad_()  # (B, C, H, W)
        w = (torch.randn(16, 16, 3, 3) * 0.1).bfloat16().requires_grad_()
        y = F.conv2d(x, w, stride=2, padding=1)  # (4, 16, 1, W')
        grad_out = torch.randn(y.shape).bfloat16()
        poison(value)
        _, gw = torch.autograd.grad(y, (x, w), grad_out)
        x64, w64 = x.detach().double().requires_grad_(), w.detach().double()
        (ref,) = torch.autograd.grad(
            F.conv2d(x64, w64.requires_grad_(), stride=2, padding=1), w64, grad_out.double()
        )
        err = (gw.double() - ref)[:, :, :, [0, 2]].nan_to_num(nan=float("inf")).abs().max()
        scale = float(ref.abs().max())
        bad += bool(err > 0.02 * scale)  # bf16 rounding is ~0.4% of the largest gradient
        largest = max(largest, float(err))
    return bad, largest


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?"
    )
    flags = info
    onednn = next((w for w in torch.__config__.show().split("\n") if "MKL-DNN" in w), "oneDNN ?").strip(" -")
    onednn = onednn.split(" (")[0]
    print(
        f"torch {torch.__version__}, {onednn}, {model}, amx_bf16 {'amx_bf16' in flags}, "
        f"mkldnn bf16 {torch.ops.mkldnn._is_mkldnn_bf16_supported()}"
    )
    for value in (float("nan"), 1e30):
        bad, largest = padding_column_gradients(value)
        print(
            f"1 px wide, heap holding {value}: {bad} of 20 bf16 weight gradients wrong (error {largest:.3g})"
        )
    bad, largest = padding_column_gradients(float("nan"), width=3)
    print(
        f"control, 3 px wide (every column meets the input): {bad} of 20 wrong (largest error {largest:.3g})"
    )


if __name__ == "__main__":
    main()
