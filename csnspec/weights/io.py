"""Reading checkpoints without running pickled code, and writing safetensors atomically.

`.safetensors` is read with safetensors; `.pth/.pyth/.pt/.ckpt/.bin` with
`torch.load(weights_only=True)`, which rebuilds tensors and plain containers only; VMZ's Caffe2
`.pkl` files with an unpickler that can build numpy arrays of plain numbers and nothing else.
Training checkpoints are unwrapped to their state dict (`model_state`, `state_dict`, ...).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

from ..atomic import write_bytes
from ..errors import CsnError

TORCH_SUFFIXES = (".pth", ".pyth", ".pt", ".ckpt", ".bin")
# Where training checkpoints keep the weights: PyTorchVideo `model_state`, MMAction2
# `state_dict`, VMZ Caffe2 `blobs`, common `model` / `module`.
CONTAINERS = ("model_state", "state_dict", "model", "blobs", "module")


def read_checkpoint(path) -> dict:
    """The checkpoint's tensors by key (torch tensors on the CPU), unwrapped to the state dict."""
    path = Path(path)
    if not path.is_file():
        raise CsnError(f"no checkpoint file '{path}'", filename=str(path))
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        obj = _read_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        obj = _read_torch(path)
    elif suffix == ".pkl":
        obj = _read_caffe2_pickle(path)
    else:
        raise CsnError(
            f"unknown checkpoint format '{suffix or path.name}'",
            filename=str(path),
            hint="csnspec reads .safetensors, " + ", ".join(TORCH_SUFFIXES) + " and Caffe2 .pkl",
        )
    return state_dict_of(obj, str(path))


def state_dict_of(obj, filename: str = "<checkpoint>") -> dict:
    """Unwrap a training checkpoint to its flat {key: tensor} dict; refuse anything else."""
    import torch

    trail = []
    while isinstance(obj, dict):
        inner = next((k for k in CONTAINERS if isinstance(obj.get(k), dict)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        trail.append(inner)
        obj = obj[inner]
    if not isinstance(obj, dict):
        raise CsnError(
            f"the checkpoint holds a {type(obj).__name__}, not a dict of tensors",
            filename=filename,
            hint="save the model's state_dict(), not the model object",
        )
    keys = [k for k in obj if not isinstance(k, str)]
    if keys:
        shown = ", ".join(_short(k) for k in keys[:5]) + (
            f" and {len(keys) - 5} more" if len(keys) > 5 else ""
        )
        raise CsnError(
            f"the checkpoint's keys must be names; found {shown}",
            filename=filename,
            hint="a state dict maps parameter names (strings) to tensors",
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad or not obj:
        where = "".join(f"[{k!r}]" for k in trail) or "the top level"
        found = ", ".join(f"{k!r} ({type(obj[k]).__name__})" for k in bad[:5])
        if len(bad) > 5:
            found += f" and {len(bad) - 5} more"
        raise CsnError(
            f"{where} of the checkpoint is not a dict of tensors"
            + (f": {found}" if found else " (it is empty)"),
            filename=filename,
            hint="csnspec looks for the weights under " + ", ".join(CONTAINERS),
        )
    odd = [
        f"{k} ({'meta' if v.is_meta else 'quantized' if v.is_quantized else str(v.layout).split('.')[-1]})"
        for k, v in obj.items()
        if v.is_meta or v.is_quantized or v.layout != torch.strided
    ]
    if odd:
        raise CsnError(
            "csnspec reads dense tensors with values; these are not: " + _names(odd),
            filename=filename,
            hint="save the trained model's dense state_dict() (meta tensors hold no values)",
        )
    # nn.DataParallel / DistributedDataParallel wrap every key in `module.`
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def _short(key) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


def _names(items: list[str], most: int = 8) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


COUNTERS = ("num_batches_tracked",)  # integer tensors a model legitimately holds
WIDENED = ("float16", "bfloat16", "float64")  # read, and stored as float32


def checked_values(named: dict, filename: str, *, allow_nonfinite: bool = False):
    """`named` (key -> torch tensor) with half and double floats as float32, after refusing
    what a float32 model cannot use: non-float dtypes (int, bool, complex, fp8) except step
    counters, and NaN or inf values unless `allow_nonfinite`. Returns (tensors, notes)."""
    import torch

    wrong, nonfinite, widened, out = [], [], set(), {}
    for key, t in named.items():
        counter = key.rsplit(".", 1)[-1] in COUNTERS and not t.is_floating_point()
        if counter and not t.is_complex() and t.dtype != torch.bool:
            out[key] = t
            continue
        if t.is_complex() or not t.is_floating_point() or t.element_size() < 2:
            wrong.append(f"{key} ({str(t.dtype).removeprefix('torch.')})")
            continue
        if t.dtype != torch.float32:
            widened.add(str(t.dtype).removeprefix("torch."))
            t = t.to(torch.float32)
        if not bool(torch.isfinite(t).all()):
            nonfinite.append(key)
        out[key] = t
    if wrong:
        raise CsnError(
            "tensors that are not real floating point: " + _names(wrong),
            filename=filename,
            hint="csnspec models are float32; fp16, bf16 and float64 are converted, "
            "int, bool, complex and fp8 (which needs its scales) are not",
        )
    if nonfinite and not allow_nonfinite:
        raise CsnError(
            "tensors with NaN or inf values: " + _names(nonfinite),
            filename=filename,
            hint="the weights are broken (a diverged run?); pass --allow-nonfinite to use them anyway",
        )
    notes = []
    if widened:
        notes.append(f"{', '.join(sorted(widened))} tensors converted to float32")
    if nonfinite:
        notes.append("tensors with NaN or inf values (allowed): " + _names(nonfinite))
    return out, notes


def read_safetensors(path, *, allow_nonfinite: bool = False, prefix: str | None = None):
    """(arrays by key as float32 numpy, except step counters; the header's metadata; notes)
    of a .safetensors file, checked with `checked_values`. fp16/bf16 files read too.

    With `prefix` (e.g. "model." in a training checkpoint), a file holding keys under it gives
    those only, the prefix dropped; the rest (optimiser and RNG state) is not checked."""
    path = Path(path)
    if not path.is_file():
        raise CsnError("no such weights file", filename=str(path))
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, TypeError, MemoryError) as err:
        raise CsnError(f"not a readable safetensors file: {err}", filename=str(path)) from None
    if prefix and any(k.startswith(prefix) for k in tensors):
        tensors = {k[len(prefix) :]: t for k, t in tensors.items() if k.startswith(prefix)}
    tensors, notes = checked_values(tensors, str(path), allow_nonfinite=allow_nonfinite)
    return {k: t.numpy() for k, t in tensors.items()}, meta, notes


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, TypeError, MemoryError) as err:
        raise CsnError(f"not a readable safetensors file: {err}", filename=str(path)) from None


def _read_torch(path: Path):
    import torch

    from .pickles import PickleRefused, scan_torch_file

    try:
        scan_torch_file(path)  # torch's own unpickler has no bound on depth or work
    except PickleRefused as err:
        raise CsnError(f"not a readable PyTorch checkpoint: {err}", filename=str(path)) from None
    except (OSError, EOFError) as err:
        raise CsnError(f"not a readable PyTorch checkpoint: {err}", filename=str(path)) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:  # not a pickle torch can read at all
            detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
            reason = detail.group(1).strip() if detail else "unpickling failed"
            raise CsnError(
                f"not a readable PyTorch checkpoint ({reason})", filename=str(path)
            ) from None
        raise CsnError(
            f"the checkpoint needs `{found.group(1)}` to load, and csnspec never runs pickled code "
            "(it reads tensors and plain containers only)",
            filename=str(path),
            hint="if you trust the file, re-save only its weights, e.g. in Python: "
            "sd = torch.load(IN, weights_only=False)['state_dict']; "
            "safetensors.torch.save_file(sd, 'weights.safetensors')",
        ) from None
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, TypeError, MemoryError) as err:
        reason = f"{type(err).__name__} {err}" if isinstance(err, KeyError) else str(err)
        raise CsnError(f"not a readable PyTorch checkpoint: {reason}", filename=str(path)) from None


