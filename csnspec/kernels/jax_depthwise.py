import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

# csnspec: inline-begin

# Depthwise 3D convolution, channels-last. Stand-in until the kernels branch lands.

JAX_DEPTHWISE_IMPLS = ("auto", "native", "shifted")


def depthwise_conv3d(x, kernel, strides, padding, impl: str = "auto"):
    """A depthwise 3D convolution of `x` (N, T, H, W, C) with `kernel` (kt, kh, kw, 1, C)."""
    if impl not in JAX_DEPTHWISE_IMPLS:
        raise ValueError(
            f"unknown depthwise implementation {impl!r}; choose one of {JAX_DEPTHWISE_IMPLS}"
        )
    pads = [(p, p) for p in padding]
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=tuple(strides),
        padding=pads,
        dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        feature_group_count=x.shape[-1],
    )


class DepthwiseConv(nnx.Module):
    """A depthwise conv with nnx.Conv's kernel layout (kt, kh, kw, 1, C)."""

    def __init__(self, channels, kernel_size, strides, padding, *, impl: str = "auto", rngs):
        init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
        shape = (*kernel_size, 1, channels)
        self.kernel = nnx.Param(init(rngs.params(), shape, jnp.float32))
        self.strides = tuple(strides)
        self.padding = tuple(padding)
        self.impl = impl

    def __call__(self, x: jax.Array) -> jax.Array:
        return depthwise_conv3d(x, self.kernel[...], self.strides, self.padding, self.impl)
