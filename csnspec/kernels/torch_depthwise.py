import os

import torch
import torch.nn.functional as F
from torch import nn

# csnspec: inline-begin

# Depthwise 3D convolution (one filter per channel), the op CSN is built on.
#
# PyTorch's CPU kernel for `F.conv3d(..., groups=C)` on contiguous (N, C, T, H, W) tensors is slow, its
# backward most of all. oneDNN's depthwise kernels are fast on channels-last memory (N, T, H, W, C), but
# only some: the forward conv3d is, its backward is not, while the channels-last depthwise conv2d's
# kernel gradient is. So the "cpu" implementation runs, on channels-last copies: the forward as the
# conv3d; the input gradient as the same conv3d of the output gradient with the flipped kernel; the
# kernel gradient as one depthwise conv2d kernel gradient per time tap, the frames of the clips taken
# as a batch of 2D images. Results come back in the input's memory format. Strided convolutions and
# 3x1x1 kernels, measured slower this way, run the native kernel.

DEPTHWISE_IMPLS = ("auto", "native", "cpu", "triton")


def _triple(value) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    return (int(value[0]), int(value[1]), int(value[2]))


def _check_impl(impl: str) -> None:
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(
            f"unknown depthwise implementation {impl!r}; choose one of {', '.join(DEPTHWISE_IMPLS)}"
        )


def _native_depthwise(x, weight, stride, padding):
    return F.conv3d(x, weight, None, stride, padding, 1, weight.shape[0])


def _triton_entry():
    """The Triton entry point when this module carries it and Triton can run here, else None."""
    # The Triton kernels are emitted after this code in the same module, and only where CUDA (or the
    # Triton interpreter) is in use; a module emitted without them has no such name.
    if not globals().get("_TRITON", False):
        return None
    return globals().get("depthwise_conv3d_triton")


