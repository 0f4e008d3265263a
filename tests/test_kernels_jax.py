"""The JAX depthwise conv3d implementations against `lax.conv_general_dilated(feature_group_count=C)`;
the max-pool and the BatchNorm with hand-written gradients against PyTorch's `F.max_pool3d`,
`nnx.max_pool` and `nnx.BatchNorm`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from csnspec.kernels import inline_module, inline_source
from csnspec.kernels import jax_depthwise as jdw
from csnspec.kernels.jax_convs import BatchNorm, max_pool

# (kernel, strides, padding) of every depthwise conv the IR produces, plus odd strides and paddings
CASES = [
    ((3, 3, 3), (1, 1, 1), ((1, 1),) * 3),
    ((3, 3, 3), (2, 2, 2), ((1, 1),) * 3),
    ((3, 3, 3), (1, 2, 2), ((1, 1),) * 3),
    ((3, 3, 3), (2, 1, 1), ((1, 1),) * 3),
    ((1, 3, 3), (1, 1, 1), ((0, 0), (1, 1), (1, 1))),
    ((1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1))),
    ((3, 1, 1), (1, 1, 1), ((1, 1), (0, 0), (0, 0))),
    ((3, 1, 1), (2, 1, 1), ((1, 1), (0, 0), (0, 0))),
    ((3, 3, 3), (1, 1, 1), ((0, 0),) * 3),
    ((3, 3, 3), (2, 2, 2), ((0, 1), (2, 0), (1, 2))),
]


def reference(x, kernel, strides, padding, cotangent):
    """Output and both gradients of XLA's grouped convolution, in float64 on numpy inputs."""
    with jax.enable_x64():
        x64, k64 = jnp.asarray(x, jnp.float64), jnp.asarray(kernel, jnp.float64)
        native = lambda x, k: jdw._native_depthwise(x, k, strides, padding)
        y, vjp = jax.vjp(native, x64, k64)
        gx, gk = vjp(jnp.asarray(cotangent, jnp.float64))
        return np.asarray(y), np.asarray(gx), np.asarray(gk)


def check(impl, shape, kernel_size, strides, padding, dtype=jnp.float32, rtol=1e-5, seed=0):
    rng = np.random.default_rng(seed)
    n, c, t, h, w = shape
    x = rng.standard_normal((n, t, h, w, c)).astype(np.float32)
    kernel = rng.standard_normal((*kernel_size, 1, c)).astype(np.float32)
    fn = lambda x, k: jdw.depthwise_conv3d(x, k, strides, padding, impl)
    y, vjp = jax.vjp(jax.jit(fn), jnp.asarray(x, dtype), jnp.asarray(kernel, dtype))
    cotangent = rng.standard_normal(y.shape).astype(np.float32)
    gx, gk = vjp(jnp.asarray(cotangent, dtype))
    want = reference(x, kernel, strides, padding, cotangent)
    for got, ref in zip((y, gx, gk), want):
        assert got.dtype == dtype
        assert got.shape == ref.shape
        np.testing.assert_allclose(
            np.asarray(got, np.float64), ref, rtol=rtol, atol=rtol * np.abs(ref).max()
        )


@pytest.mark.parametrize("kernel,strides,padding", CASES)
def test_shift_matches_native(kernel, strides, padding):
    check("shift", (2, 3, 5, 7, 6), kernel, strides, padding)


@pytest.mark.parametrize("impl", ["auto", "native"])
def test_auto_and_native_match_the_reference(impl):
    check(impl, (1, 2, 4, 5, 5), (3, 3, 3), (1, 2, 2), ((1, 1),) * 3)


def test_bfloat16_sums_in_float32():
    check("shift", (1, 4, 3, 6, 6), (3, 3, 3), (1, 1, 1), ((1, 1),) * 3, jnp.bfloat16, rtol=2e-2)


def test_unsupported_padding_runs_the_native_convolution():
    x = jnp.ones((1, 4, 5, 5, 2))
    kernel = jnp.ones((3, 3, 3, 1, 2))
    cropped = (
        (-1, 0),
        (1, 1),
        (1, 1),
    )  # negative padding crops: the shifted form does not handle it
    got = jdw.depthwise_conv3d(x, kernel, 1, cropped, "shift")
    assert jnp.array_equal(got, jdw._native_depthwise(x, kernel, (1, 1, 1), cropped))


