"""The dense-conv helpers against the frameworks' own convolutions (values, gradients, parameters
and their names): strided 1x1x1 convs as a subsample then a stride-1 conv, and Flax's 3D convs as
2D convs per time tap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from flax import nnx
from torch import nn

from csnspec.kernels import inline_module, inline_source
from csnspec.kernels.jax_convs import FrameConv, PointwiseConv
from csnspec.kernels.torch_convs import PointwiseConv3d

# the shortcut strides the IR produces, odd ones, and stride 1; odd sizes so a stride drops a border
STRIDES = [(1, 1, 1), (2, 2, 2), (1, 2, 2), (2, 1, 1), (3, 2, 1)]


@pytest.mark.parametrize("stride", STRIDES)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_torch_module_matches_the_strided_conv3d(stride, bias, layout):
    """Contiguous input runs the conv; channels-last input the matrix product (F.linear)."""
    torch.manual_seed(0)
    conv = PointwiseConv3d(5, 7, stride=stride, bias=bias).double()
    x = torch.randn(2, 5, 5, 7, 9, dtype=torch.float64).contiguous(memory_format=layout)
    x.requires_grad_()
    ref_x = x.detach().clone().requires_grad_()
    ref_params = [p.detach().clone().requires_grad_() for p in conv.parameters()]
    y = conv(x)
    ref = F.conv3d(ref_x, ref_params[0], ref_params[1] if bias else None, stride)
    assert y.shape == ref.shape and y.is_contiguous(memory_format=layout)
    torch.testing.assert_close(y, ref)
    grad = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)
    got = torch.autograd.grad(y, (x, *conv.parameters()), grad)
    want = torch.autograd.grad(ref, (ref_x, *ref_params), grad)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    # x's gradient in x's layout: BN and ReLU backwards on mixed layouts run ~8x slower on the CPU
    assert got[0].is_contiguous(memory_format=layout)


def test_torch_module_is_a_conv3d_with_its_state_dict():
    conv = PointwiseConv3d(4, 6, stride=(1, 2, 2), bias=False)
    plain = nn.Conv3d(4, 6, 1, stride=(1, 2, 2), bias=False)
    assert isinstance(conv, nn.Conv3d) and conv.stride == plain.stride == (1, 2, 2)
    assert {k: v.shape for k, v in conv.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    conv.load_state_dict(plain.state_dict())
    x = torch.randn(1, 4, 3, 5, 5)
    torch.testing.assert_close(conv(x), plain(x))


def test_torchscript_and_channels_last_input():
    conv = PointwiseConv3d(4, 6, stride=2)
    x = torch.randn(2, 4, 3, 5, 5).contiguous(memory_format=torch.channels_last_3d)
    want = F.conv3d(x, conv.weight, conv.bias, 2)
    torch.testing.assert_close(torch.jit.script(conv)(x), want)
    torch.testing.assert_close(conv(x), want)


def test_flax_module_matches_the_strided_conv():
    strides, use_bias = (3, 2, 1), True  # one case: each is a few JAX compiles
    conv = PointwiseConv(5, 7, strides=strides, use_bias=use_bias, rngs=nnx.Rngs(0))
    plain = nnx.Conv(5, 7, (1, 1, 1), strides=strides, use_bias=use_bias, rngs=nnx.Rngs(0))
    x = np.random.default_rng(1).standard_normal((2, 5, 7, 9, 5)).astype(np.float32)
    (_, y), (g_model, g_x) = _values_and_grads(conv, x)
    (_, ref), (r_model, r_x) = _values_and_grads(plain, x)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_x, r_x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_model.kernel[...], r_model.kernel[...], rtol=1e-5, atol=1e-4)
    # the same parameters under the same paths, drawn alike from the same seed
    got, want = nnx.state(conv, nnx.Param), nnx.state(plain, nnx.Param)
    assert jax.tree.map(np.shape, got) == jax.tree.map(np.shape, want)
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, got, want)))


def _values_and_grads(model, x):
    def loss(model, x):
        y = model(x)
        return (y * jnp.linspace(-1, 1, y.size).reshape(y.shape)).sum(), y

    # one compile per case: eager JAX would compile every op on its own
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(model, x)


# (kernel, strides, padding, groups, bias): a stem's (few channels: its own kernel gradient), unevenly
# padded; a strided, grouped, unevenly padded 3x3x3 (two cases only: each is a few JAX compiles)
FRAME_CASES = [
    ((3, 5, 5), (1, 2, 2), ((1, 1), (2, 1), (1, 2)), 1, False),
    ((3, 3, 3), (2, 2, 2), ((1, 1), (0, 1), (1, 1)), 2, True),
]


@pytest.mark.parametrize(("kernel", "strides", "padding", "groups", "bias"), FRAME_CASES)
def test_frame_conv_matches_the_3d_conv(kernel, strides, padding, groups, bias):
    args = {"strides": strides, "padding": padding, "feature_group_count": groups, "use_bias": bias}
    # 64 outputs: a stem's width, where few input channels take the kernel gradient by rows
    conv = FrameConv(4, 64, kernel, **args, rngs=nnx.Rngs(0))
    plain = nnx.Conv(4, 64, kernel, **args, rngs=nnx.Rngs(0))
    if bias:  # a bias that is not zero, the same in both
        conv.bias[...] = plain.bias[...] = jnp.arange(64.0) / 64
    x = np.random.default_rng(3).standard_normal((2, 5, 7, 6, 4)).astype(np.float32)
    (_, y), (g_model, g_x) = _values_and_grads(conv, x)
    (_, ref), (r_model, r_x) = _values_and_grads(plain, x)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_x, r_x, rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(g_model), jax.tree.leaves(r_model)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert jax.tree.map(np.shape, nnx.state(conv, nnx.Param)) == jax.tree.map(
        np.shape, nnx.state(plain, nnx.Param)
    )


def test_frame_conv_runs_nnx_conv_for_what_it_does_not_handle():
    conv = FrameConv(3, 5, (3, 3, 3), padding="SAME", rngs=nnx.Rngs(0))
    plain = nnx.Conv(3, 5, (3, 3, 3), padding="SAME", rngs=nnx.Rngs(0))
    x = np.random.default_rng(4).standard_normal((1, 4, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(conv(x), plain(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["torch_convs", "jax_convs"])
def test_inline_text_is_standalone(name):
    text = inline_source(name)
    assert "csnspec" not in text and "import" not in text
    module = inline_module(name, module_name=f"inline_{name}")
    assert hasattr(module, "PointwiseConv3d" if name == "torch_convs" else "FrameConv")
