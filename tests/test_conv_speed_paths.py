"""The recognizer's convolutions as matrix products (conv3d.FastConv3d): the same function,
gradients, parameters and checkpoints as nn.Conv3d, on the configs' shapes and odd ones."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embodied import keys
from embodied.config import from_dict
from embodied.models.common import DataSpec
from embodied.recognizers import RecognizerConfig, build_recognizer
from embodied.recognizers.conv3d import Conv3DConfig, FastConv3d, R2Plus1DBackbone, set_fast_conv


def conv_shapes(batch: int, frames: int, size: int, width: int) -> list[tuple[FastConv3d, torch.Size]]:
    """Every convolution of a backbone with the input shape it meets."""
    torch.manual_seed(0)
    backbone = R2Plus1DBackbone(Conv3DConfig(width=width, depth=4))
    seen = []
    hooks = [
        m.register_forward_hook(lambda m, i, o: seen.append((m, i[0].shape)))
        for m in backbone.modules()
        if isinstance(m, FastConv3d)
    ]
    with torch.no_grad():
        backbone(torch.randn(batch, frames, 3, size, size))
    for h in hooks:
        h.remove()
    return seen


def assert_same_as_conv3d(conv: FastConv3d, shape, dtype=torch.float32, input_grad=True) -> bool:
    """Output and gradients (input, weight, bias) of the fast path against F.conv3d; whether the
    fast path was taken."""
    conv = conv.to(dtype)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, dtype=dtype, generator=g).requires_grad_(input_grad)
    results = []
    for fast in (False, True):
        conv.fast = fast
        conv.zero_grad(set_to_none=True)
        x.grad = None
        y = conv(x)
        y.backward(torch.linspace(-1, 1, y.numel(), dtype=dtype).reshape(y.shape))
        grads = [p.grad for p in conv.parameters()] + ([x.grad] if input_grad else [])
        results.append((y.detach(), grads))
    (y0, g0), (y1, g1) = results
    eps = 1e-5 if dtype == torch.float32 else 1e-12
    assert y1.shape == y0.shape
    for a, b in zip([y1, *g1], [y0, *g0], strict=True):  # sums over many terms: relative to the largest
        torch.testing.assert_close(a, b, rtol=eps, atol=eps * max(1.0, b.abs().max().item()))
    return conv._as_matmul(x.detach()) is not None


# (batch, frames, side, width): recognizer_visual / joint_visual, visual_large's recognizer,
# recognizer_mt10 (64 px, 8 frames; the `large` preset), a single frame, an odd side
CONFIG_SHAPES = [(4, 4, 24, 8), (2, 8, 24, 32), (2, 8, 64, 16), (2, 1, 24, 8), (3, 3, 17, 4)]


@pytest.mark.parametrize("batch,frames,size,width", CONFIG_SHAPES)
def test_every_convolution_of_the_configs_matches_conv3d(batch, frames, size, width):
    taken = [
        assert_same_as_conv3d(conv, shape, input_grad=i > 0)  # the stem's input needs no gradient
        for i, (conv, shape) in enumerate(conv_shapes(batch, frames, size, width))
    ]
    assert any(taken) and not all(taken)  # the late stages as products, the stem as a convolution


@pytest.mark.parametrize(
    "kernel,stride,padding,shape,as_product",
    [
        ((1, 3, 3), (1, 1, 1), (0, 1, 1), (2, 5, 1, 1, 1), True),  # one pixel: the centre tap
        ((3, 1, 1), (1, 1, 1), (1, 0, 0), (2, 5, 1, 3, 2), True),  # one frame
        ((3, 1, 1), (2, 1, 1), (1, 0, 0), (2, 5, 2, 2, 2), True),  # two frames, stride 2: one window
        ((1, 3, 3), (1, 2, 2), (0, 1, 1), (2, 5, 1, 2, 2), True),  # 2 x 2, stride 2: one window
        ((1, 3, 3), (1, 2, 2), (0, 1, 1), (2, 5, 3, 2, 2), True),  # windows in space, outputs in time
        ((1, 1, 1), (2, 2, 2), (0, 0, 0), (2, 5, 3, 5, 4), True),  # strided 1 x 1 x 1, odd sizes
        ((1, 1, 1), (1, 1, 1), (0, 0, 0), (2, 5, 3, 4, 4), True),
        ((3, 3, 3), (1, 1, 1), (1, 1, 1), (2, 5, 1, 1, 1), True),  # a full 3-D kernel on one voxel
        ((3, 3, 3), (2, 2, 2), (0, 0, 0), (2, 5, 3, 3, 3), True),  # no padding, one window
        ((5, 5, 5), (1, 1, 1), (2, 2, 2), (2, 5, 1, 2, 1), False),  # two outputs, several taps
        ((1, 3, 3), (1, 1, 1), (0, 3, 3), (2, 5, 2, 1, 1), False),  # padding past the kernel
        ((1, 3, 3), (1, 2, 2), (0, 1, 1), (2, 5, 3, 2, 3), False),
        ((1, 3, 3), (1, 1, 1), (0, 1, 1), (2, 5, 4, 6, 6), False),  # real convolutions
        ((3, 1, 1), (1, 1, 1), (1, 0, 0), (2, 5, 4, 3, 3), False),
        ((1, 5, 5), (1, 2, 2), (0, 2, 2), (2, 3, 2, 9, 9), False),
    ],
)
@pytest.mark.parametrize("bias", [False, True])
def test_odd_shapes_match_conv3d(kernel, stride, padding, shape, as_product, bias):
    torch.manual_seed(0)
    conv = FastConv3d(shape[1], 6, kernel, stride=stride, padding=padding, bias=bias)
    assert assert_same_as_conv3d(conv, shape) == as_product
    assert_same_as_conv3d(conv, shape, dtype=torch.float64)


@pytest.mark.parametrize(
    "options,shape",
    [
        ({"groups": 5, "padding": 1}, (2, 5, 1, 1, 1)),
        ({"dilation": 2, "padding": 2}, (2, 5, 1, 1, 1)),
        ({"padding": "same"}, (2, 5, 1, 1, 1)),
        ({"padding": 1, "padding_mode": "reflect"}, (2, 5, 2, 2, 2)),
        ({"padding": 1, "padding_mode": "circular"}, (2, 5, 1, 1, 1)),
    ],
)
def test_settings_not_covered_fall_back_to_conv3d(options, shape):
    torch.manual_seed(0)
    conv = FastConv3d(5, 5, 3, **options)
    assert conv._as_matmul(torch.randn(shape)) is None
    assert not assert_same_as_conv3d(conv, shape)


def test_unbatched_and_other_devices_take_conv3d():
    conv = FastConv3d(3, 4, (1, 3, 3), padding=(0, 1, 1))
    x = torch.randn(3, 1, 1, 1)  # (C, T, H, W): nn.Conv3d's unbatched form
    assert conv._as_matmul(x) is None
    assert conv(x).shape == (4, 1, 1, 1)
    meta = FastConv3d(3, 4, (1, 3, 3), padding=(0, 1, 1), device="meta")
    assert meta(torch.empty(2, 3, 1, 1, 1, device="meta")).shape == (2, 4, 1, 1, 1)


def test_the_backbone_is_the_same_function_in_double():
    torch.manual_seed(0)
    backbone = R2Plus1DBackbone(Conv3DConfig(width=8, depth=4)).double().train()
    for m in backbone.modules():  # the residual branches start at zero: make them count here
        if isinstance(m, nn.BatchNorm3d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
    x = torch.randn(4, 4, 3, 24, 24, dtype=torch.float64)
    results = []
    for fast in (False, True):
        set_fast_conv(backbone, fast)
        backbone.zero_grad(set_to_none=True)
        y = backbone(x)
        y.square().sum().backward()
        results.append((y.detach(), [p.grad for p in backbone.parameters()]))
    # batch norm over 4 clips of one pixel amplifies the rounding: still ~1e-9 of float32's 1e-5
    for a, b in zip([results[1][0], *results[1][1]], [results[0][0], *results[0][1]], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-7 * b.abs().max().item())


SPEC = DataSpec(num_classes=3, num_instructions=5, clip_len=4, image_size=32)


def make(**overrides):
    torch.manual_seed(0)
    raw = {"name": "conv3d", "width": 8, "depth": 4, "input_size": 24, **overrides}
    return build_recognizer(from_dict(RecognizerConfig, raw), SPEC)


def test_checkpoint_saved_before_loads_and_predicts_the_same(tmp_path):
    old = make()
    for m in old.modules():  # the model as it was: plain nn.Conv3d modules
        if isinstance(m, FastConv3d):
            m.__class__ = nn.Conv3d
    assert not any(isinstance(m, FastConv3d) for m in old.modules())
    video = torch.randint(0, 256, (4, 4, 3, 32, 32), dtype=torch.uint8)
    batch = {keys.VIDEO: video, keys.LABEL: torch.tensor([0, 1, 2, 0]), keys.INSTRUCTION: torch.arange(4)}
    loss, _ = old.loss(batch)
    loss.backward()
    torch.optim.SGD(old.parameters(), lr=0.1).step()  # batch-norm statistics and weights move off init
    old.eval()
    torch.save(old.state_dict(), tmp_path / "u.pt")

    torch.manual_seed(1)
    new = make().eval()
    state = torch.load(tmp_path / "u.pt", weights_only=True)
    assert list(state) == list(new.state_dict())
    new.load_state_dict(state)
    with torch.no_grad():
        expected = old(video, with_features=True)
        got = new(video, with_features=True)
    for key in ("class_logits", "instruction_logits", "features"):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-5)


def test_fast_conv_false_runs_every_convolution_through_conv3d():
    assert all(m.fast for m in make().modules() if isinstance(m, FastConv3d))
    model = make(fast_conv=False)
    convs = [m for m in model.modules() if isinstance(m, FastConv3d)]
    assert convs and not any(m.fast for m in convs)
    assert make().state_dict().keys() == model.state_dict().keys()


def test_taps_that_only_read_padding_get_zero_gradient():
    torch.manual_seed(0)
    conv = FastConv3d(4, 4, (3, 3, 3), padding=1, bias=False)
    conv(torch.randn(2, 4, 1, 1, 1)).sum().backward()
    grad = conv.weight.grad.clone()
    assert grad[:, :, 1, 1, 1].abs().sum() > 0
    grad[:, :, 1, 1, 1] = 0
    assert torch.count_nonzero(grad) == 0
