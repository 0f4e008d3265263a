import os

import torch
import torch.nn.functional as F
from torch import nn

# csnspec: inline-begin

# Depthwise 3D convolution (one filter per channel), the op CSN is built on.
#
# PyTorch's CPU kernel for `F.conv3d(..., groups=C)` is slow on contiguous (N, C, T, H, W) memory,
# its backward most of all; on channels-last memory (N, T, H, W, C) oneDNN's forward is fast, its
# backward is not. The "cpu" implementation runs on channels-last memory: the forward as that
# conv3d; the input gradient as the same fast call on the output gradient with the flipped kernel;
# the kernel gradient as one depthwise conv2d kernel gradient per time tap, the frames of the clips
# taken as a batch of 2D images. A strided conv's output gradient is first spread onto the stride-1
# grid (zeros between), so the same calls serve every stride. Generated networks run channels-last
# on the CPU (`preferred_layout`), where nothing is converted; contiguous input is converted and the
# results converted back (strided convs of contiguous input, measured slower so, run natively).
# kt x 1 x 1 kernels run as kt shifted multiply-adds over frames, in either layout.

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
    """Whether the "cpu" implementation takes this call (otherwise the native call runs)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or weight.dtype != torch.float32:
        return False
    if x.dim() != 5 or weight.dim() != 5 or weight.shape[1] != 1 or weight.shape[0] != x.shape[1]:
        return False
    if weight.shape[3:] == (1, 1):  # kt x 1 x 1: shifted multiply-adds, at stride 1 only
        if stride != (1, 1, 1) or padding[1:] != (0, 0):
            return False
    elif stride != (1, 1, 1) and not _is_channels_last(x):  # measured slower than native
        return False
    return x.numel() > 0 and all(
        0 <= p < k <= size + 2 * p and s >= 1
        for size, k, p, s in zip(x.shape[2:], weight.shape[2:], padding, stride)
    )


def preferred_layout(x: torch.Tensor) -> torch.Tensor:
    """`x` in the memory layout this module's convolutions run fastest in on x's device.

    Channels-last on the CPU, where oneDNN's depthwise kernels and the 1x1x1 convs as matrix
    products (PointwiseConv3d) want it; unchanged elsewhere, and in a captured graph (TorchScript,
    tracing, ONNX, torch.export, torch.compile), which records the plain layout.
    """
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return x
    if x.device.type == "cpu" and x.dim() == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def depthwise_conv3d(x, weight, stride, padding, impl: str = "auto") -> torch.Tensor:
    """`F.conv3d(x, weight, None, stride, padding, groups=C)` for a (C, 1, kt, kh, kw) weight.

    `impl` picks the implementation: "auto" (the fastest correct one for x's device), "native" (PyTorch's
    own kernel), "cpu" (PyTorch's forward, a fast backward: see above) or "triton" (CUDA kernels). A
    call a fast implementation does not handle runs the native kernel instead. The result has x's
    memory layout.
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
        temporal = weight.shape[3:] == (1, 1)
        if not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)):
            return (
                _temporal(x, weight, padding[0]) if temporal else _cpu(x, weight, stride, padding)
            )
        if temporal:
            return _TemporalDepthwise.apply(x, weight, padding[0])
        return _CpuDepthwise.apply(x, weight, stride, padding)
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


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()


class _CpuDepthwise(torch.autograd.Function):
    """Depthwise conv3d on channels-last memory with a fast backward (see the top of the file).

    Results come back in x's memory layout, as from F.conv3d.
    """

    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.layout = _layout_of(x)
        ctx.save_for_backward(x.contiguous(memory_format=torch.channels_last_3d), weight)
        ctx.stride, ctx.padding = stride, padding
        return _cpu(x, weight, stride, padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last_3d)
        grad = _spread(grad, x, weight, ctx.stride, ctx.padding)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            # a stride-1 convolution's transpose: the flipped kernel, padding k - 1 - p
            flipped_padding = [k - 1 - p for k, p in zip(weight.shape[2:], ctx.padding)]
            grad_x = F.conv3d(
                grad, weight.flip(2, 3, 4), None, 1, flipped_padding, 1, weight.shape[0]
            )
            grad_x = grad_x.contiguous(memory_format=ctx.layout)
        if ctx.needs_input_grad[1]:
            grad_w = _kernel_grad(grad, x, weight, ctx.padding)
        return grad_x, grad_w, None, None


