"""Models from Python, timm-style: `create_model("ircsn50", num_classes=10)` and `list_models()`.

A model is the generated module of a spec, rendered and imported in memory
(`csnspec.backends.load_module`): no file is written, nothing is put on `sys.path`. Shipped
specs are the `.csn` files in the checkout's `specs/` folder, named by file stem
("ircsn152") or network name ("ir-csn-152"), case, '-' and '_' aside.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import CsnError, did_you_mean

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One shipped spec, with its complexity as `csnspec stats` counts it."""

    name: str  # the file stem: what create_model takes
    network: str
    path: Path
    input: tuple[int, ...]
    classes: int
    flops: int
    params: int


def _shipped() -> dict[str, Path]:
    """Every shipped spec by file stem."""
    return {p.stem: p for p in sorted(SPECS_DIR.glob("*.csn"))}


def list_models() -> list[str]:
    """The names of the shipped specs, sorted: what `create_model` takes."""
    return sorted(_shipped())


def model_info(name: str) -> ModelInfo:
    """A shipped spec's facts and complexity."""
    from . import load, stats

    path = _resolve_shipped(name)
    net = load(path)
    total = stats(net).total
    return ModelInfo(
        path.stem, net.name, path, tuple(net.input), net.classes, total.flops, total.params
    )


def _resolve_shipped(name: str) -> Path:
    shipped = _shipped()
    by_key = {_key(stem): p for stem, p in shipped.items()}
    if _key(name) in by_key:
        return by_key[_key(name)]
    # a network name ("ir-csn-50") that is not its file's stem ("ircsn50")
    from .parse import load

    for path in shipped.values():
        if _key(load(path).name) == _key(name):
            return path
    hint = did_you_mean(name, shipped)
    raise CsnError(
        f"no shipped model named {name!r}",
        hint=(hint + " " if hint else "") + "`csnspec list` shows them all",
        filename="create_model",
    )


def _network(spec):
    """A Network from a shipped name, a .csn path or a Network."""
    from .parse import load
    from .spec import Network

    if isinstance(spec, Network):
        return spec
    if isinstance(spec, Path) or (isinstance(spec, str) and spec.endswith(".csn")):
        return load(spec)
    if isinstance(spec, str):
        return load(_resolve_shipped(spec))
    raise TypeError(f"create_model takes a model name, a .csn path or a Network, not {spec!r}")


def pretrained_cfg(weights) -> dict | None:
    """The preprocessing a weights file expects (mean, std, frames, crop, ...): what `weights
    import` recorded in its safetensors header, or a csnspec training run's own record; None for
    a file without either. The one place `create_model` fills `model.pretrained_cfg` from."""
    from .train.run import pretrained_cfg as recorded

    return recorded(weights)


def create_model(
    name_or_path_or_spec,
    *,
    backend: str = "torch",
    num_classes: int | None = None,
    weights: str | Path | None = None,
    **build_options,
):
    """A ready model of a shipped spec ("ircsn152", "ip-csn-50"), a `.csn` file or a Network.

    num_classes: the classifier's size (default: the spec's `classes`). With `weights` (a
        safetensors file of the spec's state_dict, PyTorch's or Flax's) for another class
        count, everything but the classifier is loaded; what was skipped is printed.
    build_options: passed to the generated module's `build` (torch: zero_init_last_bn,
        channels_last, compile, device, depthwise; flax: seed, depthwise).
    """
    from .backends import BACKENDS, load_module
    from .lowering import lower

    if backend not in BACKENDS:
        raise CsnError(
            f"unknown backend {backend!r}",
            hint="choose one of " + ", ".join(BACKENDS),
            filename="create_model",
        )
    net = _network(name_or_path_or_spec)
    classes = net.classes if num_classes is None else int(num_classes)
    low = lower(net)
    module = load_module(low, backend)
    try:
        model = module.build(num_classes=classes, **build_options)
    except ValueError as err:  # a build option the module refuses (e.g. depthwise=...)
        raise CsnError(str(err), filename="create_model") from None
    if weights is not None:
        tensors = _read(weights)
        if backend == "torch":
            _load_torch(model, tensors, low, classes, weights)
        else:
            _load_flax(model, tensors, net, classes, weights)
        model.pretrained_cfg = pretrained_cfg(weights)
    return model