def _cpu_supported(x, weight, stride, padding) -> bool:
    """Whether the channels-last implementation takes this call (otherwise the native call runs)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if x.dim() != 5 or weight.dim() != 5 or weight.shape[1] != 1 or weight.shape[0] != x.shape[1]:
        return False
    # measured slower than the native call: strided convolutions, 3x1x1 kernels
    if stride != (1, 1, 1) or weight.shape[3:] == (1, 1):
        return False
    return x.numel() > 0 and all(
        0 <= p < k <= size + 2 * p for size, k, p in zip(x.shape[2:], weight.shape[2:], padding)
    )


def depthwise_conv3d(x, weight, stride, padding, impl: str = "auto") -> torch.Tensor:
    """`F.conv3d(x, weight, None, stride, padding, groups=C)` for a (C, 1, kt, kh, kw) weight.

    `impl` picks the implementation: "auto" (the fastest correct one for x's device), "native" (PyTorch's
    own kernel), "cpu" (oneDNN channels-last kernels, see above) or "triton" (CUDA kernels). A call a
    fast implementation does not handle runs the native kernel instead.
    """
    _check_impl(impl)
    stride, padding = _triple(stride), _triple(padding)
    if impl == "auto":
        if x.device.type == "cpu":
            impl = "cpu"
        elif x.device.type == "cuda" and _triton_entry() is not None:
            impl = "triton"
        else:
            impl = "native"
    if impl == "cpu" and _cpu_supported(x, weight, stride, padding):
        return _ChannelsLastDepthwise.apply(x, weight, padding)
    if impl == "triton":
        entry = _triton_entry()
        if entry is None:
            raise RuntimeError(
                "depthwise implementation 'triton' needs a CUDA device and the triton package "
                "(or TRITON_INTERPRET=1 to run the kernels on the CPU); use 'auto' or 'native' here"
            )
        if x.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(
                f"depthwise implementation 'triton' runs on CUDA tensors, not on {x.device.type}"
            )
        return entry(x, weight, stride, padding)
    return _native_depthwise(x, weight, stride, padding)


class DepthwiseConv3d(nn.Conv3d):
    """A depthwise `nn.Conv3d` (groups = channels, no bias) running a fast implementation.

    Parameters and state-dict keys are nn.Conv3d's. `impl` (one of DEPTHWISE_IMPLS) may be changed at any
    time. TorchScript, tracing, torch.export and torch.compile see the native convolution.
    """

    def __init__(self, channels: int, kernel_size, stride=1, padding=0, impl: str = "auto"):
        super().__init__(
            channels,
            channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=channels,
            bias=False,
        )
        _check_impl(impl)
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.conv3d(x, self.weight, None, self.stride, self.padding, 1, self.groups)
        return self._fast_forward(x)

    @torch.jit.unused
    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        # graph capture (torch.compile, torch.export, ONNX export, tracing) records the native call
        if torch.compiler.is_compiling() or torch.jit.is_tracing():
            return F.conv3d(x, self.weight, None, self.stride, self.padding, 1, self.groups)
        return depthwise_conv3d(x, self.weight, self.stride, self.padding, self.impl)


def _frame_batches(frames):
    """(batch index, frames as channels-last 2D images) for a (N, F, H, W, C) run of frames.

    One batch when the frames of all clips are one block of memory; one per clip otherwise (no copy).
    """
    n, f, h, w, c = frames.shape
    if n == 1 or frames.stride(0) == f * frames.stride(1):
        return [(slice(None), frames.reshape(n * f, h, w, c).permute(0, 3, 1, 2))]
    return [(i, frames[i].permute(0, 3, 1, 2)) for i in range(n)]


class _ChannelsLastDepthwise(torch.autograd.Function):
    """Stride-1 depthwise conv3d on channels-last memory, with a fast backward.

    Forward: oneDNN's channels-last depthwise conv3d. Input gradient: the same call on the output
    gradient with the flipped kernel (a stride-1 convolution's transpose). Kernel gradient: one
    channels-last depthwise conv2d kernel gradient per time tap, the frames of the clips as 2D images.
    """

    @staticmethod
    def forward(ctx, x, weight, padding):
        # results come back in x's memory format, as from F.conv3d: a contiguous model stays contiguous
        # (PyTorch's channels-last 1x1x1 convolutions on CPU are slower than its contiguous ones)
        ctx.layout = (
            torch.channels_last_3d
            if x.is_contiguous(memory_format=torch.channels_last_3d)
            else torch.contiguous_format
        )
        x = x.contiguous(memory_format=torch.channels_last_3d)
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        out = F.conv3d(x, weight, None, 1, padding, 1, weight.shape[0])
        return out.contiguous(memory_format=ctx.layout)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last_3d)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            flipped_padding = [k - 1 - p for k, p in zip(weight.shape[2:], ctx.padding)]
            grad_x = F.conv3d(
                grad, weight.flip(2, 3, 4), None, 1, flipped_padding, 1, weight.shape[0]
            )
            grad_x = grad_x.contiguous(memory_format=ctx.layout)
        if ctx.needs_input_grad[1]:
            grad_w = _kernel_grad(grad, x, weight, ctx.padding)
        return grad_x, grad_w, None


def _kernel_grad(grad, x, weight, padding):
    """The kernel gradient of a stride-1 depthwise conv3d, a depthwise conv2d's per time tap."""
    pixels = x.permute(0, 2, 3, 4, 1)  # (N, T, H, W, C), contiguous
    grad = grad.permute(0, 2, 3, 4, 1)
    frames, out_frames = pixels.shape[1], grad.shape[1]
    grad_w = torch.zeros_like(weight)
    for tap in range(weight.shape[2]):
        # output frame t sees input frame t + tap - padding
        first, end = max(0, padding[0] - tap), min(out_frames, frames + padding[0] - tap)
        if end <= first:
            continue
        shift = tap - padding[0]
        grad_batches = _frame_batches(grad[:, first:end])
        x_batches = _frame_batches(pixels[:, first + shift : end + shift])
        if len(grad_batches) != len(x_batches):  # one side is split per clip: split both
            grad_batches = [(i, g.permute(0, 3, 1, 2)) for i, g in enumerate(grad[:, first:end])]
            x_batches = [
                (i, p.permute(0, 3, 1, 2))
                for i, p in enumerate(pixels[:, first + shift : end + shift])
            ]
        tap_weight = weight[:, :, tap].contiguous()
        for (_, g), (_, images) in zip(grad_batches, x_batches):
            grad_w[:, :, tap] += torch.ops.aten.convolution_backward(
                g,
                images,
                tap_weight,
                None,
                (1, 1),
                padding[1:],
                (1, 1),
                False,
                (0, 0),
                weight.shape[0],
                (False, True, False),
            )[1]
    return grad_w