def _spread(grad, x, weight, stride, padding):
    """A strided conv's output gradient on the stride-1 output grid, zeros between (channels-last).

    The stride-1 conv's output at every stride-th position is the strided conv's output, so its
    gradient there is `grad` and elsewhere zero; both backward calls then run at stride 1.
    """
    if stride == (1, 1, 1):
        return grad
    size = [n + 2 * p - k + 1 for n, k, p in zip(x.shape[2:], weight.shape[2:], padding)]
    spread = grad.new_zeros((grad.shape[0], *size, grad.shape[1])).permute(0, 4, 1, 2, 3)
    spread[:, :, :: stride[0], :: stride[1], :: stride[2]] = grad
    return spread


class _TemporalDepthwise(torch.autograd.Function):
    """A stride-1 depthwise kt x 1 x 1 conv as kt shifted multiply-adds over frames, in x's layout.

    oneDNN's channels-last kt x 1 x 1 kernels are slower than PyTorch's contiguous ones, which are
    slow too; a product of a frame with one weight per channel runs at memory speed in either layout.
    """

    @staticmethod
    def forward(ctx, x, weight, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return _temporal(x, weight, padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        spans = _tap_spans(x.shape[2], grad.shape[2], weight.shape[2], ctx.padding)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
            for tap, (o, i, n) in enumerate(spans):
                grad_x[:, :, i : i + n].addcmul_(grad[:, :, o : o + n], weight[:, :, tap])
        if ctx.needs_input_grad[1]:
            grad_w = torch.zeros_like(weight)
            for tap, (o, i, n) in enumerate(spans):
                product = grad[:, :, o : o + n] * x[:, :, i : i + n]
                grad_w[:, 0, tap, 0, 0] = product.sum(dim=(0, 2, 3, 4))
        return grad_x, grad_w, None


def _cpu(x, weight, stride, padding):
    """The forward of _CpuDepthwise: oneDNN's channels-last conv3d, the result in x's layout."""
    out = F.conv3d(
        x.contiguous(memory_format=torch.channels_last_3d),
        weight,
        None,
        stride,
        padding,
        1,
        weight.shape[0],
    )
    return out.contiguous(memory_format=_layout_of(x))


def _temporal(x, weight, padding: int):
    """The forward of _TemporalDepthwise: one multiply-add of shifted frames per time tap."""
    frames, taps = x.shape[2], weight.shape[2]
    shape = (*x.shape[:2], frames + 2 * padding - taps + 1, *x.shape[3:])
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=_layout_of(x))
    out.zero_()
    for tap, (o, i, n) in enumerate(_tap_spans(frames, out.shape[2], taps, padding)):
        out[:, :, o : o + n].addcmul_(x[:, :, i : i + n], weight[:, :, tap])
    return out


def _layout_of(x: torch.Tensor):
    return torch.channels_last_3d if _is_channels_last(x) else torch.contiguous_format


def _tap_spans(frames: int, out_frames: int, taps: int, padding: int):
    """Per time tap: (first output frame, first input frame, frame count) it connects."""
    spans = []
    for tap in range(taps):
        shift = tap - padding  # output frame t reads input frame t + shift
        first = max(0, -shift)
        end = min(out_frames, frames - shift)
        spans.append((first, first + shift, max(0, end - first)))
    return spans


def _frame_batches(frames):
    """(batch index, frames as channels-last 2D images) for a (N, F, H, W, C) run of frames.

    One batch when the frames of all clips are one block of memory; one per clip otherwise (no copy).
    """
    n, f, h, w, c = frames.shape
    if n == 1 or frames.stride(0) == f * frames.stride(1):
        return [(slice(None), frames.reshape(n * f, h, w, c).permute(0, 3, 1, 2))]
    return [(i, frames[i].permute(0, 3, 1, 2)) for i in range(n)]


def _kernel_grad(grad, x, weight, padding):
    """The kernel gradient of a stride-1 depthwise conv3d, a depthwise conv2d's per time tap.

    `grad` and `x` are channels-last (N, C, T, H, W) tensors.
    """
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
