"""`csnspec verify`: the per-block comparison of the generated PyTorch and Flax models."""

from __future__ import annotations

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


def test_verify_fails_on_a_perturbed_weight_and_names_the_block(monkeypatch, capsys):
    from csnspec.weights import convert

    real = convert.torch_to_flax

    def perturbed(state_dict, low, stats=True):
        out = real(state_dict, low, stats)
        if stats:  # the weights handed to Flax, not the gradients compared later
            out["layer2.0.conv_b.kernel"] = out["layer2.0.conv_b.kernel"] * np.float32(1.01)
        return out

    monkeypatch.setattr(convert, "torch_to_flax", perturbed)
    assert main(["verify", SPEC, "--input", "3x4x32x32"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "first: eval layer2.0" in out
    assert re.search(r"\neval +layer1\.1 ", out.split("FAIL")[0])  # the blocks before it pass


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
