"""The Triton depthwise conv3d kernels against `F.conv3d(groups=C)`, run by Triton's CPU interpreter.

TRITON_INTERPRET must be set before triton is imported, so the kernels run in one child process that
reports, per case, the largest error of the output and of both gradients against a float64 reference.
"""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

CASES = {
    # name: (shape, kernel, stride, padding, dtype, channels_last)
    "3x3x3-s1": ((2, 3, 5, 7, 9), (3, 3, 3), (1, 1, 1), (1, 1, 1), "float32", False),
    "3x3x3-s2": ((1, 2, 5, 7, 6), (3, 3, 3), (2, 2, 2), (1, 1, 1), "float32", False),
    "3x3x3-s122": ((1, 2, 4, 9, 7), (3, 3, 3), (1, 2, 2), (1, 1, 1), "float32", False),
    "3x3x3-s211": ((1, 3, 5, 5, 5), (3, 3, 3), (2, 1, 1), (1, 1, 1), "float32", False),
    "1x3x3-s122": ((1, 2, 4, 7, 6), (1, 3, 3), (1, 2, 2), (0, 1, 1), "float32", False),
    "3x1x1-s211": ((1, 2, 5, 4, 3), (3, 1, 1), (2, 1, 1), (1, 0, 0), "float32", False),
    "3x3x3-unpadded": ((1, 2, 5, 6, 6), (3, 3, 3), (1, 1, 1), (0, 0, 0), "float32", False),
    "channels-last": ((2, 3, 3, 5, 6), (3, 3, 3), (1, 1, 1), (1, 1, 1), "float32", True),
    "bfloat16": ((1, 2, 3, 5, 5), (3, 3, 3), (1, 2, 2), (1, 1, 1), "bfloat16", False),
    "float16": ((1, 2, 3, 5, 5), (3, 3, 3), (1, 1, 1), (1, 1, 1), "float16", False),
    "float64-falls-back": ((1, 2, 3, 5, 5), (3, 3, 3), (1, 1, 1), (1, 1, 1), "float64", False),
}
# largest error allowed, relative to the reference's largest magnitude: fp32 sums; bf16/fp16 roundings
TOLERANCE = {"float32": 1e-5, "float64": 1e-12, "float16": 2e-3, "bfloat16": 2e-2}

CHILD = r"""
import json, sys
import torch
import torch.nn.functional as F
from csnspec.kernels import inline_module

kernels = inline_module("torch_depthwise", "triton_depthwise", module_name="kernels_interpreted")
results = {}
for name, (shape, kernel, stride, padding, dtype, channels_last) in json.loads(sys.argv[1]).items():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=gen).to(getattr(torch, dtype))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    w = torch.randn((shape[1], 1, *kernel), generator=gen).to(x.dtype)
    x.requires_grad_(), w.requires_grad_()
    y = kernels.depthwise_conv3d(x, w, stride, padding, "triton")
    grad = torch.randn(y.shape, generator=gen).to(x.dtype)
    gx, gw = torch.autograd.grad(y, (x, w), grad)
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    ref = F.conv3d(x64, w64, None, stride, padding, 1, shape[1])
    rx, rw = torch.autograd.grad(ref, (x64, w64), grad.double())
    err = lambda got, want: ((got.double() - want).abs().max() / want.abs().max()).item()
    results[name] = {
        "errors": [err(y, ref), err(gx, rx), err(gw, rw)],
        "dtypes": [str(t.dtype).removeprefix("torch.") for t in (y, gx, gw)],
        "grad_fn": type(y.grad_fn).__name__,
    }
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def interpreted():
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(CASES)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", [name for name in CASES if name != "float64-falls-back"])
def test_triton_kernels_match_conv3d(interpreted, name):
    dtype = CASES[name][4]
    got = interpreted[name]
    assert got["grad_fn"] == "_TritonDepthwiseBackward"
    assert got["dtypes"] == [dtype] * 3
    for what, error in zip(("output", "input gradient", "kernel gradient"), got["errors"]):
        assert error <= TOLERANCE[dtype], f"{name}: {what} off by {error:.2e} (relative)"


def test_unsupported_dtype_runs_the_native_kernel(interpreted):
    got = interpreted["float64-falls-back"]
    assert got["grad_fn"] == "ConvolutionBackward0"
    assert max(got["errors"]) <= TOLERANCE["float64"]
