"""`csnspec verify`: the per-block comparison of the generated PyTorch and Flax models."""

from __future__ import annotations

import functools
import re

import numpy as np
import pytest
from conftest import ROOT

from csnspec.cli import main

pytest.importorskip("torch")
pytest.importorskip("flax")

SPEC = str(ROOT / "specs" / "ircsn26.csn")


def test_verify_passes_on_a_shipped_spec(capsys):
    assert main(["verify", SPEC, "--input", "3x4x32x32", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    for check in ("eval", "train", "stats", "grad"):
        assert f"\n{check}  " in out
    assert (
        "layer4.0" in out
        and "logits" in out
        and "PyTorch and Flax agree" in out
        and "FAIL" not in out
    )
    # every fast depthwise path that runs here, against its framework's native call
    for row in ("impl       torch cpu vs native", "impl-grad  flax shift vs native"):
        assert f"\n{row}  " in out


# Two blocks in layer1 (they pass), a strided layer2 (its first block carries the fault).
SMALL = """network small-ircsn
input 3x4x32x32
classes 5
stem conv 3x7x7 out=8 stride=1x2x2, maxpool 1x3x3 stride=1x2x2
stage ir-csn x 2 width=8 expansion=1
stage ir-csn x 1 width=16 expansion=1 stride=2x2x2
head avgpool, fc
"""


def test_verify_fails_on_a_perturbed_weight_and_names_the_block(tmp_path, monkeypatch, capsys):
    from csnspec import verify
    from csnspec.weights import convert

    real = convert.torch_to_flax

    def perturbed(state_dict, low, stats=True):
        out = real(state_dict, low, stats)
        if stats:  # the weights handed to Flax, not the gradients compared later
            out["layer2.0.conv_b.kernel"] = out["layer2.0.conv_b.kernel"] * np.float32(1.01)
        return out

    monkeypatch.setattr(convert, "torch_to_flax", perturbed)
    # (the fast-path rows compare each framework with itself: the test above has them)
    monkeypatch.setattr(verify, "compare", functools.partial(verify.compare, impls=False))
    spec = tmp_path / "small.csn"
    spec.write_text(SMALL)
    assert main(["verify", str(spec)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "first: eval layer2.0" in out
    assert re.search(r"\neval +layer1\.1 ", out.split("FAIL")[0])  # the blocks before it pass
    assert "\nimpl" not in out  # impls=False: no fast-path rows


# Issue 13's vocabulary in one small network: an X3D stem (a conv without BN, a channel-wise
# conv), X3D blocks (SE in the first, swish), I3D's alternating kernels and a stage pool,
# R(2+1)D's matched widths in both orders, X3D's head convs.
BASELINES = """network baselines-tiny
input 3x4x32x32
classes 5
stem conv 1x3x3 out=8 stride=1x2x2 norm=off, conv 5x1x1 out=8 groups=8
stage x3d x 2 width=8 stride=1x2x2
stage bottleneck x 2 width=8 kernel-a=3x1x1/1x1x1 kernel-b=1x3x3 stride=1x2x2 pool=2x1x1
stage simple factorize=2+1d mid=matched x 1 width=16 stride=1x2x2
stage bottleneck factorize=1+2d mid=matched x 1 width=8 expansion=2
head conv 1x1x1 out=24, avgpool, conv 1x1x1 out=32 norm=off, dropout 0.5, fc
"""


def test_verify_passes_on_the_baselines_vocabulary(monkeypatch, tmp_path, capsys):
    from csnspec import verify

    # (the fast-path rows compare each framework with itself: the first test has them)
    monkeypatch.setattr(verify, "compare", functools.partial(verify.compare, impls=False))
    spec = tmp_path / "baselines.csn"
    spec.write_text(BASELINES)
    assert main(["verify", str(spec), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "PyTorch and Flax agree" in out and "FAIL" not in out
    for check, part in (("eval", "layer1.0"), ("grad", "layer2.1"), ("stats", "head")):
        assert re.search(rf"\n{check} +{re.escape(part)} .* ok ", out), (check, part)


@pytest.mark.parametrize(
    "args, message",
    [
        ([SPEC, "--input", "3x4x32"], "expected CxTxHxW"),
        ([SPEC, "--input", "3x4x0x32"], "positive sizes"),
        ([SPEC, "--batch", "1"], "at least 2"),
        ([str(ROOT / "specs" / "missing.csn")], "missing.csn"),
    ],
)
def test_verify_bad_input_exits_2_without_traceback(args, message, capsys):
    assert main(["verify", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
