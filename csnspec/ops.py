"""The lowered IR: a shape-annotated tree of primitive ops (network -> stages -> blocks -> branches -> ops).

Every node has a stable hierarchical `name` ("layer2.0.conv_b") that is also its attribute path
in the generated models, and its input and output shapes per clip: (C, T, H, W), or (F,) after
global pooling. Analysis and both backends read these nodes; none of them recomputes a shape.

Ops are named tuples: immutable, hashable and cheap to build (a 152-layer network has ~700);
their `kind` is a class attribute, not a field.
A block's convs also say which of the block's parameters they read (`in_ref`, `out_ref`,
`groups_ref`, `stride_ref`), so a backend can print one class per block family that every
block of that family instantiates with its own `BlockParams`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .spec import Family, Network

Shape = tuple[int, ...]


class Conv3d(NamedTuple):
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
    kind = "conv3d"


class BatchNorm(NamedTuple):
    name: str
    in_shape: Shape
    out_shape: Shape
    channels: int
    eps: float
    momentum: float  # PyTorch convention
    channels_ref: str | None = None
    last: bool = False  # last BN of a residual branch (target of zero-init)
    kind = "batchnorm"


class ReLU(NamedTuple):
    name: str
    in_shape: Shape
    out_shape: Shape
    kind = "relu"


class Swish(NamedTuple):
    """x * sigmoid(x) (SiLU): X3D's activation after conv_b."""

    name: str
    in_shape: Shape
    out_shape: Shape
    kind = "swish"


class Sigmoid(NamedTuple):
    name: str
    in_shape: Shape
    out_shape: Shape
    kind = "sigmoid"


class MaxPool(NamedTuple):
    name: str
    in_shape: Shape
    out_shape: Shape
    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    padding: tuple[int, int, int]
    kind = "maxpool"


class AvgPool(NamedTuple):
    """A fixed-window average pool (stride 1, no padding)."""

    name: str
    in_shape: Shape
    out_shape: Shape
    kernel: tuple[int, int, int]
    kind = "avgpool"


class GlobalAvgPool(NamedTuple):
    """Average over frames, height and width: (C, T, H, W) -> (C,)."""

    name: str
    in_shape: Shape
    out_shape: Shape
    kind = "global_avgpool"


class SqueezeExcite(NamedTuple):
    """Squeeze-excitation (Hu et al.; fvcore's SqueezeExcitation): x * gate(mean(x)).

    `ops` run on the (C, 1, 1, 1) mean of the input over frames, height and width: a 1x1x1
    conv to `reduced` channels with bias, ReLU, a 1x1x1 conv back with bias, sigmoid; their
    names are "<name>.reduce", "<name>.relu", "<name>.expand", "<name>.gate". The output is
    the input scaled channel by channel by the gate. `reduced_ref` names the block parameter
    that holds `reduced` ("se_width"), `channels_ref` the one that holds `channels`.
    """

    name: str
    in_shape: Shape
    out_shape: Shape
    channels: int
    reduced: int
    ops: tuple  # (Conv3d reduce, ReLU, Conv3d expand, Sigmoid gate)
    channels_ref: str | None = None
    reduced_ref: str | None = None
    kind = "squeeze_excite"


def leaf_ops(ops):
    """`ops` with each squeeze-excitation replaced by its sub-ops: the ops that hold tensors."""
    for op in ops:
        if isinstance(op, SqueezeExcite):
            yield from op.ops
        else:
            yield op


class Dropout(NamedTuple):
    name: str
    in_shape: Shape
    out_shape: Shape
    p: float
    kind = "dropout"


class Linear(NamedTuple):
    name: str
    in_shape: Shape
    out_shape: Shape
    in_features: int
    out_features: int
    bias: bool = True
    kind = "linear"


class Add(NamedTuple):
    """The residual sum: branch output + shortcut."""

    name: str
    in_shape: Shape
    out_shape: Shape
    kind = "add"


Op = (
    Conv3d
    | BatchNorm
    | ReLU
    | Swish
    | Sigmoid
    | MaxPool
    | AvgPool
    | GlobalAvgPool
    | SqueezeExcite
    | Dropout
    | Linear
    | Add
)


@dataclass(frozen=True, slots=True)
class BlockParams:
    """What varies between blocks of one stage: what a generated block class is built with."""

    in_channels: int
    width: int
    out_channels: int
    stride: tuple[int, int, int]
    shortcut: bool  # projection shortcut (1x1x1 conv + BN) instead of identity
    # the width between the factorized halves of conv_a / conv_b where it is not their
    # output width (`mid=matched`, `mid=matched-block`); None elsewhere
    mid_a: int | None = None
    mid_b: int | None = None
    se_width: int = 0  # the reduced width of the block's squeeze-excitation; 0: none


@dataclass(frozen=True, slots=True)
class Block:
    """One residual block: its branch ops, its shortcut ops (empty for identity) and the merge."""

    name: str  # "layer2.0"
    family: Family
    params: BlockParams
    in_shape: Shape
    out_shape: Shape
    residual: tuple[Op, ...]  # the branch: convs, norms, activations
    # the projection (1x1x1 conv + BN; x3d: the conv alone where the width stays), or empty
    shortcut: tuple[Op, ...]
    merge: tuple[Op, ...]  # add, then ReLU
    # The block this one repeats exactly but for its names (the blocks after the second in a
    # stage): lowering copies its ops renamed, analysis reuses its cost.
    repeats: str | None = None

    @property
    def ops(self) -> tuple[Op, ...]:
        return self.residual + self.shortcut + self.merge


@dataclass(frozen=True, slots=True)
class LoweredStage:
    """A stage's blocks, then its optional max-pool (`pool=`, named "layer1_pool": an
    attribute of the network, beside the stage, so block indices stay those of the blocks).
    `out_shape` is the stage's output: after the pool where there is one."""

    name: str  # "layer1"
    index: int
    family: Family
    blocks: tuple[Block, ...]
    in_shape: Shape
    out_shape: Shape
    pool: MaxPool | None = None


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
    stages: tuple[LoweredStage, ...]
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
        for stage in self.stages:
            for block in stage.blocks:
                yield from block.ops
            if stage.pool is not None:
                yield stage.pool
        yield from self.head.ops
