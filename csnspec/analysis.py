"""Exact complexity of a lowered network, per op, block, stage and whole network.

Conventions (docs/complexity.md): FLOPs are multiply-adds of conv and fc layers; params are
conv and fc weights and biases, with BatchNorm's affine parameters counted apart; channel
interactions follow the paper's equation (3), C_out * C(C_in / G, 2) per conv layer, fc excluded;
activations are the elements of every op's output, per clip.
"""

from __future__ import annotations

from math import prod
from typing import NamedTuple

from .ops import BatchNorm, Conv3d, Linear, LoweredNetwork, SqueezeExcite
from .schema import weight_shape

METRICS = ("flops", "params", "bn_params", "interactions", "activations")


class Cost(NamedTuple):
    flops: int = 0
    params: int = 0
    bn_params: int = 0
    interactions: int = 0
    activations: int = 0

    def __add__(self, other: Cost) -> Cost:  # elementwise, not tuple concatenation
        return Cost(*(a + b for a, b in zip(self, other)))

    def as_dict(self) -> dict[str, int]:
        return self._asdict()

    @property
    def activation_bytes(self) -> int:
        """Memory of all activations at float32."""
        return 4 * self.activations


def op_cost(op) -> Cost:
    """The cost of one op of the lowered IR."""
    activations = prod(op.out_shape)
    if isinstance(op, Conv3d):
        # every weight is one multiply-add at every output position
        weights = prod(weight_shape(op))
        per_group = op.in_channels // op.groups
        return Cost(
            flops=weights * prod(op.out_shape[1:]),
            params=weights + (op.out_channels if op.bias else 0),
            interactions=op.out_channels * (per_group * (per_group - 1) // 2),
            activations=activations,
        )
    if isinstance(op, Linear):
        weights = prod(weight_shape(op))
        return Cost(
            flops=weights,
            params=weights + (op.out_features if op.bias else 0),
            activations=activations,
        )
    if isinstance(op, BatchNorm):
        return Cost(bn_params=2 * op.channels, activations=activations)
    if isinstance(op, SqueezeExcite):
        # its 1x1x1 convs count as convs (on the pooled map); activations: theirs, the
        # gate's and the scaled output (the mean and the product cost no multiply-adds)
        return summed(op_cost(o) for o in op.ops) + Cost(activations=activations)
    return Cost(activations=activations)


def summed(costs) -> Cost:
    """The sum of costs, field by field."""
    return Cost(*map(sum, zip(*costs)))


class Row(NamedTuple):
    """One line of a report: a named part of the network and what it costs."""

    name: str
    kind: str
    out_shape: tuple
    cost: Cost


class Report:
    """Costs by block (stem and head count as one part each), by stage, and in total.

    Per-op rows are built when first asked for (`report.ops`, `rows("op")`).
    """

    def __init__(
        self, low: LoweredNetwork, blocks, stages, total: Cost, cost=op_cost, convention=None
    ):
        self.network = low.name
        self.input_shape = low.input_shape
        self.blocks: tuple[Row, ...] = blocks
        self.stages: tuple[Row, ...] = stages
        self.total = total
        self._low = low
        self._ops = None
        self._cost = cost
        self.convention = convention  # a csnspec.conventions.Convention, or None (csnspec's own)

    @property
    def ops(self) -> tuple[Row, ...]:
        if self._ops is None:
            self._ops = tuple(
                Row(op.name, op.kind, op.out_shape, self._cost(op)) for op in self._low.ops()
            )
        return self._ops

    def rows(self, by: str) -> tuple[Row, ...]:
        return {"op": self.ops, "block": self.blocks, "stage": self.stages}[by]


def analyse(low: LoweredNetwork, cost=op_cost, convention=None) -> Report:
    """Count every op and sum by block and by stage.

    `cost` counts one op (csnspec's own `op_cost` unless a publisher's convention is asked
    for: see csnspec.conventions, which passes its own and names itself in `convention`).
    """

    def _ops_cost(ops) -> Cost:
        return summed(cost(op) for op in ops)

    stem = Row("stem", "stem", low.stem.out_shape, _ops_cost(low.stem.ops))
    blocks: list[Row] = [stem]
    stages: list[Row] = [stem]
    for stage in low.stages:
        rows = []
        costs: dict[str, Cost] = {}
        for block in stage.blocks:
            # a block that repeats another (see ops.Block.repeats) costs the same
            spent = costs.get(block.repeats) or _ops_cost(block.ops)
            costs[block.name] = spent
            rows.append(Row(block.name, block.family.value, block.out_shape, spent))
        blocks += rows
        # the stage's pool (pool=) counts in the stage
        pool = _ops_cost((stage.pool,)) if stage.pool is not None else None
        stage_cost = summed([r.cost for r in rows] + ([pool] if pool else []))
        stages.append(Row(stage.name, stage.family.value, stage.out_shape, stage_cost))
    head = Row("head", "head", low.head.out_shape, _ops_cost(low.head.ops))
    blocks.append(head)
    stages.append(head)
    total = summed(r.cost for r in stages)
    return Report(low, tuple(blocks), tuple(stages), total, cost, convention)
