import os

import torch
import torch.nn.functional as F
from torch import nn

# csnspec: inline-begin

# Depthwise 3D convolution (one filter per channel). Stand-in until the kernels branch lands:
# every implementation is the native call.

DEPTHWISE_IMPLS = ("auto", "native", "cpu", "triton")


def depthwise_conv3d(x, weight, stride, padding, impl: str = "auto"):
    """A depthwise 3D convolution of `x` (N, C, T, H, W) with `weight` (C, 1, kt, kh, kw)."""
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(
            f"unknown depthwise implementation {impl!r}; choose one of {DEPTHWISE_IMPLS}"
        )
    if (
        impl == "triton"
        and not torch.cuda.is_available()
        and not os.environ.get("TRITON_INTERPRET")
    ):
        raise RuntimeError("the triton depthwise implementation needs CUDA")
    return F.conv3d(x, weight, None, stride, padding, 1, weight.shape[0])


class DepthwiseConv3d(nn.Conv3d):
    """nn.Conv3d with groups == in == out channels, run by `depthwise_conv3d`."""

    def __init__(self, channels, kernel_size, stride=1, padding=0, impl: str = "auto"):
        super().__init__(
            channels,
            channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=channels,
            bias=False,
        )
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.conv3d(x, self.weight, None, self.stride, self.padding, 1, self.groups)
        return self._fast_forward(x)

    @torch.jit.unused
    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_conv3d(x, self.weight, self.stride, self.padding, self.impl)
