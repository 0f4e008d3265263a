"""The publishers' ways of counting FLOPs and parameters (`csnspec stats --convention NAME`).

Each published figure is exact under its own convention: which ops count and how, whether
BatchNorm's parameters are parameters, and the clip the network is counted at (publishers count
at their test crop, which their configs derive from the training crop a spec states). A
convention is a small table of per-op-kind rules applied to the lowered IR; it never
recomputes a shape. An op kind without a rule costs what `csnspec.analysis.op_cost` says (the
multiply-adds of its convolutions and fully-connected layers), so new op kinds slot in.
Sources and the figures each convention reproduces: docs/complexity.md.
"""

from __future__ import annotations

from math import prod
from typing import NamedTuple

from .analysis import Cost, Report, analyse, op_cost
from .errors import CsnError
from .ops import AvgPool, GlobalAvgPool, LoweredNetwork


class Convention(NamedTuple):
    name: str
    # FLOPs per output element of each BatchNorm: 0 (not counted), 2 (fvcore/mmengine in
    # eval mode: scale and shift), 5 (fvcore in train mode: its norm estimate)
    bn_flops: int
    # the fc counted at every position the global average reads, as PyTorchVideo's heads
    # apply their projection before the output pool
    fc_per_position: bool
    # only the backbone counted (MMAction2's get_flops.py counts `extract_feat`)
    backbone_only: bool
    # the published parameter count includes BatchNorm's affine parameters
    params_with_bn: bool
    # the spatial side counted, by the side the spec trains at (the publisher's test crop)
    test_crop: dict[int, int]
    summary: str


CONVENTIONS = {
    c.name: c
    for c in (
        Convention(
            "csnspec", 0, False, False, False, {}, "multiply-adds of convs and fc (the paper's)"
        ),
        Convention(
            "torchvision",
            0,
            False,
            False,
            True,
            {},
            "weights meta `_ops`: conv and fc multiply-adds; `num_params` with BN",
        ),
        Convention(
            "fvcore-train",
            5,
            True,
            False,
            True,
            {},
            "fvcore FlopCountAnalysis, train mode: conv, fc, 5 per BatchNorm element",
        ),
        Convention(
            "fvcore-eval",
            2,
            True,
            False,
            True,
            {},
            "fvcore FlopCountAnalysis, eval mode: conv, fc, 2 per BatchNorm element",
        ),
        Convention(
            "pytorchvideo",
            5,
            True,
            False,
            True,
            {160: 182, 224: 256, 312: 356},
            "model zoo: fvcore in train mode at the test crop",
        ),
        Convention(
            "mmaction2",
            2,
            False,
            True,
            True,
            {224: 256},
            "README tables: mmengine's analyzer in eval mode on the backbone, test crop 256",
        ),
        Convention(
            "vmz",
            0,
            False,
            False,
            False,
            {112: 128, 224: 256},
            "model zoo: conv and fc multiply-adds at the short side clips are resized to",
        ),
    )
}


def convention_named(name: str) -> Convention:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise CsnError(
            f"unknown FLOPs convention '{name}'",
            hint="conventions: " + ", ".join(CONVENTIONS),
        ) from None


def counted_input(shape: tuple[int, ...], convention: Convention) -> tuple[int, ...]:
    """The clip a publisher counts a network at, given the clip its spec states."""
    c, t, h, w = shape
    if h == w and h in convention.test_crop:
        side = convention.test_crop[h]
        return (c, t, side, side)
    return shape


def _fc_positions(low: LoweredNetwork) -> int:
    """Positions PyTorchVideo's head projects at: those left by a fixed-window average pool."""
    head = low.head.ops
    if not any(isinstance(op, AvgPool) for op in head):
        return 1
    pool = next(op for op in head if isinstance(op, GlobalAvgPool))
    return prod(pool.in_shape[1:])


def _rules(low: LoweredNetwork, conv: Convention):
    """Per-op-kind FLOPs rules: kind -> (op, csnspec's cost) -> FLOPs."""
    positions = _fc_positions(low) if conv.fc_per_position else 1
    return {
        "batchnorm": lambda op, cost: conv.bn_flops * prod(op.out_shape),
        "linear": lambda op, cost: cost.flops * positions,
    }


def cost_function(low: LoweredNetwork, conv: Convention):
    """`op -> Cost` with the convention's FLOPs and params (other metrics: csnspec's own)."""
    rules = _rules(low, conv)
    head = {op.name for op in low.head.ops} if conv.backbone_only else set()

    def cost(op) -> Cost:
        own = op_cost(op)
        rule = rules.get(op.kind)
        flops = 0 if op.name in head else (rule(op, own) if rule else own.flops)
        params = own.params + (own.bn_params if conv.params_with_bn else 0)
        return own._replace(flops=flops, params=params)

    return cost


def analyse_as(low: LoweredNetwork, conv: Convention) -> Report:
    """The complexity report of a lowered network, counted the publisher's way."""
    if conv.name == "csnspec":
        return analyse(low)
    return analyse(low, cost_function(low, conv), conv)


def stats_as(net, name: str) -> Report:
    """`csnspec.stats(net)` under a publisher's convention, at the clip that publisher counts."""
    from .lowering import lower

    conv = convention_named(name)
    shape = counted_input(net.input, conv)
    if shape != net.input:
        net = net.with_input(shape, None)
    return analyse_as(lower(net), conv)
