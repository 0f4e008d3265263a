"""Deployable files of a spec's generated PyTorch model, checked against eager PyTorch.

`export_model` builds the generated model in memory (nothing put on sys.path), loads the
weights through weights.io (dtypes and NaN checked, errors naming the file), turns it into a
TorchScript, torch.export or ONNX file in memory, loads that back, runs it and eager PyTorch on
one random clip, and writes the file atomically only when the outputs agree within `tol`.
Shapes are static: the file takes batches of `batch` clips of the spec's (or --input's) size.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

from .errors import CsnError

FORMATS = ("torchscript", "exported-program", "onnx")
TOLERANCE = 1e-4


@dataclass
class Exported:
    format: str
    data: bytes
    max_diff: float | None  # None: not checked (onnxruntime missing)
    input_shape: tuple[int, ...]
    notes: list[str] = field(default_factory=list)


def build_torch_model(low, weights=None, *, allow_nonfinite: bool = False):
    """The generated PyTorch model of `low` in eval mode, with `weights` (a .safetensors file
    keyed by op names, or a training checkpoint) loaded if given. The module is imported in
    memory (`csnspec.backends.load_module`), its source where TorchScript can read it."""
    from .backends import load_module
    from .train.torch_eval import load_into
    from .weights.io import read_safetensors

    module = load_module(low, "torch")
    model = module.build(low.spec.classes)
    if weights is not None:
        arrays, _, _ = read_safetensors(weights, allow_nonfinite=allow_nonfinite, prefix="model.")
        try:
            load_into(model, arrays)
        except CsnError as err:
            raise err.located(None, str(weights)) from None
    return model.eval()


def export_model(model, fmt: str, input_shape, *, batch: int = 1, seed: int = 0) -> Exported:
    """`model` as a file of format `fmt`, and its largest difference from eager PyTorch."""
    import torch

    if fmt not in FORMATS:
        raise CsnError(
            f"unknown export format '{fmt}'", hint="--format takes " + " | ".join(FORMATS)
        )
    x = torch.randn((batch, *input_shape), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        want = model(x)
    notes: list[str] = []
    data, run = _EXPORTERS[fmt](model, x, notes)
    got = run(data, x)
    diff = None if got is None else float((torch.as_tensor(got) - want).abs().max())
    return Exported(fmt, data, diff, tuple(x.shape), notes)


def _torchscript(model, x, notes):
    import torch

    try:
        scripted = torch.jit.script(model)
    except Exception as err:  # noqa: BLE001 (TorchScript raises many types; say why and trace)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        notes.append(
            f"torch.jit.script failed ({reason}); traced instead (same graph, fixed shapes)"
        )
        with torch.no_grad():
            scripted = torch.jit.trace(model, x)
    buf = io.BytesIO()
    torch.jit.save(scripted, buf)

    def run(data, x):
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
        with torch.no_grad():
            return loaded(x)

    return buf.getvalue(), run


def _exported_program(model, x, notes):
    import torch

    try:
        program = torch.export.export(model, (x,))
    except Exception as err:  # noqa: BLE001 (torch.export raises many types)
        raise CsnError(f"torch.export failed: {str(err).strip().splitlines()[0]}") from None
    buf = io.BytesIO()
    torch.export.save(program, buf)

    def run(data, x):
        loaded = torch.export.load(io.BytesIO(data))
        with torch.no_grad():
            return loaded.module()(x)

    return buf.getvalue(), run


def _onnx(model, x, notes):
    import torch

    buf = io.BytesIO()
    try:
        torch.onnx.export(
            model, (x,), buf, dynamo=False, input_names=["clip"], output_names=["logits"]
        )
    except Exception as err:  # noqa: BLE001 (the exporter raises many types)
        raise CsnError(
            f"ONNX export failed: {str(err).strip().splitlines()[0]}",
            hint="ONNX export needs the onnx package: pip install onnx",
        ) from None

    def run(data, x):
        try:
            import onnxruntime
        except ImportError:
            notes.append("not checked numerically: onnxruntime is not installed")
            return None
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        return session.run(None, {"clip": x.numpy()})[0]

    return buf.getvalue(), run


_EXPORTERS = {"torchscript": _torchscript, "exported-program": _exported_program, "onnx": _onnx}
