"""How much memory a model and its activations take, said before the model is built.

The counts are the lowered IR's (`csnspec.analysis`: parameters, BatchNorm affines and the
elements of every op's output per clip); what a command keeps of them is its `Usage`: how many
float32 copies of the parameters (weights, gradients, optimiser state, converted copies) and of
the activations per clip (kept for backward, float64 references). `check_fits` prints one line
with the sizes and refuses, with a CsnError naming the spec, a model that cannot fit in the
memory available: the device's free memory for CUDA, else the machine's available memory; the
environment variable CSNSPEC_MEMORY_LIMIT (bytes, or with K, M, G, T) replaces that when set.
"""

from __future__ import annotations

import os
import re
import sys
from typing import NamedTuple

from .errors import CsnError

LIMIT_ENV = "CSNSPEC_MEMORY_LIMIT"
FLOAT32 = 4


class Usage(NamedTuple):
    """Float32 copies a command keeps of the parameters, and of the activations per clip."""

    param_copies: float
    activation_copies: float


# verify: the model, its state copy, float32 and float64 runs (float64 counts twice), their
# gradients, the converted Flax weights, the Flax model and its gradients; activations: the
# float32 and float64 torch runs (float64 counts twice) and the Flax run, kept for backward.
VERIFY = Usage(param_copies=12, activation_copies=4)
# train: weights, gradients and two optimiser slots (momentum SGD needs one, Adam two);
# activations kept for backward, and their gradients.
TRAIN = Usage(param_copies=4, activation_copies=2)
# inference (eval, extract, export): the weights, and the activations once.
INFER = Usage(param_copies=1, activation_copies=1)


class Footprint(NamedTuple):
    params: int  # learned values: conv and fc weights and biases, BN affines
    buffers: int  # BN running statistics
    activations: int  # elements of every op's output, per clip

    def bytes(self, usage: Usage, batch: int) -> int:
        model = (self.params * usage.param_copies + self.buffers) * FLOAT32
        return int(model + self.activations * batch * usage.activation_copies * FLOAT32)


def footprint(low) -> Footprint:
    """The parameter, buffer and activation counts of a lowered network."""
    from .analysis import analyse

    total = analyse(low).total
    return Footprint(total.params + total.bn_params, total.bn_params, total.activations)


def available_bytes(device: str = "cpu") -> int | None:
    """Memory a new model can use: free device memory for CUDA, else the machine's available
    memory; CSNSPEC_MEMORY_LIMIT instead, if set. None when nothing says."""
    found = None
    if device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                found = int(torch.cuda.mem_get_info()[0])
        except (ImportError, RuntimeError):
            found = None
    if found is None:
        found = _host_available()
    limit = os.environ.get(LIMIT_ENV)
    if limit:
        return parse_bytes(limit)  # the user knows better (swap, another device): replaces it
    return found


def check_fits(
    low,
    *,
    usage: Usage,
    batch: int,
    what: str,
    filename: str | None = None,
    device: str = "cpu",
    available: int | None = None,
    stream=None,
) -> int:
    """Say how big the model and its activations are (one line on `stream`, stderr by
    default) and return the bytes `what` needs; refuse when that is past what is available."""
    fp = footprint(low)
    need = fp.bytes(usage, batch)
    have = available if available is not None else available_bytes(device)
    line = (
        f"{low.name}: {fp.params / 1e6:.2f} M parameters ({human(fp.params * FLOAT32)}), "
        f"activations {human(fp.activations * FLOAT32)} per clip; "
        f"{what} needs about {human(need)} at batch {batch}"
        + (f" of {human(have)} available" if have is not None else "")
    )
    if have is not None and need > have:
        raise CsnError(
            f"the model cannot fit: {line}",
            filename=filename,
            hint=f"use fewer classes or a smaller input or batch; if the estimate is wrong for "
            f"this machine, set {LIMIT_ENV} (e.g. {LIMIT_ENV}=64G)",
        )
    print(line, file=stream or sys.stderr)
    return need


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_bytes(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text, re.IGNORECASE)
    if not m:
        raise CsnError(f"{LIMIT_ENV}={text!r}: expected a size such as 8G or 500M")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