def test_unknown_impl_names_the_choices():
    with pytest.raises(ValueError, match="auto, native, shift"):
        jdw.depthwise_conv3d(jnp.ones((1, 3, 3, 3, 2)), jnp.ones((3, 3, 3, 1, 2)), 1, 1, "fast")
    with pytest.raises(ValueError, match="auto, native, shift"):
        jdw.DepthwiseConv(2, 3, 1, 1, impl="fast", rngs=nnx.Rngs(0))


def test_module_holds_the_kernel_nnx_conv_holds():
    conv = nnx.Conv(
        6, 6, (3, 3, 3), (1, 2, 2), padding=((1, 1),) * 3, feature_group_count=6, use_bias=False,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    fast = jdw.DepthwiseConv(6, (3, 3, 3), (1, 2, 2), ((1, 1),) * 3, rngs=nnx.Rngs(0))
    conv_state, fast_state = nnx.state(conv), nnx.state(fast)
    assert (
        set(dict(nnx.to_flat_state(fast_state)))
        == set(dict(nnx.to_flat_state(conv_state)))
        == {("kernel",)}
    )
    # the same shape and the same default initialisation from the same seed
    np.testing.assert_array_equal(fast.kernel[...], conv.kernel[...])
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 3, 5, 5, 6)), jnp.float32)
    np.testing.assert_allclose(fast(x), conv(x), rtol=1e-5, atol=1e-5)
    fast.impl = "native"
    np.testing.assert_allclose(fast(x), conv(x), rtol=1e-6, atol=1e-6)


@settings(max_examples=5)  # each example compiles two programs (seconds each)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    t=st.integers(1, 4),
    hw=st.integers(1, 6),
    kernel=st.sampled_from([(3, 3, 3), (1, 3, 3), (3, 1, 1)]),
    strides=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)),
)
def test_property_shift_matches_native(n, c, t, hw, kernel, strides):
    padding = tuple((k // 2, k // 2) for k in kernel)
    check("shift", (n, c, t, hw, hw + 1), kernel, strides, padding)


def test_inline_text_is_standalone():
    text = inline_source("jax_depthwise")
    assert "csnspec" not in text.replace("# csnspec:", "")
    module = inline_module("jax_depthwise", module_name="kernels_jax_only")
    assert module.JAX_DEPTHWISE_IMPLS == ("auto", "native", "shift")


# (window, strides, padding): the stems' 1x3x3 pool, a 3x3x3 one with stride 2, odd and uneven ones
POOL_CASES = [
    ((1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1))),
    ((3, 3, 3), (2, 2, 2), ((1, 1),) * 3),
    ((2, 2, 2), (2, 2, 2), ((0, 0),) * 3),
    ((1, 3, 3), (1, 1, 1), ((0, 0), (1, 1), (1, 1))),
    ((3, 2, 3), (1, 3, 2), ((0, 1), (1, 0), (1, 1))),
]


@pytest.mark.parametrize("window,strides,padding", POOL_CASES)
def test_max_pool_matches_torch_with_ties(window, strides, padding):
    """Values and input gradient as PyTorch's, whose first maximum of a window takes its gradient:
    half the inputs are exact zeros (a ReLU's output), so windows of ties are common."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(1)
    x = np.maximum(rng.standard_normal((2, 3, 5, 7, 6)), 0).astype(np.float32)  # N, C, T, H, W
    cl = x.transpose(0, 2, 3, 4, 1)
    y, vjp = jax.vjp(jax.jit(lambda x: max_pool(x, window, strides, padding)), jnp.asarray(cl))
    cotangent = rng.standard_normal(y.shape).astype(np.float32)
    (gx,) = vjp(jnp.asarray(cotangent))

    xt = torch.from_numpy(x).requires_grad_()
    # torch pads evenly: pad unevenly with -inf first, as the IR's uneven paddings mean
    pads = [p for pair in reversed(padding) for p in pair]
    yt = F.max_pool3d(F.pad(xt, pads, value=-float("inf")), window, strides)
    yt.backward(torch.from_numpy(cotangent.transpose(0, 4, 1, 2, 3)))
    np.testing.assert_array_equal(np.asarray(y), yt.detach().numpy().transpose(0, 2, 3, 4, 1))
    np.testing.assert_allclose(
        np.asarray(gx), xt.grad.numpy().transpose(0, 2, 3, 4, 1), rtol=1e-6, atol=1e-6
    )


def test_max_pool_matches_nnx_max_pool():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 4, 9, 9, 5)), jnp.float32)
    args = ((1, 3, 3), (1, 2, 2), ((0, 0), (1, 1), (1, 1)))
    ours = lambda x: (max_pool(x, *args) ** 2).sum()
    theirs = lambda x: (nnx.max_pool(x, args[0], strides=args[1], padding=args[2]) ** 2).sum()
    np.testing.assert_array_equal(max_pool(x, *args), nnx.max_pool(x, args[0], args[1], args[2]))
    np.testing.assert_allclose(jax.grad(ours)(x), jax.grad(theirs)(x), rtol=1e-6, atol=1e-6)


class _PooledBlock(nnx.Module):
    """conv -> BatchNorm -> add -> ReLU -> max-pool: a stage pool after a residual block."""

    def __init__(self, pool):
        self.conv = nnx.Conv(8, 32, (1, 3, 3), padding=((0, 0), (1, 1), (1, 1)), rngs=nnx.Rngs(0))
        self.bn, self.pool = BatchNorm(32, rngs=nnx.Rngs(0)), pool

    def __call__(self, x):
        y = jax.nn.relu(self.bn(self.conv(x)) + x.mean())
        return self.pool(y, (2, 1, 1), (2, 1, 1), ((0, 0), (0, 0), (0, 0)))


def test_max_pool_gradient_under_jit_after_a_fused_producer():
    """Under jit XLA may compute the pool's input in two fusions whose last bits differ; a
    backward that compared the pooled maximum with a recomputed input lost gradients here (a
    regression found by test_equivalence: torch and flax disagreed past a stage pool)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 4, 12, 10, 8)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((2, 2, 12, 10, 32)), jnp.float32)
    grads = [
        nnx.jit(nnx.grad(lambda net, x: (net(x) * g).sum(), argnums=1))(_PooledBlock(pool), x)
        for pool in (max_pool, nnx.max_pool)
    ]
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-6)


