"""Reading checkpoints without running pickled code, and writing safetensors atomically.

`.safetensors` is read with safetensors; `.pth/.pyth/.pt/.ckpt/.bin` with
`torch.load(weights_only=True)`, which rebuilds tensors and plain containers only; VMZ's Caffe2
`.pkl` files with an unpickler that can build numpy arrays of plain numbers and nothing else.
Training checkpoints are unwrapped to their state dict (`model_state`, `state_dict`, ...).
"""

from __future__ import annotations

import codecs
import pickle
import re
from collections import OrderedDict
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
    # nn.DataParallel / DistributedDataParallel wrap every key in `module.`
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module.") :]: v for k, v in obj.items()}
    return dict(obj)


def _read_safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CsnError(f"not a readable safetensors file: {err}", filename=str(path)) from None


def _read_torch(path: Path):
    import torch

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
    except (RuntimeError, EOFError, OSError) as err:
        raise CsnError(f"not a readable PyTorch checkpoint: {err}", filename=str(path)) from None


# -- Caffe2 pickles -------------------------------------------------------------------------


class _NumpyOnly(pickle.Unpickler):
    """Builds dicts, lists, numbers, strings and numpy arrays of plain numbers; nothing else.

    Every global a pickle names goes through `find_class`; only the constructors below exist,
    each checked so that no object dtype (which could hold arbitrary objects) gets through.
    """

    def find_class(self, module: str, name: str):
        allowed = _allowed_globals()
        fn = allowed.get((module, name))
        if fn is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return fn


def _allowed_globals() -> dict:
    import numpy as np

    try:  # numpy >= 2 keeps these in numpy._core; pickles name numpy.core
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar

    def plain(dtype):
        if not isinstance(dtype, np.dtype) or dtype.hasobject:
            raise pickle.UnpicklingError("refusing a numpy array of Python objects")
        return dtype

    def make_dtype(obj, align=False, copy=False):
        return plain(np.dtype(obj, align, copy))

    def reconstruct(cls, shape, dtype):
        if cls is not np.ndarray:
            raise pickle.UnpicklingError("refusing a numpy array subclass")
        return _reconstruct(np.ndarray, shape, dtype)

    def make_scalar(dtype, data=None):
        return scalar(plain(dtype), data) if data is not None else scalar(plain(dtype))

    def encode(text, encoding="latin1"):  # how Python 3 pickles bytes at protocol 2
        if not isinstance(text, str) or encoding != "latin1":
            raise pickle.UnpicklingError("refusing _codecs.encode")
        return codecs.encode(text, encoding)

    out = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): make_dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = reconstruct
        out[(mod, "scalar")] = make_scalar
    out[("_codecs", "encode")] = encode
    out[("collections", "OrderedDict")] = OrderedDict
    return out


def _read_caffe2_pickle(path: Path) -> dict:
    import numpy as np
    import torch

    try:
        with path.open("rb") as f:
            # VMZ's pickles come from Python 2: latin1 keeps numpy's byte strings intact
            obj = _NumpyOnly(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise CsnError(
            f"cannot read this .pkl safely: {err}",
            filename=str(path),
            hint="csnspec reads Caffe2 .pkl files holding numpy arrays only (VMZ's `blobs`); "
            "convert other pickles to .safetensors in an environment you trust",
        ) from None
    blobs = obj.get("blobs", obj) if isinstance(obj, dict) else obj
    if not isinstance(blobs, dict):
        raise CsnError("the .pkl holds no dict of blobs", filename=str(path))
    out = {}
    for key, value in blobs.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(np.ascontiguousarray(value))
        out[str(key)] = value
    return out


def save_safetensors(path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Write tensors to `path` atomically (a reader sees the old file or the whole new one)."""
    from safetensors.torch import save

    # safetensors refuses views of a shared storage; own copies are small next to a model
    data = save({k: v.detach().contiguous().clone() for k, v in tensors.items()}, metadata)
    write_bytes(path, data)
