"""Models from Python: create_model, list_models, `csnspec list`, and the timm-style model API
(forward_features, reset_classifier, num_features), TorchScript and torch.export."""

from __future__ import annotations

import pytest
from conftest import ROOT, SPECS

import csnspec
from csnspec.cli import main

torch = pytest.importorskip("torch")

TINY = ROOT / "tests" / "data" / "tiny-ircsn.csn"
CLIP = (3, 4, 32, 32)


def _save_torch(model, path):
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def test_list_models_names_every_shipped_spec():
    assert csnspec.list_models() == sorted(p.stem for p in SPECS)


def test_list_command_shows_names_and_complexity(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    row = next(line for line in out if line.startswith("ircsn50 "))
    total = csnspec.stats(csnspec.load(ROOT / "specs" / "ircsn50.csn")).total
    assert "ir-csn-50" in row and f"{total.flops / 1e9:.2f}" in row.split()


@pytest.mark.parametrize("name", ["ircsn50", "ir-csn-50", "IR_CSN_50"])
def test_create_model_by_name_with_another_class_count(name):
    with torch.device("meta"):
        model = csnspec.create_model(name, num_classes=7)
    assert model.head.fc.out_features == 7 and model.num_features == 2048
    assert model.pretrained_cfg is None


def test_unknown_name_suggests_the_closest(capsys):
    with pytest.raises(csnspec.CsnError, match="ircsn50") as err:
        csnspec.create_model("ircsn5O")
    assert "did you mean" in str(err.value) and str(err.value).startswith("create_model:")


def test_weights_for_another_class_count_load_all_but_the_classifier(tmp_path, capsys):
    torch.manual_seed(0)
    source = csnspec.create_model(TINY)
    _save_torch(source, tmp_path / "w.safetensors")
    model = csnspec.create_model(TINY, num_classes=3, weights=tmp_path / "w.safetensors")
    assert "head.fc.weight" in capsys.readouterr().err
    theirs, ours = source.state_dict(), model.state_dict()
    for key, value in ours.items():
        if key.startswith("head.fc."):
            assert value.shape[0] == 3
        else:
            assert torch.equal(value, theirs[key]), key


def test_weights_of_another_network_are_a_clear_error(tmp_path):
    _save_torch(csnspec.create_model(TINY), tmp_path / "w.safetensors")
    with pytest.raises(csnspec.CsnError, match="do not fit") as err:
        csnspec.create_model(ROOT / "specs" / "mixed-tiny.csn", weights=tmp_path / "w.safetensors")
    assert str(tmp_path / "w.safetensors") in str(err.value)


def test_flax_model_takes_torch_weights_for_another_class_count(tmp_path):
    pytest.importorskip("flax")
    import numpy as np

    from csnspec.weights.convert import from_nnx, torch_to_flax

    torch.manual_seed(0)
    source = csnspec.create_model(TINY)
    _save_torch(source, tmp_path / "w.safetensors")
    model = csnspec.create_model(
        TINY, backend="flax", num_classes=3, weights=tmp_path / "w.safetensors"
    )
    low = csnspec.lower(csnspec.load(TINY))
    want = torch_to_flax({k: v.numpy() for k, v in source.state_dict().items()}, low)
    got = from_nnx(model)
    for key, value in got.items():
        if key.startswith("head.fc."):
            assert value.shape[-1] == 3
        else:
            np.testing.assert_array_equal(value, want[key])


def test_features_and_a_new_classifier():
    torch.manual_seed(0)
    model = csnspec.create_model(TINY).eval()
    x = torch.randn(2, *csnspec.load(TINY).input)
    with torch.no_grad():
        fmap = model.forward_feature_map(x)
        feats = model.forward_features(x)
        logits = model(x)
    assert fmap.dim() == 5 and fmap.shape[1] == model.num_features
    assert torch.allclose(feats, fmap.mean(dim=(2, 3, 4)), atol=1e-6)
    assert torch.allclose(logits, model.head.fc(feats), atol=1e-6)
    model.reset_classifier(4)
    assert model(x).shape == (2, 4)


def test_build_refuses_an_unknown_depthwise_implementation():
    with pytest.raises(csnspec.CsnError, match="auto, native"):
        csnspec.create_model(TINY, depthwise="nonsense")
    module = csnspec.backends.load_module(csnspec.lower(csnspec.load(TINY)), "torch")
    with pytest.raises(ValueError, match="nonsense"):
        module.build(depthwise="nonsense")
    model = module.build(depthwise="native")
    impls = {m.impl for m in model.modules() if isinstance(m, module.DepthwiseConv3d)}
    assert impls == {"native"}


def _small(path):
    """A shipped spec on CLIP with at most 2 blocks a stage (the first, strided block and the
    next: with alternations of period 2, every block class is still built), its head window
    (if any, sized for the full clip) cut to the smaller final map."""
    net = csnspec.load(path)
    stages = tuple(st.model_copy(update={"blocks": min(st.blocks, 2)}) for st in net.stages)
    net = net.model_copy(update={"stages": stages})
    if net.head.window is None:
        return net.with_input(CLIP)
    head = net.head.model_copy(update={"window": None})
    final = csnspec.lower(net.model_copy(update={"head": head}).with_input(CLIP)).stages[-1]
    window = tuple(min(w, m) for w, m in zip(net.head.window, final.out_shape[1:]))
    return net.model_copy(
        update={"head": net.head.model_copy(update={"window": window})}
    ).with_input(CLIP)


def _one_per_structure(paths) -> list:
    """The shallowest spec of each distinct generated code: specs whose block classes, stem
    and head print alike differ only in stage lengths and widths, so these cover every spec."""
    from csnspec.backends import emit

    chosen: dict = {}
    for path in paths:
        low = csnspec.lower(_small(path))
        m = emit.model(low)
        key = (
            tuple((c.residual, c.shortcut) for c in m.blocks),
            tuple(op.kind for op in low.stem.ops + low.head.ops),
        )
        depth = sum(1 for _ in low.blocks())
        if key not in chosen or depth < chosen[key][0]:
            chosen[key] = (depth, path)
    return sorted(p for _, p in chosen.values())


# Baselines whose generated code has no construct the one named after them lacks (a stem
# pool, a head window, a BN eps and which kernels: literals of the same code), left out to keep
# CI in its time budget: each script + export costs seconds.
COVERED_BY = {
    "r3d-18": "simple-8",
    "c2d-r50": "i3d-r50",  # per-stage kernels, a stage pool
    "slow-r50": "i3d-r50",
    "r2plus1d-34": "r2plus1d-18",  # mid_a/mid_b of simple blocks, the two-conv stem
}
STRUCTURES = _one_per_structure([p for p in SPECS if p.stem not in COVERED_BY])


@pytest.mark.parametrize("path", STRUCTURES, ids=[p.stem for p in STRUCTURES])
def test_every_spec_scripts_and_exports(path):
    """torch.jit.script and torch.export of every shipped spec's code, on a small clip."""
    torch.manual_seed(0)
    model = csnspec.create_model(_small(path), num_classes=3).eval()
    x = torch.randn(1, *CLIP)
    with torch.no_grad():
        want = model(x)
        scripted = torch.jit.script(model)
        assert torch.allclose(scripted(x), want, atol=1e-5)
        exported = torch.export.export(model, (x,))
        assert torch.allclose(exported.module()(x), want, atol=1e-5)


def test_a_missing_weights_file_is_one_message_about_that_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(csnspec.CsnError) as err:
        csnspec.create_model(TINY, weights=missing)
    assert str(err.value).startswith(f"{missing}: error:") and "No such file" in str(err.value)