def test_batch_norm_matches_nnx_in_both_modes():
    """Training mode: output, gradients of input, scale and bias, running averages as nnx's
    two-pass BatchNorm's; eval mode: nnx's own call. Same parameters under the same paths."""
    args = {"momentum": 0.9, "use_fast_variance": False}
    ours, theirs = (
        BatchNorm(5, **args, rngs=nnx.Rngs(0)),
        nnx.BatchNorm(5, **args, rngs=nnx.Rngs(0)),
    )
    rng = np.random.default_rng(4)
    scale = jnp.asarray(rng.uniform(0.5, 2, 5), jnp.float32)
    bias = jnp.asarray(rng.uniform(-1, 1, 5), jnp.float32)
    for bn in (ours, theirs):  # a scale and bias that are not 1 and 0, the same in both
        bn.scale[...], bn.bias[...] = scale, bias
    x = jnp.asarray(3 + 2 * np.random.default_rng(5).standard_normal((2, 3, 4, 4, 5)), jnp.float32)
    weights = jnp.linspace(-1, 1, x.size).reshape(x.shape)

    def loss(bn, x):
        y = bn(x)
        return (jnp.maximum(y, 0) * weights).sum(), y

    step = jax.jit(nnx.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    (_, y), (g_bn, g_x) = step(ours, x)
    (_, ref), (r_bn, r_x) = step(theirs, x)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_x, r_x, rtol=1e-4, atol=1e-5)
    for name in ("scale", "bias"):
        got, want = getattr(g_bn, name)[...], getattr(r_bn, name)[...]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    for name in ("mean", "var"):  # the running averages moved alike
        np.testing.assert_allclose(getattr(ours, name)[...], getattr(theirs, name)[...], rtol=1e-6)
    ours.eval()
    theirs.eval()
    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    assert jax.tree.map(np.shape, nnx.state(ours)) == jax.tree.map(np.shape, nnx.state(theirs))
