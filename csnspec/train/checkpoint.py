"""Checkpoints as one safetensors file, written atomically: tensors under prefixes
(`model.`, `optim.`, `rng.`) and the non-tensor state as JSON in the header's metadata.

One file means a checkpoint is either the old one or the new one, never a mix of two steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from ..atomic import write_bytes
from ..errors import CsnError

FORMAT = "csnspec-checkpoint/1"
LAST = "checkpoints/last.safetensors"
BEST = "checkpoints/best.safetensors"


def save(path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write numpy arrays and a JSON-able `meta` atomically."""
    from safetensors.numpy import save as st_save

    arrays = {k: np.require(v, requirements="C") for k, v in arrays.items()}
    write_bytes(path, st_save(arrays, metadata={"format": FORMAT, "meta": json.dumps(meta)}))


def load(path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and meta of a checkpoint written by `save`."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CsnError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), "np") as f:
            header = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CsnError(f"{path}: not a readable safetensors file ({err})") from None
    if header.get("format") != FORMAT:
        raise CsnError(f"{path}: not a csnspec training checkpoint")
    return arrays, json.loads(header["meta"])


def read_meta(path) -> dict | None:
    """The meta of a checkpoint without reading its tensors; None when there is none."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "np") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CsnError(f"{path}: not a readable safetensors file ({err})") from None
    if header.get("format") != FORMAT:
        raise CsnError(f"{path}: not a csnspec training checkpoint")
    return json.loads(header["meta"])


def host_rng_state() -> dict:
    """Python's and numpy's global RNG state as JSON (the data pipeline uses neither, but
    user code in a generated model or a hook might)."""
    version, state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(state), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def set_host_rng_state(state: dict) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, np.uint32), pos, has_gauss, cached))
