"""The spec IR: a validated, immutable description of a network with every default filled in.

The parser (`csnspec.parse`) builds it from text, the printer (`csnspec.fmt`) writes it back,
the architecture search builds it directly; `csnspec.lower` turns it into primitive ops.
"""

from __future__ import annotations

import keyword
import re
from enum import Enum
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

PositiveInt = Annotated[int, Field(gt=0)]
Dims3 = tuple[PositiveInt, PositiveInt, PositiveInt]
Pads3 = tuple[
    Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]
]

# Network names become file and class names in generated code, so they are kept to a
# small, safe alphabet (see `identifier`); hyphens are allowed and mapped to `_` there.
NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}\Z")


class Family(str, Enum):
    """The block families of the paper's sections 3.3-3.4 (Figures 2-4)."""

    SIMPLE = "simple"
    SIMPLE_G = "simple-G"
    SIMPLE_D = "simple-D"
    BOTTLENECK = "bottleneck"
    BOTTLENECK_G = "bottleneck-G"
    BOTTLENECK_D = "bottleneck-D"
    BOTTLENECK_DG = "bottleneck-DG"
    BOTTLENECK_IP = "bottleneck-IP"

    @property
    def is_bottleneck(self) -> bool:
        return self.value.startswith("bottleneck")

    @property
    def uses_groups(self) -> bool:
        """Whether the family takes the paper's G (`g=N`)."""
        return self in (Family.SIMPLE_G, Family.BOTTLENECK_G, Family.BOTTLENECK_DG)


FAMILY_ALIASES = {"ir-csn": Family.BOTTLENECK_D, "ip-csn": Family.BOTTLENECK_IP}
FAMILY_NAMES = [f.value for f in Family] + list(FAMILY_ALIASES)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Norm(_Frozen):
    """BatchNorm settings, in PyTorch's convention (running = (1 - m) * running + m * batch)."""

    kind: Literal["batchnorm"] = "batchnorm"
    eps: Annotated[float, Field(gt=0)] = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1)] = 0.1


class StemConv(_Frozen):
    """A stem convolution, followed by BatchNorm and ReLU."""

    kind: Literal["conv"] = "conv"
    kernel: Dims3
    out: PositiveInt
    stride: Dims3 = (1, 1, 1)
    padding: Pads3


class StemPool(_Frozen):
    """A stem max-pool."""

    kind: Literal["maxpool"] = "maxpool"
    kernel: Dims3
    stride: Dims3 = (1, 1, 1)
    padding: Pads3


StemLayer = Annotated[Union[StemConv, StemPool], Field(discriminator="kind")]


class Stage(_Frozen):
    """A run of `blocks` residual blocks of one family; the first carries the stride.

    `width` is the block's inner width (bottleneck) or its output width (simple);
    a bottleneck block outputs `width * expansion` channels.
    """

    family: Family
    blocks: PositiveInt
    width: PositiveInt
    stride: Dims3 = (1, 1, 1)
    groups: PositiveInt | None = None  # the paper's G; None where the family has none
    expansion: PositiveInt | None = None  # bottleneck families only
    stride_at: Literal["middle", "first"] | None = None  # bottleneck families only
    factorize: Literal["3d", "2+1d"] = "3d"
    ip_relu: bool | None = None  # bottleneck-IP only
    project: bool | None = None  # simple-D only

    @property
    def out_width(self) -> int:
        return self.width * (self.expansion or 1)


class Head(_Frozen):
    """Average pool (global, or a fixed window then global), optional dropout, fc."""

    window: Dims3 | None = None  # PyTorchVideo's fixed-window pool (stride 1)
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0


class Network(_Frozen):
    """A whole network: input clip, stem, stages and head."""

    name: str
    input: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt]  # C, T, H, W
    classes: PositiveInt
    norm: Norm = Norm()
    stem: tuple[StemLayer, ...]
    stages: Annotated[tuple[Stage, ...], Field(min_length=1)]
    head: Head = Head()

    # Where each value came from in the source, keyed by field path ("stages.2.groups");
    # used to point errors found after parsing at the token that caused them.
    _spans: dict = PrivateAttr(default_factory=dict)
    _lowered: object = PrivateAttr(default=None)  # cache of csnspec.lowering.lower(self)

    def __eq__(self, other) -> bool:
        # Equal specs are equal whatever their source positions (pydantic's own __eq__
        # would also compare the private spans and the lowering cache).
        return type(other) is Network and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(tuple(self.__dict__.values()))

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not NAME_RE.match(v):
            raise ValueError(
                "a network name starts with a letter and has at most 64 letters, digits, '-' or '_'"
            )
        if keyword.iskeyword(identifier(v)) or v.startswith("__"):
            raise ValueError(f"'{v}' is reserved in Python and cannot name a network")
        return v

    def with_input(self, input=None, classes=None) -> Network:
        """The same network for another input clip or class count (spans are kept)."""
        update = {}
        if input is not None:
            update["input"] = tuple(input)
        if classes is not None:
            update["classes"] = classes
        new = Network.model_validate({**self.model_dump(), **update})
        new._spans = self._spans
        return new


def identifier(name: str) -> str:
    """The Python identifier a (validated) network name maps to."""
    return name.replace("-", "_")
