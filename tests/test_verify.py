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
