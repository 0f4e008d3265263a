import torch
import torch.nn.functional as F
from torch import nn

# csnspec: inline-begin


class PointwiseConv3d(nn.Conv3d):
    """A 1x1x1 `nn.Conv3d` (unpadded), run as the matrix product it is.

    A strided 1x1x1 conv reads every stride-th voxel only: it subsamples, then convolves at
    stride 1 (PyTorch's CPU kernels run the strided conv 2-3x slower, forward+backward). On
    channels-last input (N, T, H, W, C in memory) the conv is one matrix product over all voxels,
    `F.linear`, which PyTorch's CPU conv kernels run slower. The input's gradient comes back in the
    input's memory layout. Parameters, state-dict keys and `stride` are nn.Conv3d's.
    """

    def __init__(self, in_channels: int, out_channels: int, stride=1, bias=True):
        super().__init__(in_channels, out_channels, 1, stride=stride, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels_last = (
            x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
        )
        st, sh, sw = self.stride[0], self.stride[1], self.stride[2]
        if channels_last:
            # subsampled after the permute, so that x's gradient comes back channels-last too (a
            # contiguous one would put every BN and ReLU backward below on mixed layouts, ~8x slower)
            pixels = x.permute(0, 2, 3, 4, 1)
            if st > 1 or sh > 1 or sw > 1:
                pixels = pixels[:, ::st, ::sh, ::sw]
            out = F.linear(pixels, self.weight.flatten(1), self.bias)
            return out.permute(0, 4, 1, 2, 3)
        if st > 1 or sh > 1 or sw > 1:
            x = x[:, :, ::st, ::sh, ::sw]
        return torch.conv3d(x, self.weight, self.bias)
