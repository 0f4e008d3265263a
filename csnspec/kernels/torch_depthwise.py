import os

import torch
import torch.nn.functional as F
from torch import nn

# csnspec: inline-begin

# Depthwise 3D convolution (one filter per channel), the op CSN is built on.
#
# PyTorch's own CPU kernel for `F.conv3d(..., groups=C)` is slow, its backward especially. The "cpu"
# implementation below splits the 3D convolution into its time taps: tap `a` of a (kt, kh, kw) kernel is a
# depthwise 2D convolution of every input frame, whose output frames are added into the output frames
# they feed. In channels-last memory (N, T, H, W, C) the frames of a clip are one batch of channels-last
# 2D images, so each tap is a single oneDNN depthwise conv2d call with no transposes; the backward pass is
# the same decomposition (input gradient: transposed 2D convolution per tap; weight gradient: the 2D
# convolution's weight gradient per tap). Outputs are in `torch.channels_last_3d` memory format.

DEPTHWISE_IMPLS = ("auto", "native", "cpu", "triton")


def _triple(value) -> tuple[int, int, int]:
    if isinstance(value, int):
        return (value, value, value)
    return (int(value[0]), int(value[1]), int(value[2]))


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
    """Whether the time-tap implementation handles this call (otherwise the native call runs)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if x.dim() != 5 or weight.dim() != 5 or weight.shape[1] != 1 or weight.shape[0] != x.shape[1]:
        return False
    kt, kh, kw = weight.shape[2:]
    for size, k, s, p in zip(x.shape[2:], (kt, kh, kw), stride, padding):
        if s < 1 or p < 0 or p >= k or size + 2 * p < k:
            return False
    return x.numel() > 0


def depthwise_conv3d(x, weight, stride, padding, impl: str = "auto") -> torch.Tensor:
    """`F.conv3d(x, weight, None, stride, padding, groups=C)` for a (C, 1, kt, kh, kw) weight.

    `impl` picks the implementation: "auto" (the fastest correct one for x's device), "native" (PyTorch's
    own kernel), "cpu" (time taps as channels-last depthwise conv2d) or "triton" (CUDA kernels). A call a
    fast implementation does not handle runs the native kernel instead.
    """
    if impl not in DEPTHWISE_IMPLS:
        raise ValueError(
            f"unknown depthwise implementation {impl!r}; choose one of {', '.join(DEPTHWISE_IMPLS)}"
        )
    stride, padding = _triple(stride), _triple(padding)
    if impl == "auto":
        if x.device.type == "cpu":
            impl = "cpu"
        elif x.device.type == "cuda" and _triton_entry() is not None:
            impl = "triton"
        else:
            impl = "native"
    if impl == "cpu" and _cpu_supported(x, weight, stride, padding):
        return _TimeTapDepthwise.apply(x, weight, stride, padding)
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
    time. TorchScript, torch.export and torch.compile see the native convolution.
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
        if impl not in DEPTHWISE_IMPLS:
            raise ValueError(
                f"unknown depthwise implementation {impl!r}; choose one of {', '.join(DEPTHWISE_IMPLS)}"
            )
        self.impl = impl

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return F.conv3d(x, self.weight, None, self.stride, self.padding, 1, self.groups)
        return self._fast_forward(x)

    @torch.jit.unused
    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling():
            return F.conv3d(x, self.weight, None, self.stride, self.padding, 1, self.groups)
        return depthwise_conv3d(x, self.weight, self.stride, self.padding, self.impl)


def _tap_frames(tap: int, size: int, out_size: int, stride: int, pad: int):
    """(first output frame, end output frame, first input frame) that time tap `tap` connects."""
    first = 0
    while first * stride + tap - pad < 0:
        first += 1
    end = out_size
    while end > first and (end - 1) * stride + tap - pad >= size:
        end -= 1
    return first, end, first * stride + tap - pad


def _frame_batches(frames):
    """(batch index, frames as channels-last 2D images) for a (N, F, H, W, C) selection of frames.

    One batch when the frames of all clips form one strided block (or are copied into one when they are
    strided in time); one batch per clip otherwise, so that no copy is made.
    """
    n, f, h, w, c = frames.shape
    if n == 1 or frames.stride(0) == f * frames.stride(1) or frames.stride(1) != h * w * c:
        return [(slice(None), frames.reshape(n * f, h, w, c).permute(0, 3, 1, 2))]
    return [(i, frames[i].permute(0, 3, 1, 2)) for i in range(n)]


def _out_size(size: int, k: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - k) // stride + 1


def _tap_plan(kernel: int, size: int, out_size: int, stride: int, pad: int):
    """(tap, output frames, input frames) per time tap, taps that reach every output frame first."""
    plan = []
    for tap in range(kernel):
        first, end, src = _tap_frames(tap, size, out_size, stride, pad)
        if end > first:
            plan.append(
                (tap, slice(first, end), slice(src, src + (end - first - 1) * stride + 1, stride))
            )
    return sorted(plan, key=lambda item: item[1].start - item[1].stop)


def _input_grad(grad, weight, stride, padding, size):
    """The input gradient of a depthwise conv3d: the full correlation of `grad` with the flipped kernel.

    A strided convolution's gradient first spreads `grad` onto the stride-1 grid (zeros between), so that
    every stride runs the same one fast stride-1 channels-last convolution.
    """
    kernel = weight.shape[2:]
    low = [k - 1 - p for k, p in zip(kernel, padding)]
    if stride == (1, 1, 1):
        spread, pad = grad, low
    else:
        # the padded stride-1 grid is as long as the input plus the kernel's reach, less one
        grid = [s + k - 1 for s, k in zip(size, kernel)]
        spread = grad.new_zeros(grad.shape[:2] + tuple(grid))
        spread = spread.contiguous(memory_format=torch.channels_last_3d)
        spread[
            :,
            :,
            low[0] : low[0] + (grad.shape[2] - 1) * stride[0] + 1 : stride[0],
            low[1] : low[1] + (grad.shape[3] - 1) * stride[1] + 1 : stride[1],
            low[2] : low[2] + (grad.shape[4] - 1) * stride[2] + 1 : stride[2],
        ] = grad
        pad = (0, 0, 0)
    return F.conv3d(spread, weight.flip(2, 3, 4), None, 1, pad, 1, weight.shape[0])


class _TimeTapDepthwise(torch.autograd.Function):
    """Depthwise conv3d on channels-last memory, with a fast backward.

    Forward: oneDNN's channels-last depthwise conv3d. Input gradient: the same kind of call on the flipped
    kernel. Kernel gradient: one channels-last depthwise conv2d kernel gradient per time tap, the frames of
    all clips as one batch of 2D images.
    """

    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        x = x.contiguous(memory_format=torch.channels_last_3d)
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv3d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        grad = grad.contiguous(memory_format=torch.channels_last_3d)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = _input_grad(grad, weight, stride, padding, x.shape[2:])
        if ctx.needs_input_grad[1]:
            grad_w = _kernel_grad(grad, x, weight, stride, padding)
        return grad_x, grad_w, None, None


def _kernel_grad(grad, x, weight, stride, padding):
    """The kernel gradient of a depthwise conv3d, one depthwise conv2d kernel gradient per time tap."""
    pixels = x.permute(0, 2, 3, 4, 1)  # (N, T, H, W, C), contiguous
    grad = grad.permute(0, 2, 3, 4, 1)
    n, t = pixels.shape[:2]
    channels = weight.shape[0]
    grad_w = torch.zeros_like(weight)
    for tap, out_frames, in_frames in _tap_plan(
        weight.shape[2], t, grad.shape[1], stride[0], padding[0]
    ):
        grad_batches = _frame_batches(grad[:, out_frames])
        x_batches = _frame_batches(pixels[:, in_frames])
        if len(grad_batches) != len(x_batches):  # one side is split per clip: split both
            grad_batches = [(i, grad[i, out_frames].permute(0, 3, 1, 2)) for i in range(n)]
            x_batches = [(i, pixels[i, in_frames].permute(0, 3, 1, 2)) for i in range(n)]
        tap_weight = weight[:, :, tap].contiguous()
        for (_, g), (_, images) in zip(grad_batches, x_batches):
            grad_w[:, :, tap] += torch.ops.aten.convolution_backward(
                g.contiguous(memory_format=torch.channels_last),
                images.contiguous(memory_format=torch.channels_last),
                tap_weight,
                None,
                stride[1:],
                padding[1:],
                (1, 1),
                False,
                (0, 0),
                channels,
                (False, True, False),
            )[1]
    return grad_w
