"""``conv3d``: a small R(2+1)D residual video network.

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018
(https://arxiv.org/abs/1711.11248): each 3-D convolution is factorised into a 1 x k x k
spatial convolution, batch norm and ReLU, then a k_t x 1 x 1 temporal one. The extra
non-linearity helps, and the spatial and temporal parts are cheap enough for a CPU.

    (B, T, 3, S, S) -> stem: 1 x k x k conv, stride 2, BN, ReLU         (B, w, T, S/2, S/2)
                    -> stage 0: residual blocks, the first strides 2 in space
                                                                        (B, w, T, S/4, S/4)
                    -> stage i > 0: the first block strides 2 in space and time, width doubles
                    -> global average pool over (T', H', W')            (B, w * 2**(depth-1))

The stem is purely spatial (as in SlowFast's slow pathway, https://arxiv.org/abs/1812.03982):
at full resolution a temporal conv costs the most and adds little, and stage 0 strides in
space at once because on a 2-core CPU the convolutions at S/2 dominate the step time. With
the defaults a 64 px, 8-frame clip ends at 2 x 2 x 1 (space x space x time) per 128 channels.

Every inner activation is channels-first (B, C, T, H, W), so any layer can be tapped.

bf16 on a CPU with AMX: every convolution here is a :class:`Conv3d`, which computes in fp32,
under bf16 autocast, the few convolutions that stride over an input so small that some kernel
taps meet only zero padding (a 3 x 3 stride-2 convolution of a 1-pixel-wide input, as the last
stage sees on 16 px clips at depth 4): oneDNN 3.12's AMX backward-weights kernel (torch 2.13)
computes those taps' gradient from scratch memory it never wrote, NaN or arbitrary values
where it should give 0 (``tools/onednn_bf16_bwd_w_repro.py``).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from embodied.data.spec import DataSpec
from embodied.recognizers.base import Recognizer
from embodied.recognizers.config import RECOGNIZERS, Conv3DConfig


def strided_padding_taps(
    size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...], padding: tuple[int, ...]
) -> bool:
    """Whether a convolution of an input of ``size`` (T, H, W) has, in a dimension it strides,
    a kernel tap that meets only zero padding (no output's window puts it on the input)."""
    for n, k, s, p in zip(size, kernel, stride, padding, strict=True):
        if s == 1 or p == 0:
            continue
        out = (n + 2 * p - k) // s + 1
        if any(all(not 0 <= j * s + i - p < n for j in range(out)) for i in range(k)):
            return True
    return False


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that runs in fp32 under CPU bf16 autocast where oneDNN's bf16 gradient fails.

    oneDNN 3.12 (torch 2.13's), on a CPU with AMX, computes the weight gradient of a bf16
    convolution that strides over an input so small that some kernel taps meet only zero
    padding (a 3 x 3, stride-2 convolution of a 1-pixel-wide input) from scratch memory it never
    wrote: those taps, whose gradient is 0, get NaN or arbitrary values, depending on what the
    heap held (``tools/onednn_bf16_bwd_w_repro.py``; the forward pass and the input gradient are
    right). Such a convolution (:func:`strided_padding_taps`) runs in fp32 here, in and out: it
    is tiny, since its input is. The wrong taps were found in width only (a scan of strides,
    kernels and sizes); height and time are included as a precaution, at no measurable cost
    (joint_visual: three convolutions of the last two stages, on 2 x 2 x 2 inputs and smaller).
    Every other call, and every call outside bf16 autocast on a CPU, is ``nn.Conv3d``'s.
    Parameters, state-dict keys and checkpoints are nn.Conv3d's.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, T, H, W) -> (B, Cout, T', H', W')
        if (
            x.device.type == "cpu"
            and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and not isinstance(self.padding, str)
            and strided_padding_taps(tuple(x.shape[-3:]), self.kernel_size, self.stride, self.padding)
        ):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


class Conv2Plus1D(nn.Sequential):
    """1 x k x k spatial conv -> BN -> ReLU -> k_t x 1 x 1 temporal conv.

    (B, Cin, T, H, W) -> (B, Cout, T / temporal_stride, H / stride, W / stride), rounded up.

    The paper widens the middle to match a full 3-D conv's parameter count (about 2.25 x);
    we keep it at ``cout`` to stay cheap on a CPU.
    """

    def __init__(
        self, cin: int, cout: int, k: int, kt: int, stride: int = 1, temporal_stride: int = 1
    ) -> None:
        super().__init__(
            Conv3d(cin, cout, (1, k, k), stride=(1, stride, stride), padding=(0, k // 2, k // 2), bias=False),
            nn.BatchNorm3d(cout),
            nn.ReLU(),  # not in place: a tapped layer's output must not be overwritten afterwards
            Conv3d(
                cout, cout, (kt, 1, 1), stride=(temporal_stride, 1, 1), padding=(kt // 2, 0, 0), bias=False
            ),
        )


class ResBlock(nn.Module):
    """Two (2+1)D convs with BN, plus a shortcut (a strided 1x1x1 conv when the shape changes)."""

    def __init__(self, cin: int, cout: int, k: int, kt: int, stride: int, temporal_stride: int) -> None:
        super().__init__()
        self.conv1 = Conv2Plus1D(cin, cout, k, kt, stride, temporal_stride)
        self.bn1 = nn.BatchNorm3d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = Conv2Plus1D(cout, cout, k, kt)
        self.bn2 = nn.BatchNorm3d(cout)
        # Start each residual branch at zero so the network begins as a shallower one
        # (Goyal et al. 2017, https://arxiv.org/abs/1706.02677, section 5.1).
        nn.init.zeros_(self.bn2.weight)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and temporal_stride == 1 and cin == cout
            else nn.Sequential(
                Conv3d(cin, cout, 1, stride=(temporal_stride, stride, stride), bias=False),
                nn.BatchNorm3d(cout),
            )
        )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, Cin, T, H, W) -> (B, Cout, T', H', W')
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class R2Plus1DBackbone(nn.Module):
    def __init__(self, config: Conv3DConfig) -> None:
        super().__init__()
        c = config
        k = c.stem_kernel
        self.stem = nn.Sequential(
            Conv3d(3, c.width, (1, k, k), stride=(1, 2, 2), padding=(0, k // 2, k // 2), bias=False),
            nn.BatchNorm3d(c.width),
            nn.ReLU(),
        )
        stages, cin = [], c.width
        for i in range(c.depth):
            cout = c.width * 2**i
            blocks = [
                ResBlock(
                    cin if j == 0 else cout,
                    cout,
                    c.kernel_size,
                    c.temporal_kernel,
                    stride=2 if j == 0 else 1,
                    temporal_stride=2 if (i > 0 and j == 0) else 1,
                )
                for j in range(c.blocks)
            ]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.out_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(x, "b t c h w -> b c t h w")  # (B, 3, T, S, S): Conv3d wants channels first
        x = self.stages(self.stem(x))  # (B, C, T', H', W')
        # A stride-2 temporal conv maps a length-1 clip to length 1, so any T >= 1 reaches here.
        return x.mean(dim=(2, 3, 4))  # (B, C)


@RECOGNIZERS.register("conv3d", Conv3DConfig)
class Conv3DRecognizer(Recognizer):
    channels_last = False

    def build_backbone(self, config: Conv3DConfig, spec: DataSpec) -> tuple[nn.Module, int]:
        backbone = R2Plus1DBackbone(config)
        return backbone, backbone.out_dim
