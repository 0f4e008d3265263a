import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

# csnspec: inline-begin

# Depthwise 3D convolution (one filter per channel) for JAX, on NDHWC inputs and (kt, kh, kw, 1, C) kernels
# (the layout of nnx.Conv with feature_group_count=C).
#
# XLA turns `lax.conv_general_dilated(feature_group_count=C)` into a slow generic convolution on CPU, and
# its gradient into a slower one. The "shift" implementation writes the op as kt*kh*kw shifted slices of
# the padded input times one kernel tap each, which XLA fuses into one elementwise loop. Its gradient is
# written by hand (jax.custom_vjp): the input gradient is the same shifted form applied to the output
# gradient (spread onto the stride-1 grid) with the flipped kernel, and the kernel gradient is one
# reduction per tap.

JAX_DEPTHWISE_IMPLS = ("auto", "native", "shift")


def _check_impl(impl: str) -> None:
    if impl not in JAX_DEPTHWISE_IMPLS:
        raise ValueError(
            f"unknown depthwise implementation {impl!r}; choose one of {', '.join(JAX_DEPTHWISE_IMPLS)}"
        )


def _pairs(padding):
    """((lo, hi),) * 3 from an int, three ints, or three (lo, hi) pairs."""
    if isinstance(padding, int):
        return ((padding, padding),) * 3
    return tuple((p, p) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding)


def _triple(value):
    return (value,) * 3 if isinstance(value, int) else tuple(int(v) for v in value)


def _native_depthwise(x, kernel, strides, padding):
    return lax.conv_general_dilated(
        x,
        kernel,
        strides,
        padding,
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        feature_group_count=kernel.shape[-1],
    )


def _window(padded, tap, strides, out_shape):
    """The strided slice of `padded` that kernel tap (a, b, d) multiplies, of the output's shape."""
    start = (0, *tap, 0)
    step = (1, *strides, 1)
    limit = tuple(s + (o - 1) * st + 1 for s, o, st in zip(start, out_shape, step))
    return lax.slice(padded, start, limit, step)


def _shifted_sum(padded, kernel, strides, out_shape):
    """sum over taps of the strided window of `padded` each tap sees, times that tap (fp32 or wider)."""
    kt, kh, kw = kernel.shape[:3]
    acc_dtype = jnp.promote_types(padded.dtype, jnp.float32)
    taps = kernel.astype(acc_dtype)
    out = None
    for a in range(kt):
        for b in range(kh):
            for d in range(kw):
                window = _window(padded, (a, b, d), strides, out_shape)
                term = window.astype(acc_dtype) * taps[a, b, d, 0]
                out = term if out is None else out + term
    return out.astype(padded.dtype)


def _out_shape(x_shape, kernel_shape, strides, padding):
    n, *sizes, c = x_shape
    return (
        n,
        *(
            (size + lo + hi - k) // s + 1
            for size, k, s, (lo, hi) in zip(sizes, kernel_shape, strides, padding)
        ),
        c,
    )


def _shift_forward_only(x, kernel, strides, padding):
    padded = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    return _shifted_sum(
        padded, kernel, strides, _out_shape(x.shape, kernel.shape, strides, padding)
    )


def _shift_depthwise_fwd(x, kernel, strides, padding):
    return _shift_forward_only(x, kernel, strides, padding), (x, kernel)


