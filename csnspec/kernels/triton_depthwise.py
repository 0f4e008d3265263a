import os

import torch
import torch.nn.functional as F

# csnspec: inline-begin

# Triton kernels for the depthwise conv3d on CUDA (forward, input gradient, kernel gradient). Each program
# works on one block of one (clip, channel) plane; loads are in the tensor's dtype (fp32, bf16 or fp16),
# sums in fp32. Triton is imported only where it can run: on CUDA, or under TRITON_INTERPRET=1 (tests).

_TRITON = torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"
if _TRITON:
    try:
        import triton
        import triton.language as tl
    except ImportError:
        _TRITON = False

_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_TRITON_BLOCK = 1024

if _TRITON:

    @triton.jit
    def _depthwise_forward_kernel(
        x_ptr, w_ptr, y_ptr, C, T, H, W, TO, HO, WO,
        sxn, sxc, sxt, sxh, sxw,
        ST: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
        PT: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
        KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        plane = tl.program_id(0)  # clip * C + channel
        n = plane // C
        c = plane % C
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < TO * HO * WO
        ow = offs % WO
        oh = (offs // WO) % HO
        ot = offs // (WO * HO)
        x_plane = x_ptr + n.to(tl.int64) * sxn + c.to(tl.int64) * sxc
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for a in tl.static_range(KT):
            it = ot * ST + a - PT
            for b in tl.static_range(KH):
                ih = oh * SH + b - PH
                for d in tl.static_range(KW):
                    iw = ow * SW + d - PW
                    ok = inside & (it >= 0) & (it < T) & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                    v = tl.load(x_plane + it * sxt + ih * sxh + iw * sxw, mask=ok, other=0.0)
                    tap = tl.load(w_ptr + c * (KT * KH * KW) + (a * KH + b) * KW + d)
                    acc += v.to(tl.float32) * tap.to(tl.float32)
        y_plane = y_ptr + plane.to(tl.int64) * (TO * HO * WO)
        tl.store(y_plane + offs, acc.to(y_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _depthwise_input_grad_kernel(
        g_ptr, w_ptr, dx_ptr, C, T, H, W, TO, HO, WO,
        ST: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
        PT: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
        KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        # each input element gathers the output elements whose window holds it: no atomics
        plane = tl.program_id(0)
        c = plane % C
        offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = offs < T * H * W
        iw = offs % W
        ih = (offs // W) % H
        it = offs // (W * H)
        g_plane = g_ptr + plane.to(tl.int64) * (TO * HO * WO)
        acc = tl.zeros((BLOCK,), dtype=tl.float32)
        for a in tl.static_range(KT):
            nt = it + PT - a  # = ot * ST when this tap connects them
            ot = nt // ST
            ok_t = (nt >= 0) & (nt % ST == 0) & (ot < TO)
            for b in tl.static_range(KH):
                nh = ih + PH - b
                oh = nh // SH
                ok_h = (nh >= 0) & (nh % SH == 0) & (oh < HO)
                for d in tl.static_range(KW):
                    nw = iw + PW - d
                    ow = nw // SW
                    ok = inside & ok_t & ok_h & (nw >= 0) & (nw % SW == 0) & (ow < WO)
                    v = tl.load(g_plane + (ot * HO + oh) * WO + ow, mask=ok, other=0.0)
                    tap = tl.load(w_ptr + c * (KT * KH * KW) + (a * KH + b) * KW + d)
                    acc += v.to(tl.float32) * tap.to(tl.float32)
        dx_plane = dx_ptr + plane.to(tl.int64) * (T * H * W)
        tl.store(dx_plane + offs, acc.to(dx_ptr.dtype.element_ty), mask=inside)

    @triton.jit
    def _depthwise_kernel_grad_kernel(
        x_ptr, g_ptr, part_ptr, C, T, H, W, TO, HO, WO, BLOCKS,
        ST: tl.constexpr, SH: tl.constexpr, SW: tl.constexpr,
        PT: tl.constexpr, PH: tl.constexpr, PW: tl.constexpr,
        KT: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        # one fp32 partial sum per (plane, block, tap), summed afterwards in a fixed order (deterministic)
        plane = tl.program_id(0)
        block = tl.program_id(1)
        offs = block * BLOCK + tl.arange(0, BLOCK)
        inside = offs < TO * HO * WO
        ow = offs % WO
        oh = (offs // WO) % HO
        ot = offs // (WO * HO)
        g = tl.load(g_ptr + plane.to(tl.int64) * (TO * HO * WO) + offs, mask=inside, other=0.0)
        g = g.to(tl.float32)
        x_plane = x_ptr + plane.to(tl.int64) * (T * H * W)
        part = part_ptr + (plane.to(tl.int64) * BLOCKS + block) * (KT * KH * KW)
        for a in tl.static_range(KT):
            it = ot * ST + a - PT
            for b in tl.static_range(KH):
                ih = oh * SH + b - PH
                for d in tl.static_range(KW):
                    iw = ow * SW + d - PW
                    ok = inside & (it >= 0) & (it < T) & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
                    v = tl.load(x_plane + (it * H + ih) * W + iw, mask=ok, other=0.0)
                    tl.store(part + (a * KH + b) * KW + d, tl.sum(v.to(tl.float32) * g, axis=0))


def _triton_launch_args(weight, stride, padding):
    """The compile-time arguments of the three kernels: strides, paddings, kernel size, block."""
    return {
        "ST": stride[0], "SH": stride[1], "SW": stride[2],
        "PT": padding[0], "PH": padding[1], "PW": padding[2],
        "KT": weight.shape[2], "KH": weight.shape[3], "KW": weight.shape[4],
        "BLOCK": _TRITON_BLOCK,
    }  # fmt: skip


class _TritonDepthwise(torch.autograd.Function):
    """Depthwise conv3d with Triton kernels for the forward and both gradients."""

    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        n, c, t, h, w = x.shape
        out = [
            (size + 2 * p - k) // s + 1
            for size, k, s, p in zip((t, h, w), weight.shape[2:], stride, padding)
        ]
        y = x.new_empty((n, c, *out))
        w_flat = weight.contiguous()
        grid = (n * c, triton.cdiv(out[0] * out[1] * out[2], _TRITON_BLOCK))
        _depthwise_forward_kernel[grid](
            x,
            w_flat,
            y,
            c,
            t,
            h,
            w,
            *out,
            *x.stride(),
            **_triton_launch_args(weight, stride, padding),
        )
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        n, c, t, h, w = x.shape
        out = grad.shape[2:]
        grad = grad.contiguous()
        args = _triton_launch_args(weight, stride, padding)
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.empty((n, c, t, h, w), dtype=x.dtype, device=x.device)
            grid = (n * c, triton.cdiv(t * h * w, _TRITON_BLOCK))
            _depthwise_input_grad_kernel[grid](
                grad, weight.contiguous(), grad_x, c, t, h, w, *out, **args
            )
        if ctx.needs_input_grad[1]:
            blocks = triton.cdiv(out[0] * out[1] * out[2], _TRITON_BLOCK)
            taps = weight.shape[2] * weight.shape[3] * weight.shape[4]
            parts = torch.empty((n, c, blocks, taps), dtype=torch.float32, device=x.device)
            _depthwise_kernel_grad_kernel[(n * c, blocks)](
                x.contiguous(), grad, parts, c, t, h, w, *out, blocks, **args
            )
            grad_w = parts.sum((0, 2)).reshape(weight.shape).to(weight.dtype)
        return grad_x, grad_w, None, None


def depthwise_conv3d_triton(x, weight, stride, padding):
    """`F.conv3d(x, weight, None, stride, padding, groups=C)` with the Triton kernels.

    Calls the kernels do not handle (other dtypes, mixed dtypes, planes past 2**31 elements) run the
    native convolution.
    """
    stride, padding = tuple(stride), tuple(padding)
    supported = (
        _TRITON
        and x.dim() == 5
        and weight.dim() == 5
        and weight.shape[0] == x.shape[1]
        and weight.shape[1] == 1
        and x.dtype in _TRITON_DTYPES
        and weight.dtype == x.dtype
        and x.numel() > 0
        and x.numel() < 2**31
        and all(s >= 1 and 0 <= p for s, p in zip(stride, padding))
        and all(size + 2 * p >= k for size, k, p in zip(x.shape[2:], weight.shape[2:], padding))
    )
    if not supported:
        return F.conv3d(x, weight, None, stride, padding, 1, weight.shape[0])
    return _TritonDepthwise.apply(x, weight, stride, padding)
