"""The depthwise conv3d implementations for PyTorch against `F.conv3d(groups=C)`: values and gradients."""

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from csnspec.kernels import inline_module, inline_source
from csnspec.kernels import torch_depthwise as tdw

# (kernel, stride, padding) of every depthwise conv the IR produces, plus odd strides
CASES = [
    ((3, 3, 3), (1, 1, 1), (1, 1, 1)),
    ((3, 3, 3), (2, 2, 2), (1, 1, 1)),
    ((3, 3, 3), (1, 2, 2), (1, 1, 1)),
    ((3, 3, 3), (2, 1, 1), (1, 1, 1)),
    ((1, 3, 3), (1, 1, 1), (0, 1, 1)),
    ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
    ((3, 1, 1), (1, 1, 1), (1, 0, 0)),
    ((3, 1, 1), (2, 1, 1), (1, 0, 0)),
    ((3, 3, 3), (1, 1, 1), (0, 0, 0)),
]


def reference(x, weight, stride, padding):
    """Output and both gradients of PyTorch's own grouped convolution, in float64."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    y = F.conv3d(x64, w64, None, stride, padding, 1, weight.shape[0])
    grad = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)
    gx, gw = torch.autograd.grad(y, (x64, w64), grad)
    return y, gx, gw, grad


def check(
    impl,
    shape,
    kernel,
    stride,
    padding,
    fn=tdw.depthwise_conv3d,
    seed=0,
    layout=torch.contiguous_format,
):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).contiguous(memory_format=layout).requires_grad_()
    weight = torch.randn((shape[1], 1, *kernel), generator=gen).requires_grad_()
    want_y, want_gx, want_gw, grad = reference(x, weight, stride, padding)
    y = fn(x, weight, stride, padding, impl)
    gx, gw = torch.autograd.grad(y, (x, weight), grad.float())
    torch.testing.assert_close(y.double(), want_y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx.double(), want_gx, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(gw.double(), want_gw, rtol=1e-5, atol=1e-3)
    return y


def backward_of(kernel, stride, layout) -> bool:
    """The backward the "cpu" implementation gives a call (it leaves what it loses on to native):
    kt x 1 x 1 kernels at stride 1 its own, other strided convs only on channels-last input."""
    if kernel[1:] == (1, 1):
        return "_TemporalDepthwiseBackward" if stride == (1, 1, 1) else "ConvolutionBackward0"
    if stride == (1, 1, 1) or layout == torch.channels_last_3d:
        return "_CpuDepthwiseBackward"
    return "ConvolutionBackward0"


LAYOUTS = [torch.contiguous_format, torch.channels_last_3d]


@pytest.mark.parametrize("kernel,stride,padding", CASES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7, 9), (1, 4, 4, 6, 6)])
@pytest.mark.parametrize("layout", LAYOUTS, ids=["contiguous", "channels_last"])
def test_cpu_impl_matches_conv3d(shape, kernel, stride, padding, layout):
    y = check("cpu", shape, kernel, stride, padding, layout=layout)
    assert type(y.grad_fn).__name__ == backward_of(kernel, stride, layout)


@pytest.mark.parametrize("impl", ["auto", "native"])
def test_auto_and_native_match_conv3d(impl):
    check(impl, (2, 3, 5, 7, 9), (3, 3, 3), (1, 2, 2), (1, 1, 1))


def test_auto_on_cpu_runs_the_cpu_implementation():
    x, w = torch.randn(1, 2, 3, 4, 4), torch.randn(2, 1, 3, 3, 3, requires_grad=True)
    assert type(tdw.depthwise_conv3d(x, w, 1, 1).grad_fn).__name__ == "_CpuDepthwiseBackward"


@pytest.mark.parametrize(
    "x,weight,padding",
    [
        (
            torch.randn(1, 2, 3, 5, 5, dtype=torch.float64),
            torch.randn(2, 1, 3, 3, 3, dtype=torch.float64),
            1,
        ),
        (torch.randn(1, 2, 3, 5, 5).bfloat16(), torch.randn(2, 1, 3, 3, 3).bfloat16(), 1),
        (torch.randn(1, 2, 3, 5, 5), torch.randn(2, 1, 3, 3, 3), 3),  # padding past the kernel
        (torch.randn(0, 2, 3, 5, 5), torch.randn(2, 1, 3, 3, 3), 1),  # empty batch
    ],
    ids=["float64", "bfloat16", "wide-padding", "empty"],
)
def test_unsupported_calls_run_the_native_kernel(x, weight, padding):
    x.requires_grad_()
    got = tdw.depthwise_conv3d(x, weight, 1, padding, "cpu")
    assert torch.equal(got, F.conv3d(x, weight, None, 1, padding, 1, 2))
    assert type(got.grad_fn).__name__ == "ConvolutionBackward0"


def test_unknown_impl_names_the_choices():
    x, w = torch.randn(1, 2, 3, 4, 4), torch.randn(2, 1, 3, 3, 3)
    with pytest.raises(ValueError, match="auto, native, cpu, triton"):
        tdw.depthwise_conv3d(x, w, 1, 1, "fast")
    with pytest.raises(ValueError, match="auto, native, cpu, triton"):
        tdw.DepthwiseConv3d(2, 3, impl="fast")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_forcing_triton_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, w = torch.randn(1, 2, 3, 4, 4), torch.randn(2, 1, 3, 3, 3)
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        tdw.depthwise_conv3d(x, w, 1, 1, "triton")
    # the same in a module carrying the Triton kernels, as generated modules do
    module = inline_module("torch_depthwise", "triton_depthwise", module_name="kernels_no_cuda")
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        module.depthwise_conv3d(x, w, 1, 1, "triton")
    assert module.depthwise_conv3d(x, w, 1, 1).shape == (1, 2, 3, 4, 4)  # auto still works


def test_module_has_conv3d_parameters_and_loads_its_checkpoints():
    conv = nn.Conv3d(6, 6, (3, 3, 3), (1, 2, 2), (1, 1, 1), groups=6, bias=False)
    fast = tdw.DepthwiseConv3d(6, (3, 3, 3), (1, 2, 2), (1, 1, 1))
    assert {k: v.shape for k, v in fast.state_dict().items()} == {
        k: v.shape for k, v in conv.state_dict().items()
    }
    fast.load_state_dict(conv.state_dict())
    x = torch.randn(2, 6, 4, 9, 9)
    torch.testing.assert_close(fast(x), conv(x), rtol=1e-5, atol=1e-5)
    fast.impl = "native"
    assert torch.equal(fast(x), conv(x))


@pytest.mark.parametrize("kernel,padding", [((3, 3, 3), 1), ((3, 1, 1), (1, 0, 0))])
def test_module_modes_and_channels_last_input(kernel, padding):
    fast = tdw.DepthwiseConv3d(4, kernel, 1, padding)
    x = torch.randn(1, 4, 3, 6, 6).contiguous(memory_format=torch.channels_last_3d)
    want = F.conv3d(x, fast.weight, None, 1, padding, 1, 4)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-5)


class Holder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv_b = tdw.DepthwiseConv3d(4, (3, 3, 3), (1, 2, 2), (1, 1, 1))

    def forward(self, x):
        return torch.relu(self.conv_b(x))


def test_torchscript_of_a_module_holding_it():
    model = Holder()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 4, 3, 8, 8)
    torch.testing.assert_close(scripted(x), model(x), rtol=1e-5, atol=1e-5)


def test_trace_of_a_module_holding_it_records_the_native_call():
    model = Holder()
    x = torch.randn(1, 4, 3, 8, 8)
    traced = torch.jit.trace(model, (x,))
    assert "PythonOp" not in str(traced.graph)  # what an autograd.Function would be recorded as
    torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)


def test_torch_export_of_a_module_holding_it():
    model = Holder()
    x = torch.randn(1, 4, 3, 8, 8)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-5, atol=1e-5)


@given(
    n=st.integers(1, 2),
    c=st.integers(1, 4),
    t=st.integers(1, 5),
    hw=st.integers(1, 7),
    kernel=st.sampled_from([(3, 3, 3), (1, 3, 3), (3, 1, 1)]),
    stride=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)),
    layout=st.sampled_from(LAYOUTS),
)
def test_property_cpu_impl_matches_conv3d(n, c, t, hw, kernel, stride, layout):
    padding = tuple(k // 2 for k in kernel)
    shape = (n, c, t, hw, hw + 1)
    y = check("cpu", shape, kernel, stride, padding, layout=layout)
    if torch.empty(shape).contiguous(memory_format=layout).is_contiguous():
        layout = torch.contiguous_format  # one channel or one voxel: both layouts at once
    assert type(y.grad_fn).__name__ == backward_of(kernel, stride, layout)


def test_inline_text_is_standalone():
    text = inline_source("torch_depthwise")
    assert "csnspec" not in text.replace("# csnspec:", "")
    assert not text.lstrip().startswith(('"""', "import", "from"))
    module = inline_module("torch_depthwise", module_name="kernels_torch_only")
    assert module.DEPTHWISE_IMPLS == ("auto", "native", "cpu", "triton")
    assert os.environ.get("TRITON_INTERPRET") == "1" or not hasattr(module, "_TRITON")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("stride", [1, 2])
def test_results_keep_the_input_memory_format(layout, stride):
    x = torch.randn(2, 3, 4, 5, 6).contiguous(memory_format=layout).requires_grad_()
    w = torch.randn(3, 1, 3, 3, 3)
    y = tdw.depthwise_conv3d(x, w, stride, 1, "cpu")
    (gx,) = torch.autograd.grad(y, x, torch.ones_like(y))
    assert y.is_contiguous(memory_format=layout) and gx.is_contiguous(memory_format=layout)


def test_preferred_layout_is_channels_last_on_the_cpu():
    x = torch.randn(1, 3, 2, 4, 4)
    assert tdw.preferred_layout(x).is_contiguous(memory_format=torch.channels_last_3d)
    assert not tdw.preferred_layout(x).is_contiguous()
    assert tdw.preferred_layout(torch.randn(2, 3)).is_contiguous()  # not a clip: left alone
