"""The state-dict schema of a lowered network: every tensor a generated model holds, by name.

One place derives tensor names and shapes from the lowered IR (`csnspec.ops`); analysis counts
parameters with the same `weight_shape`s, weights import (`weights/layouts.py`) and torch <->
flax conversion (`weights/convert.py`) read the schema, and `check_fit` is the one test of
whether a set of tensors fits it.

Names are the PyTorch model's: `<op>.weight|bias|running_mean|running_var|num_batches_tracked`,
with conv weights (O, I/G, T, H, W) and linear weights (out, in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from .errors import CsnError
from .ops import BatchNorm, Conv3d, Linear, LoweredNetwork, leaf_ops

# BatchNorm's tensors, in the order torch's state_dict lists them; the last two are statistics
BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


class Tensor(NamedTuple):
    """One tensor of a generated model."""

    name: str  # "<op name>.<field>"
    op: str  # the IR op that holds it
    field: str  # weight, bias, running_mean, running_var, num_batches_tracked
    shape: tuple[int, ...]
    role: str  # "conv" or "fc" (a weight), "vector" (bias, BN), "count" (num_batches_tracked)

    @property
    def is_statistic(self) -> bool:
        return self.field in STATISTICS


def weight_shape(op) -> tuple[int, ...]:
    """The weight tensor's shape of a conv or linear op, in PyTorch's layout."""
    if isinstance(op, Conv3d):
        return (op.out_channels, op.in_channels // op.groups, *op.kernel)
    if isinstance(op, Linear):
        return (op.out_features, op.in_features)
    raise TypeError(f"{type(op).__name__} has no weight")


def op_tensors(op) -> tuple[Tensor, ...]:
    """The tensors one op holds (none for ops without parameters)."""
    if isinstance(op, (Conv3d, Linear)):
        role = "conv" if isinstance(op, Conv3d) else "fc"
        out = [Tensor(f"{op.name}.weight", op.name, "weight", weight_shape(op), role)]
        if op.bias:
            channels = weight_shape(op)[0]
            out.append(Tensor(f"{op.name}.bias", op.name, "bias", (channels,), "vector"))
        return tuple(out)
    if isinstance(op, BatchNorm):
        return tuple(
            Tensor(
                f"{op.name}.{field}",
                op.name,
                field,
                () if field == "num_batches_tracked" else (op.channels,),
                "count" if field == "num_batches_tracked" else "vector",
            )
            for field in BN_TENSORS
        )
    return ()


def state_dict_schema(low: LoweredNetwork) -> tuple[Tensor, ...]:
    """Every tensor of the generated PyTorch model's state_dict, in forward order."""
    return tuple(t for op in leaf_ops(low.ops()) for t in op_tensors(op))


def check_fit(tensors: Mapping, expected: Mapping[str, tuple], what: str, shape_of=None) -> None:
    """Raise one CsnError listing every name missing, unexpected or of the wrong shape.

    `tensors` maps names to arrays (or anything `shape_of` gives a shape for); `what` starts
    the message, e.g. "PyTorch weights do not fit ip-csn-152".
    """
    if shape_of is None:
        import numpy as np

        shape_of = np.shape
    problems = []
    missing = [n for n in expected if n not in tensors]
    unexpected = [n for n in tensors if n not in expected]
    if missing:
        problems.append(f"missing: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected: {', '.join(unexpected)}")
    wrong = [
        f"{n} {tuple(shape_of(tensors[n]))} (expected {tuple(expected[n])})"
        for n in expected
        if n in tensors and tuple(shape_of(tensors[n])) != tuple(expected[n])
    ]
    if wrong:
        problems.append(f"wrong shape: {', '.join(wrong)}")
    if problems:
        raise CsnError(f"{what}: " + "; ".join(problems))
