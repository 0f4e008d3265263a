"""The lowered IR: a shape-annotated tree of primitive ops (network -> stages -> blocks -> branches -> ops).

Every node has a stable hierarchical `name` ("layer2.0.conv_b") that is also its attribute path
in the generated models, and its input and output shapes per clip: (C, T, H, W), or (F,) after
global pooling. Analysis and both backends read these nodes; none of them recomputes a shape.

A block's convs also say which of the block's parameters they read (`in_ref`, `out_ref`,
`groups_ref`, `stride_ref`), so a backend can print one class per block family that every
block of that family instantiates with its own `BlockParams`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from .spec import Family, Network

Shape = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Conv3d:
    name: str
    in_shape: Shape
    out_shape: Shape
    in_channels: int
    out_channels: int
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    padding: tuple[int, int, int]
    groups: int = 1
    bias: bool = False
    # Which block parameter each value reads ("in_channels", "width", "out_channels",
    # "stride", "stride_t", "stride_hw"); None where the value is a literal.
    in_ref: str | None = None
    out_ref: str | None = None
    groups_ref: str | None = None
    stride_ref: str | None = None
    kind: ClassVar[str] = "conv3d"


@dataclass(frozen=True, slots=True)
class BatchNorm:
    name: str
    in_shape: Shape
    out_shape: Shape
    channels: int
    eps: float
    momentum: float  # PyTorch convention
    channels_ref: str | None = None
    last: bool = False  # last BN of a residual branch (target of zero-init)
    kind: ClassVar[str] = "batchnorm"


@dataclass(frozen=True, slots=True)
class ReLU:
    name: str
    in_shape: Shape
    out_shape: Shape
    kind: ClassVar[str] = "relu"


@dataclass(frozen=True, slots=True)
class MaxPool:
    name: str
    in_shape: Shape
    out_shape: Shape
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    padding: tuple[int, int, int]
    kind: ClassVar[str] = "maxpool"


@dataclass(frozen=True, slots=True)
class AvgPool:
    """A fixed-window average pool (stride 1, no padding)."""

    name: str
    in_shape: Shape
    out_shape: Shape
    kernel: tuple[int, int, int]
    kind: ClassVar[str] = "avgpool"


@dataclass(frozen=True, slots=True)
class GlobalAvgPool:
    """Average over frames, height and width: (C, T, H, W) -> (C,)."""

    name: str
    in_shape: Shape
    out_shape: Shape
    kind: ClassVar[str] = "global_avgpool"


@dataclass(frozen=True, slots=True)
class Dropout:
    name: str
    in_shape: Shape
    out_shape: Shape
    p: float
    kind: ClassVar[str] = "dropout"


@dataclass(frozen=True, slots=True)
class Linear:
    name: str
    in_shape: Shape
    out_shape: Shape
    in_features: int
    out_features: int
    bias: bool = True
    kind: ClassVar[str] = "linear"


@dataclass(frozen=True, slots=True)
class Add:
    """The residual sum: branch output + shortcut."""

    name: str
    in_shape: Shape
    out_shape: Shape
    kind: ClassVar[str] = "add"


Op = Conv3d | BatchNorm | ReLU | MaxPool | AvgPool | GlobalAvgPool | Dropout | Linear | Add


@dataclass(frozen=True, slots=True)
class BlockParams:
    """What varies between blocks of one stage: what a generated block class is built with."""

    in_channels: int
    width: int
    out_channels: int
    stride: tuple[int, int, int]
    shortcut: bool  # projection shortcut (1x1x1 conv + BN) instead of identity


@dataclass(frozen=True, slots=True)
class Block:
    name: str  # "layer2.0"
    family: Family
    params: BlockParams
    in_shape: Shape
    out_shape: Shape
    residual: tuple[Op, ...]  # the branch: convs, norms, activations
    shortcut: tuple[Op, ...]  # empty for identity
    merge: tuple[Op, ...]  # Add, then ReLU

    @property
    def ops(self) -> tuple[Op, ...]:
        return self.residual + self.shortcut + self.merge


@dataclass(frozen=True, slots=True)
class Stage:
    name: str  # "layer1"
    index: int
    family: Family
    blocks: tuple[Block, ...]
    in_shape: Shape
    out_shape: Shape


@dataclass(frozen=True, slots=True)
class Sequence:
    """A straight run of ops (the stem, the head)."""

    name: str
    ops: tuple[Op, ...]
    in_shape: Shape
    out_shape: Shape


@dataclass(frozen=True, slots=True)
class LoweredNetwork:
    spec: Network = field(repr=False)
    name: str
    input_shape: Shape
    stem: Sequence
    stages: tuple[Stage, ...]
    head: Sequence

    @property
    def output_shape(self) -> Shape:
        return self.head.out_shape

    def blocks(self):
        for stage in self.stages:
            yield from stage.blocks

    def ops(self):
        """Every op, in forward order (a block's shortcut ops come after its branch)."""
        yield from self.stem.ops
        for block in self.blocks():
            yield from block.ops
        yield from self.head.ops
