"""Exact complexity of a lowered network, per op, block, stage and whole network.

Conventions (docs/complexity.md): FLOPs are multiply-adds of conv and fc layers; params are
conv and fc weights and biases, with BatchNorm's affine parameters counted apart; channel
interactions follow the paper's equation (3), C_out * C(C_in / G, 2) per conv layer, fc excluded;
activations are the elements of every op's output, per clip.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .ops import BatchNorm, Conv3d, Linear, LoweredNetwork

METRICS = ("flops", "params", "bn_params", "interactions", "activations")


@dataclass(slots=True)
class Cost:
    flops: int = 0
    params: int = 0
    bn_params: int = 0
    interactions: int = 0
    activations: int = 0

    def __iadd__(self, other: Cost) -> Cost:
        self.flops += other.flops
        self.params += other.params
        self.bn_params += other.bn_params
        self.interactions += other.interactions
        self.activations += other.activations
        return self

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def activation_bytes(self) -> int:
        """Memory of all activations at float32."""
        return 4 * self.activations


def _volume(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def op_cost(op) -> Cost:
    """The cost of one op of the lowered IR."""
    acts = _volume(op.out_shape)
    if isinstance(op, Conv3d):
        k = op.kernel[0] * op.kernel[1] * op.kernel[2]
        per_voxel = op.out_channels * (op.in_channels // op.groups) * k
        n = op.in_channels // op.groups
        return Cost(
            flops=per_voxel * _volume(op.out_shape[1:]),
            params=per_voxel + (op.out_channels if op.bias else 0),
            interactions=op.out_channels * (n * (n - 1) // 2),
            activations=acts,
        )
    if isinstance(op, Linear):
        return Cost(
            flops=op.in_features * op.out_features,
            params=op.in_features * op.out_features + (op.out_features if op.bias else 0),
            activations=acts,
        )
    if isinstance(op, BatchNorm):
        return Cost(bn_params=2 * op.channels, activations=acts)
    return Cost(activations=acts)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a report: a named part of the network and what it costs."""

    name: str
    kind: str
    out_shape: tuple
    cost: Cost


@dataclass(frozen=True, slots=True)
class Report:
    network: str
    input_shape: tuple
    ops: tuple[Row, ...]
    blocks: tuple[Row, ...]
    stages: tuple[Row, ...]
    total: Cost

    def rows(self, by: str) -> tuple[Row, ...]:
        return {"op": self.ops, "block": self.blocks, "stage": self.stages}[by]


def analyse(low: LoweredNetwork) -> Report:
    """Count every op and sum by block (stem and head count as one part each) and stage."""
    ops, blocks, stages = [], [], []
    total = Cost()

    def part(name, kind, op_list, out_shape):
        cost = Cost()
        for op in op_list:
            c = op_cost(op)
            ops.append(Row(op.name, op.kind, op.out_shape, c))
            cost += c
        return Row(name, kind, out_shape, cost)

    stem = part("stem", "stem", low.stem.ops, low.stem.out_shape)
    blocks.append(stem)
    stages.append(stem)
    for stage in low.stages:
        stage_cost = Cost()
        for block in stage.blocks:
            row = part(block.name, block.family.value, block.ops, block.out_shape)
            blocks.append(row)
            stage_cost += row.cost
        stages.append(Row(stage.name, stage.family.value, stage.out_shape, stage_cost))
    head = part("head", "head", low.head.ops, low.head.out_shape)
    blocks.append(head)
    stages.append(head)
    for row in stages:
        total += row.cost
    return Report(low.name, low.input_shape, tuple(ops), tuple(blocks), tuple(stages), total)