def _shift_depthwise_bwd(strides, padding, residuals, grad):
    x, kernel = residuals
    ksize = kernel.shape[:3]
    # input gradient: spread grad onto the stride-1 grid (zeros between, lax.pad's interior padding) and
    # pad it so that a valid correlation with the flipped kernel has the input's size
    spread = []
    for size, k, s, (lo, _), o in zip(x.shape[1:4], ksize, strides, padding, grad.shape[1:4]):
        low = k - 1 - lo
        spread.append((low, size + k - 1 - low - ((o - 1) * s + 1), s - 1))
    spread_grad = lax.pad(grad, jnp.zeros((), grad.dtype), ((0, 0, 0), *spread, (0, 0, 0)))
    grad_x = _shifted_sum(spread_grad, kernel[::-1, ::-1, ::-1], (1, 1, 1), x.shape)
    # kernel gradient: for each tap, the sum over clips and positions of its window times grad. A
    # scan over the taps keeps one window alive at a time: unrolled, XLA:CPU copies all the windows
    # out at once and runs 5x slower.
    padded = jnp.pad(x, ((0, 0), *padding, (0, 0)))
    acc_dtype = jnp.promote_types(x.dtype, jnp.float32)
    g = grad.astype(acc_dtype)
    span = tuple((o - 1) * s + 1 for o, s in zip(grad.shape[1:4], strides))

    def tap_sum(carry, tap):
        window = lax.dynamic_slice(padded, (0, *tap, 0), (x.shape[0], *span, x.shape[4]))
        window = lax.slice(window, (0,) * 5, window.shape, (1, *strides, 1))
        return carry, jnp.sum(window.astype(acc_dtype) * g, axis=(0, 1, 2, 3))

    kt, kh, kw = ksize
    taps = jnp.array(
        [(a, b, d) for a in range(kt) for b in range(kh) for d in range(kw)], jnp.int32
    )
    grad_kernel = lax.scan(tap_sum, None, taps)[1].reshape(kernel.shape).astype(kernel.dtype)
    return grad_x, grad_kernel


_shift_depthwise = jax.custom_vjp(_shift_forward_only, nondiff_argnums=(2, 3))
_shift_depthwise.defvjp(_shift_depthwise_fwd, _shift_depthwise_bwd)


def _shift_supported(x, kernel, strides, padding) -> bool:
    """Whether the shifted form handles this call (otherwise the native convolution runs)."""
    if x.ndim != 5 or kernel.ndim != 5 or kernel.shape[3] != 1 or kernel.shape[4] != x.shape[4]:
        return False
    if not jnp.issubdtype(x.dtype, jnp.floating) or x.dtype != kernel.dtype:
        return False
    return all(
        s >= 1 and lo >= 0 and hi >= 0 and size + lo + hi >= k
        for size, k, s, (lo, hi) in zip(x.shape[1:4], kernel.shape[:3], strides, padding)
    )


def depthwise_conv3d(x, kernel, strides, padding, impl: str = "auto"):
    """Depthwise conv3d of NDHWC `x` with a (kt, kh, kw, 1, C) kernel.

    Equals `lax.conv_general_dilated(x, kernel, strides, padding, feature_group_count=C)`. `impl`:
    "auto" (the fastest correct one: "shift" on every backend), "native" (XLA's grouped convolution) or
    "shift" (shifted multiply-adds). A call the shifted form does not handle runs the native convolution.
    """
    _check_impl(impl)
    strides, padding = _triple(strides), _pairs(padding)
    if impl != "native" and _shift_supported(x, kernel, strides, padding):
        return _shift_depthwise(x, kernel, strides, padding)
    return _native_depthwise(x, kernel, strides, padding)


class DepthwiseConv(nnx.Module):
    """A depthwise 3D convolution (no bias) holding `kernel` as nnx.Conv(C, C, feature_group_count=C) does.

    `impl` (one of JAX_DEPTHWISE_IMPLS) may be changed at any time.
    """

    def __init__(
        self,
        channels: int,
        kernel_size,
        strides=1,
        padding=0,
        *,
        impl: str = "auto",
        kernel_init=None,
        rngs: nnx.Rngs,
    ):
        _check_impl(impl)
        self.strides = _triple(strides)
        self.padding = _pairs(padding)
        self.impl = impl
        shape = (*_triple(kernel_size), 1, channels)
        init = nnx.initializers.lecun_normal() if kernel_init is None else kernel_init  # nnx.Conv's
        self.kernel = nnx.Param(init(rngs.params(), shape, jnp.float32))

    def __call__(self, x):
        return depthwise_conv3d(x, self.kernel[...], self.strides, self.padding, self.impl)