def _read(path) -> dict:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as err:
        raise CsnError(f"cannot read weights: {err}", filename=str(path)) from None


def _classifier(low) -> str:
    return low.head.ops[-1].name  # "head.fc"


def _skip_classifier(tensors: dict, fc: str, side_keys, classes: int, path) -> dict:
    """The tensors without the classifier's when it was trained for another class count."""
    weight = tensors.get(f"{fc}.{side_keys[0]}")
    if weight is None or weight.shape[side_keys[1]] == classes:
        return tensors
    skipped = {k: v for k, v in tensors.items() if k.startswith(fc + ".")}
    what = ", ".join(f"{k} {list(v.shape)}" for k, v in skipped.items())
    print(
        f"{path}: loaded all but the classifier ({what}: {weight.shape[side_keys[1]]} classes, "
        f"the model has {classes}); the classifier is freshly initialised",
        file=sys.stderr,
    )
    return {k: v for k, v in tensors.items() if k not in skipped}


def _load_torch(model, tensors: dict, low, classes: int, path) -> None:
    import torch

    from .weights.convert import flax_to_torch, framework_of

    if framework_of(tensors) == "flax":
        tensors = flax_to_torch(tensors, _with_classes(low, tensors, "flax"))
    fc = _classifier(low)
    kept = _skip_classifier(tensors, fc, ("weight", 0), classes, path)
    target = getattr(model, "_orig_mod", model)
    own = target.state_dict()
    bad = [k for k, v in kept.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    optional = {k for k in own if k.startswith(fc + ".") or k.endswith(".num_batches_tracked")}
    missing = sorted(set(own) - set(kept) - optional)
    unexpected = sorted(set(kept) - set(own))
    if bad or missing or unexpected:
        parts = [f"{k} {list(kept[k].shape)} (model: {list(own[k].shape)})" for k in bad[:3]]
        parts += [f"missing {k}" for k in missing[:3]] + [f"unexpected {k}" for k in unexpected[:3]]
        raise CsnError(
            f"the weights do not fit {low.name}: " + "; ".join(parts), filename=str(path)
        )
    target.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in kept.items()}, strict=False)


def _with_classes(low, tensors: dict, side: str):
    """`low` lowered again for the class count of the checkpoint's classifier."""
    from .lowering import lower

    fc = _classifier(low)
    weight = tensors.get(f"{fc}.weight" if side == "torch" else f"{fc}.kernel")
    if weight is None:
        return low
    n = weight.shape[0] if side == "torch" else weight.shape[1]
    return lower(low.spec.with_input(classes=int(n)))


def _load_flax(model, tensors: dict, net, classes: int, path) -> None:
    from flax import nnx

    from .lowering import lower
    from .weights.convert import flax_shapes, framework_of, to_nnx_state, torch_to_flax

    low = lower(net)
    if framework_of(tensors) == "torch":
        tensors = torch_to_flax(tensors, _with_classes(low, tensors, "torch"))
    kept = _skip_classifier(tensors, _classifier(low), ("kernel", 1), classes, path)
    own = flax_shapes(lower(net.with_input(classes=classes)))
    bad = [k for k, v in kept.items() if own.get(k) != tuple(v.shape)]
    missing = [k for k in own if k not in kept and not k.startswith(_classifier(low) + ".")]
    if bad or missing:
        parts = [f"{k} {list(kept[k].shape)} (model: {own.get(k)})" for k in bad[:3]]
        parts += [f"missing {k}" for k in missing[:3]]
        raise CsnError(
            f"the weights do not fit {net.name}: " + "; ".join(parts), filename=str(path)
        )
    nnx.update(model, to_nnx_state(kept))
