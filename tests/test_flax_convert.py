"""Weight conversion between the generated PyTorch and Flax models, checked against the IR."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ROOT
from hypothesis import given, settings
from strategies import networks

import csnspec
from csnspec.commands.convert import main as convert_main
from csnspec.errors import CsnError
from csnspec.weights.convert import (
    NBT_KEY,
    flax_shapes,
    flax_to_torch,
    torch_shapes,
    torch_to_flax,
)

TINY = ROOT / "specs" / "mixed-tiny.csn"


def _random(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {
        k: (
            np.asarray(7, np.int64)
            if k.endswith("num_batches_tracked")
            else rng.standard_normal(s).astype(np.float32)
        )
        for k, s in shapes.items()
    }


@settings(max_examples=25)
@given(net=networks(small=True))
def test_round_trip_is_exact_and_layouts_are_right(net):
    low = csnspec.lower(net)
    sd = _random(torch_shapes(low))
    flat = torch_to_flax(sd, low)
    assert {k: v.shape for k, v in flat.items()} == flax_shapes(low)
    back = flax_to_torch(flat, low, num_batches_tracked=7)
    assert back.keys() == sd.keys()
    for k in sd:
        np.testing.assert_array_equal(back[k], sd[k])
    for op in low.ops():  # spot the layouts: OIDHW -> DHWIO, (out, in) -> (in, out)
        if op.kind == "conv3d":
            kernel, weight = flat[f"{op.name}.kernel"], sd[f"{op.name}.weight"]
            # kernel[d, h, w, i, o] == weight[o, i, d, h, w]
            assert kernel[-1, -1, 0, -1, 0] == weight[0, -1, -1, -1, 0]
            assert kernel[0, 0, -1, 0, -1] == weight[-1, 0, 0, 0, -1]
        elif op.kind == "linear":
            np.testing.assert_array_equal(flat[f"{op.name}.kernel"], sd[f"{op.name}.weight"].T)
        elif op.kind == "batchnorm":
            np.testing.assert_array_equal(flat[f"{op.name}.scale"], sd[f"{op.name}.weight"])
            np.testing.assert_array_equal(flat[f"{op.name}.var"], sd[f"{op.name}.running_var"])


def test_grouped_conv_kernel_shape():
    low = csnspec.lower(csnspec.load(TINY))
    conv = next(op for op in low.ops() if op.name == "layer2.0.conv_a")  # bottleneck-DG, g=2
    assert conv.groups == 2
    assert torch_shapes(low)[f"{conv.name}.weight"] == (
        conv.out_channels,
        conv.in_channels // 2,
        1,
        1,
        1,
    )
    assert flax_shapes(low)[f"{conv.name}.kernel"] == (
        1,
        1,
        1,
        conv.in_channels // 2,
        conv.out_channels,
    )


def test_errors_list_every_offending_name():
    low = csnspec.lower(csnspec.load(TINY))
    sd = _random(torch_shapes(low))
    del sd["layer1.0.bn_a.running_var"]
    sd["layer1.0.conv_z.weight"] = np.zeros(3, np.float32)
    sd["head.fc.weight"] = sd["head.fc.weight"].T
    with pytest.raises(CsnError) as err:
        torch_to_flax(sd, low)
    text = str(err.value)
    assert "missing: layer1.0.bn_a.running_var" in text
    assert "unexpected: layer1.0.conv_z.weight" in text
    assert "head.fc.weight (256, 10) (expected (10, 256))" in text
    flat = torch_to_flax(_random(torch_shapes(low)), low)
    flat.pop("stem.conv1.kernel")
    with pytest.raises(CsnError, match="missing: stem.conv1.kernel"):
        flax_to_torch(flat, low)


def test_cli_converts_both_ways_and_torch_loads_the_result(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from safetensors import safe_open
    from safetensors.torch import save_file

    from csnspec.backends import load_module

    low = csnspec.lower(csnspec.load(TINY))
    model = load_module(low, "torch").build()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.num_batches_tracked.fill_(5)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, tmp_path / "torch.safetensors")

    args = ["convert", "--spec", str(TINY)]
    assert (
        convert_main(
            [*args, str(tmp_path / "torch.safetensors"), str(tmp_path / "flax.safetensors")]
        )
        == 0
    )
    with safe_open(tmp_path / "flax.safetensors", framework="numpy") as f:
        assert set(f.keys()) == set(flax_shapes(low))
        assert NBT_KEY in f.metadata()
    assert (
        convert_main(
            [*args, str(tmp_path / "flax.safetensors"), str(tmp_path / "back.safetensors")]
        )
        == 0
    )
    assert "generated torch model" in capsys.readouterr().out

    fresh = load_module(low, "torch").build(weights=str(tmp_path / "back.safetensors"))
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k]), k  # num_batches_tracked too, through the metadata


def test_cli_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    args = ["convert", "--spec", str(TINY)]
    assert (
        convert_main([*args, str(tmp_path / "junk.safetensors"), str(tmp_path / "out.safetensors")])
        == 2
    )
    assert "not a readable safetensors file" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()


def test_flax_model_takes_converted_weights_without_initialising(tmp_path):
    pytest.importorskip("flax")
    from csnspec.backends import load_module
    from csnspec.weights.convert import flax_model, from_nnx

    low = csnspec.lower(csnspec.load(TINY))
    module = load_module(low, "flax")
    flat = torch_to_flax(_random(torch_shapes(low)), low)
    model = flax_model(module.build, flat)
    got = from_nnx(model)
    assert got.keys() == flat.keys()
    for k in flat:
        np.testing.assert_array_equal(got[k], flat[k])