# -- Caffe2 pickles -------------------------------------------------------------------------


def _read_caffe2_pickle(path: Path) -> dict:
    import numpy as np
    import torch

    from .pickles import NumpyOnly, PickleRefused, scan

    hint = (
        "csnspec reads Caffe2 .pkl files holding numpy arrays only (VMZ's `blobs`); "
        "convert other pickles to .safetensors in an environment you trust"
    )
    try:
        with path.open("rb") as f:
            scan(f)
            f.seek(0)
            # VMZ's pickles come from Python 2: latin1 keeps numpy's byte strings intact
            obj = NumpyOnly(f, encoding="latin1", max_items=path.stat().st_size).load()
    except PickleRefused as err:
        raise CsnError(f"cannot read this .pkl safely: {err}", filename=str(path), hint=hint)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise CsnError(
            f"cannot read this .pkl safely: {err}", filename=str(path), hint=hint
        ) from None
    except (MemoryError, RecursionError, KeyError, IndexError, OverflowError) as err:
        raise CsnError(
            f"cannot read this .pkl: {type(err).__name__} {err}".rstrip(),
            filename=str(path),
            hint=hint,
        ) from None
    blobs = obj.get("blobs", obj) if isinstance(obj, dict) else obj
    if not isinstance(blobs, dict):
        raise CsnError("the .pkl holds no dict of blobs", filename=str(path))
    out = {}
    for key, value in blobs.items():
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biufc" or value.dtype.fields is not None:
                raise CsnError(
                    f"blob {key!r} is an array of {value.dtype}, not of plain numbers",
                    filename=str(path),
                    hint=hint,
                )
            value = torch.from_numpy(np.ascontiguousarray(value))
        out[key if isinstance(key, str) else repr(key)] = value
    return out


def save_safetensors(
    path, tensors: dict, metadata: dict[str, str] | None = None, *, inputs=()
) -> None:
    """Write tensors to `path` atomically (a reader sees the old file or the whole new one);
    `inputs` are files it must not replace."""
    from safetensors.torch import save

    # safetensors refuses views of a shared storage; own copies are small next to a model
    data = save({k: v.detach().contiguous().clone() for k, v in tensors.items()}, metadata)
    write_bytes(path, data, inputs=inputs)
