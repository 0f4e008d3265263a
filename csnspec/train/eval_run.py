"""`csnspec eval`: compile the spec, load weights, score test views of every video."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.dataset import open_index
from ..data.transforms import ClipOptions
from ..errors import CsnError
from .devices import device_name
from .evaluate import score_views
from .host_memory import reuse_freed_memory
from .run import check_clip


@dataclass
class EvalConfig:
    spec: str
    weights: str
    data: str
    backend: str = "torch"
    format: str | None = None  # one of csnspec.data.formats.FORMATS (detected when None)
    root: str | None = None
    classes: str | None = None  # classes.json; default: beside the weights, else the data's
    opts: ClipOptions = field(default_factory=ClipOptions)
    batch: int = 4  # videos per batch (each with opts.views views)
    workers: int = 2
    device: str = "auto"
    progress: bool = True
    allow_nonfinite: bool = False  # weights with NaN or inf (refused by default, named)


def find_classes(cfg: EvalConfig) -> list[str] | None:
    path = Path(cfg.classes) if cfg.classes else Path(cfg.weights).parent / "classes.json"
    if not path.is_file() and Path(cfg.weights).parent.name == "checkpoints":
        path = Path(cfg.weights).parent.parent / "classes.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    if cfg.classes:
        raise CsnError("no such class list", filename=str(cfg.classes))
    return None


def load_weights(path, allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
    """Arrays of a safetensors file keyed by op names; a training checkpoint's `model.` prefix
    is dropped, so both final weights and checkpoints load. Checked by weights.io (dtypes,
    NaN/inf), errors labelled with the file."""
    from ..weights.io import read_safetensors

    arrays, _, _ = read_safetensors(path, allow_nonfinite=allow_nonfinite, prefix="model.")
    return arrays


def evaluate(cfg: EvalConfig) -> dict:
    from ..backends import render
    from ..lowering import lower
    from ..parse import load

    if cfg.backend == "flax":
        reuse_freed_memory()  # before jax starts its threads
    device = device_name(cfg)  # a device that is not there stops before any work
    net = load(cfg.spec)
    check_clip(net, cfg.opts.frames, cfg.opts.crop, "eval", cfg.spec)
    if cfg.opts.test_scale < cfg.opts.crop:
        raise CsnError(f"--test-scale {cfg.opts.test_scale} is smaller than --crop {cfg.opts.crop}")
    index = open_index(cfg.data, cfg.root, find_classes(cfg), format=cfg.format)
    net = net.with_input(classes=len(index.classes))
    weights = load_weights(cfg.weights, allow_nonfinite=cfg.allow_nonfinite)
    seen = dict(index.skipped)
    with tempfile.TemporaryDirectory(prefix="csnspec-eval-") as tmp:
        path = Path(tmp) / f"model_{cfg.backend}.py"
        low = lower(net)
        path.write_text(render(low, cfg.backend), encoding="utf-8")
        module = _import(path)
        if cfg.backend == "torch":
            from .torch_eval import predictor
        else:
            from .flax_eval import predictor
        try:
            predict = predictor(module, low, len(index.classes), weights, cfg.device)
        except CsnError as err:  # the weights do not fit: about the weights file
            raise err.located(None, str(cfg.weights)) from None
        print(f"csnspec: evaluating on {device}", file=sys.stderr)
        bar = _bar(len(index), cfg.progress)
        result = score_views(
            index, cfg.opts, predict, batch=cfg.batch, workers=cfg.workers, seen=seen, bar=bar
        )
        bar.close()
    result.update(
        backend=cfg.backend,
        device=device,
        views=f"{cfg.opts.clips}x{cfg.opts.crops}",
        classes=len(index.classes),
        skipped=dict(sorted(seen.items())),
    )
    return result


def _import(path: Path):
    import importlib.util
    import sys

    name = f"csnspec_eval_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc="eval", unit="video", dynamic_ncols=True)
