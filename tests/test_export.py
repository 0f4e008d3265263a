"""`csnspec export`: deployable files that load back and agree with eager PyTorch (issue 11 item 4)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import csnspec
from csnspec.cli import main
from csnspec.weights.convert import torch_shapes

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "data" / "tiny-ircsn.csn"
CLIP = "3x4x32x32"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights of the tiny spec, with BN statistics away from 0 and 1."""
    from safetensors.torch import save_file

    low = csnspec.lower(csnspec.load(TINY))
    gen = torch.Generator().manual_seed(1)
    tensors = {}
    for k, shape in torch_shapes(low).items():
        if k.endswith("num_batches_tracked"):
            tensors[k] = torch.zeros((), dtype=torch.long)
        elif k.endswith("running_var"):
            tensors[k] = torch.rand(shape, generator=gen) + 0.5
        else:
            tensors[k] = torch.randn(shape, generator=gen) * 0.3
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_file(tensors, path)
    return path, tensors


def _eager(tensors, x):
    """The generated model run eagerly with `tensors`, independent of csnspec.export."""
    from csnspec.backends import render

    low = csnspec.lower(csnspec.load(TINY))
    return_dir = Path(__file__).parent
    src = render(low, "torch")
    spec = importlib.util.spec_from_loader("tiny_eager", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(compile(src, str(return_dir / "tiny_eager.py"), "exec"), module.__dict__)  # noqa: S102
    model = module.build(low.spec.classes)
    model.load_state_dict(tensors)
    with torch.no_grad():
        return model.eval()(x)


def test_torchscript_round_trip(tmp_path, weights, capsys):
    path, tensors = weights
    out = tmp_path / "tiny.pt"
    argv = ["export", str(TINY), "--weights", str(path), "--format", "torchscript"]
    assert main([*argv, "-o", str(out), "--input", CLIP]) == 0
    printed = capsys.readouterr().out
    assert "max |difference| from eager PyTorch" in printed
    loaded = torch.jit.load(str(out))
    x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(loaded(x), _eager(tensors, x), rtol=1e-5, atol=1e-5)


def test_exported_program_round_trip(tmp_path, weights, capsys):
    path, tensors = weights
    out = tmp_path / "tiny.pt2"
    argv = ["export", str(TINY), "--weights", str(path), "--format", "exported-program"]
    assert main([*argv, "-o", str(out), "--input", CLIP]) == 0
    loaded = torch.export.load(str(out)).module()
    x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(6))
    torch.testing.assert_close(loaded(x), _eager(tensors, x), rtol=1e-5, atol=1e-5)


def test_onnx_round_trip(tmp_path, weights):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    path, tensors = weights
    out = tmp_path / "tiny.onnx"
    argv = ["export", str(TINY), "--weights", str(path), "--format", "onnx"]
    assert main([*argv, "-o", str(out), "--input", CLIP]) == 0
    x = torch.randn(1, 3, 4, 32, 32, generator=torch.Generator().manual_seed(7))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"clip": x.numpy()})[0])
    torch.testing.assert_close(got, _eager(tensors, x), rtol=1e-4, atol=1e-4)


def test_weights_for_another_spec_are_labelled_with_the_weights_file(tmp_path, weights, capsys):
    path, _ = weights
    other = tmp_path / "other.csn"
    other.write_text(TINY.read_text().replace("classes 6", "classes 7"))
    out = tmp_path / "x.pt"
    argv = ["export", str(other), "--weights", str(path), "--format", "torchscript"]
    assert main([*argv, "-o", str(out), "--input", CLIP]) == 2
    err = capsys.readouterr().err
    assert f"\n{path}: error: the weights do not fit the spec" in err  # after the size line
    assert "head.fc.weight" in err and not out.exists()


def test_export_refuses_to_write_over_its_inputs(tmp_path, weights, capsys):
    spec = tmp_path / "tiny.csn"
    shutil.copy(TINY, spec)
    before = spec.read_bytes()
    assert main(["export", str(spec), "--format", "torchscript", "-o", str(spec)]) == 2
    assert "is also an input" in capsys.readouterr().err
    assert spec.read_bytes() == before
