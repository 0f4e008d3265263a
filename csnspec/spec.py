"""The spec IR: a validated, immutable description of a network with every default filled in.

The parser (`csnspec.parse`) builds it from text, the printer (`csnspec.printer`) writes it back,
the architecture search builds it directly; `csnspec.lower` turns it into primitive ops.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

# Upper bounds keep every spec small enough to lower and analyse at once: a mistyped
# `x [33333333333]` is refused here instead of hanging the lowering loop.
MAX_SIZE = 65536  # any one size: a width, a clip dimension, a kernel, a stride or a padding
MAX_BLOCKS = 1000  # residual blocks in the whole network (ResNet-1001 has 333)
MAX_CLASSES = 1_000_000

PositiveInt = Annotated[int, Field(gt=0, le=MAX_SIZE)]
Dims3 = tuple[PositiveInt, PositiveInt, PositiveInt]
Pad = Annotated[int, Field(ge=0, le=MAX_SIZE)]
Pads3 = tuple[Pad, Pad, Pad]

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
    X3D = "x3d"  # X3D's inverted bottleneck (PyTorchVideo create_x3d_bottleneck_block)

    @property
    def is_bottleneck(self) -> bool:
        return self.value.startswith("bottleneck")

    @property
    def has_conv_b(self) -> bool:
        """Whether the block has a middle conv_b between 1x1x1 convs (bottleneck families, x3d):
        the families that take squeeze-excitation and a choice of activation after it."""
        return self.is_bottleneck or self is Family.X3D

    @property
    def uses_groups(self) -> bool:
        """Whether the family takes the paper's G (`g=N`)."""
        return self in (Family.SIMPLE_G, Family.BOTTLENECK_G, Family.BOTTLENECK_DG)


FAMILY_ALIASES = {"ir-csn": Family.BOTTLENECK_D, "ip-csn": Family.BOTTLENECK_IP}
FAMILY_NAMES = [f.value for f in Family] + list(FAMILY_ALIASES)


def family_named(word: str) -> Family | None:
    """The family a word names (case-insensitive, aliases included), or None."""
    for name in FAMILY_NAMES:
        if name.lower() == word.lower():
            return FAMILY_ALIASES.get(name) or Family(name)
    return None


@dataclass(frozen=True)
class BlockOption:
    """One block option of a `stages`/`stage` line and the families that take it."""

    key: str  # as written in a spec: `stride-at=first`
    field: str  # the Stage field it sets
    # "int", "bool", the tuple of words it takes, or a value that may alternate over the
    # blocks of a stage ("dims-cycle", "number-cycle": a tuple in the IR, cycled)
    kind: object
    applies: Callable[[Family], bool]  # whether a family has it
    # its value when not written (a function of the family where families differ);
    # None: the family must give it
    default: object
    neutral: object  # a value that means "not there" (accepted, then dropped, elsewhere)
    hint: str  # what to tell a family that does not take it
    after_counts: bool = False  # the printer writes it after the block counts
    needs: str = ""  # (default None) what a family that takes it must be told it lacks

    @property
    def cycles(self) -> bool:
        """Whether its value may alternate over a stage's blocks (`3x1x1/1x1x1`)."""
        return self.kind in CYCLE_KINDS

    def default_for(self, family: Family):
        """Its value for `family` when not written."""
        return self.default(family) if callable(self.default) else self.default


CYCLE_KINDS = ("dims-cycle", "number-cycle")
MAX_CYCLE = 64  # values in one alternation: a pattern, not a list of every block


def shortest_cycle(values: tuple) -> tuple:
    """The shortest pattern that repeats to `values` (`a/b/a/b` is `a/b`): one IR per meaning."""
    n = len(values)
    for p in range(1, n):
        if n % p == 0 and all(values[i] == values[i % p] for i in range(n)):
            return tuple(values[:p])
    return tuple(values)


def _every_family(family: Family) -> bool:
    return True


def _kernel_a(family: Family) -> tuple:
    # conv_a is the 1x1x1 reduction (expansion for x3d) of a bottleneck, the first 3x3x3 conv
    # of a simple block
    return ((1, 1, 1),) if family.has_conv_b else ((3, 3, 3),)


def _kernel_b(family: Family) -> tuple:
    return ((3, 3, 3),)


# X3D's own defaults (PyTorchVideo create_x3d): inner width 2.25x the output, SE (ratio 1/16)
# in blocks 1, 3, 5, ... of every stage, swish after the middle conv
def _expansion(family: Family):
    return 2.25 if family is Family.X3D else 4


def _se(family: Family) -> tuple:
    return (0.0625, 0) if family is Family.X3D else (0,)


def _act_b(family: Family) -> str:
    return "swish" if family is Family.X3D else "relu"


# The one table of block options: build.py reads specs with it, Stage fills defaults and
# refuses misplaced options with it, printer.py writes them back, and search/space.py drops
# the options a chosen family does not take. A new family or option starts here.
BLOCK_OPTIONS = (
    BlockOption(
        "g",
        "groups",
        "int",
        lambda f: f.uses_groups,
        None,
        1,
        "use a -G family to group the 3x3x3 convs, or bottleneck-DG to group the 1x1x1 convs",
        needs="the number of groups",
    ),
    BlockOption(
        "expansion",
        "expansion",
        "number",  # whole for bottleneck families (Stage checks), fractional for x3d
        lambda f: f.has_conv_b,
        _expansion,
        1,
        "simple blocks have no expansion",
        after_counts=True,
    ),
    BlockOption(
        "stride-at",
        "stride_at",
        ("middle", "first"),
        lambda f: f.is_bottleneck,
        "middle",
        "middle",
        "simple blocks stride their first 3x3x3 conv",
    ),
    BlockOption("kernel-a", "kernel_a", "dims-cycle", _every_family, _kernel_a, None, ""),
    BlockOption("kernel-b", "kernel_b", "dims-cycle", _every_family, _kernel_b, None, ""),
    BlockOption("factorize", "factorize", ("3d", "2+1d", "1+2d"), _every_family, "3d", "3d", ""),
    BlockOption(
        "mid",
        "mid",
        ("out", "matched", "matched-block"),
        lambda f: f in (Family.SIMPLE, Family.BOTTLENECK),
        "out",
        "out",
        "grouped and channel-separated convs keep their width between the factorized convs",
    ),
    BlockOption(
        "se",
        "se",
        "number-cycle",
        lambda f: f.has_conv_b,
        _se,
        (0,),
        "squeeze-excitation follows the middle conv of bottleneck and x3d blocks",
    ),
    BlockOption(
        "act-b",
        "act_b",
        ("relu", "swish"),
        lambda f: f.has_conv_b,
        _act_b,
        "relu",
        "simple blocks have ReLUs only",
    ),
    BlockOption(
        "ip-relu",
        "ip_relu",
        "bool",
        lambda f: f is Family.BOTTLENECK_IP,
        False,
        False,
        "only bottleneck-IP has the extra 1x1x1 conv",
    ),
    BlockOption(
        "project",
        "project",
        "bool",
        lambda f: f is Family.SIMPLE_D,
        True,
        True,
        "only simple-D has the optional 1x1x1 conv",
    ),
)
BLOCK_OPTION = {opt.key: opt for opt in BLOCK_OPTIONS}


class _Frozen(BaseModel):
    # allow_inf_nan=False: every number must print and read back (`fmt` cannot write inf)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Norm(_Frozen):
    """BatchNorm settings, in PyTorch's convention (running = (1 - m) * running + m * batch)."""

    kind: Literal["batchnorm"] = "batchnorm"
    eps: Annotated[float, Field(gt=0)] = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1)] = 0.1


class StemConv(_Frozen):
    """A stem convolution, followed by BatchNorm and ReLU unless `norm` is off."""

    kind: Literal["conv"] = "conv"
    kernel: Dims3
    out: PositiveInt
    stride: Dims3 = (1, 1, 1)
    padding: Pads3
    groups: PositiveInt = 1  # out == groups == input channels: channel-wise (X3D's conv_t)
    norm: bool = True  # False: the conv alone (X3D's conv_xy, followed directly by conv_t)


class StemPool(_Frozen):
    """A stem max-pool."""

    kind: Literal["maxpool"] = "maxpool"
    kernel: Dims3
    stride: Dims3 = (1, 1, 1)
    padding: Pads3

    @model_validator(mode="after")
    def _half_kernel_padding(self) -> StemPool:
        # PyTorch refuses a pool whose padding exceeds half its kernel (every window must
        # hold at least one real value).
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel)):
            raise ValueError(
                f"a maxpool's padding is at most half its kernel: {_x(self.padding)} is too "
                f"large for kernel {_x(self.kernel)}"
            )
        return self


StemLayer = Annotated[StemConv | StemPool, Field(discriminator="kind")]


class Stage(_Frozen):
    """A run of `blocks` residual blocks of one family; the first carries the stride.

    `width` is the block's inner width (bottleneck) or its output width (simple, x3d);
    a bottleneck block outputs `width * expansion` channels, an x3d block widens to
    `int(width * expansion)` inside.
    """

    family: Family
    blocks: Annotated[int, Field(gt=0, le=MAX_BLOCKS)]
    width: PositiveInt
    stride: Dims3 = (1, 1, 1)
    groups: PositiveInt | None = None  # the paper's G; None where the family has none
    # bottleneck families: a whole number; x3d: any, its inner width is int(expansion * width)
    expansion: PositiveInt | Annotated[float, Field(gt=0, le=MAX_SIZE)] | None = None
    stride_at: Literal["middle", "first"] | None = None  # bottleneck families only
    # the kernels of conv_a and conv_b, cycled over the blocks (None: the family's default)
    kernel_a: Annotated[tuple[Dims3, ...], Field(min_length=1, max_length=MAX_CYCLE)] | None = None
    kernel_b: Annotated[tuple[Dims3, ...], Field(min_length=1, max_length=MAX_CYCLE)] | None = None
    # 2+1d: spatial conv then temporal (R(2+1)D); 1+2d: temporal first (PyTorchVideo)
    factorize: Literal["3d", "2+1d", "1+2d"] = "3d"
    # the width between the two factorized convs: out (the conv's output width), matched
    # (each conv matched to its 3D conv's parameter count: R(2+1)D, VMZ), matched-block
    # (matched with the block's input width and width, for every conv: torchvision)
    mid: Literal["out", "matched", "matched-block"] | None = None
    ip_relu: bool | None = None  # bottleneck-IP only
    # squeeze-excitation ratios cycled over the stage's blocks (0: none); bottleneck and x3d
    se: tuple[Annotated[float, Field(ge=0, le=1)], ...] | None = None
    act_b: Literal["relu", "swish"] | None = None  # the activation after conv_b (and SE)
    project: bool | None = None  # simple-D only
    pool: Dims3 | None = None  # a max-pool after the stage: kernel = stride, no padding

    @model_validator(mode="before")
    @classmethod
    def _family_options(cls, data):
        # Fill the language's defaults and refuse options the family does not have, so that
        # a Stage built in Python means what the same `stage` line would mean.
        if not isinstance(data, dict):
            return data
        try:
            fam = Family(data.get("family"))
        except ValueError:
            return data  # reported by the field's own validation
        data = dict(data)
        expansion = data.get("expansion")
        if isinstance(expansion, float) and expansion.is_integer():
            data["expansion"] = int(expansion)  # `expansion=4` reads as a number
        for opt in BLOCK_OPTIONS:
            if opt.cycles and isinstance(data.get(opt.field), (tuple, list)):
                data[opt.field] = shortest_cycle(tuple(data[opt.field]))
            if opt.applies is _every_family and not callable(opt.default):
                continue  # an ordinary field with a default
            value = data.get(opt.field)
            if opt.applies(fam) and value is None:
                if opt.default_for(fam) is None:
                    raise ValueError(f"{fam.value} needs `{opt.field}` (the paper's G)")
                data[opt.field] = opt.default_for(fam)
            elif not opt.applies(fam) and value is not None:
                if value != opt.neutral:
                    raise ValueError(f"`{opt.field}={value}` means nothing for {fam.value} blocks")
                data[opt.field] = None
        return data

    @model_validator(mode="after")
    def _mid_needs_factorizing(self) -> Stage:
        if self.mid not in (None, "out") and self.factorize == "3d":
            raise ValueError(
                f"`mid={self.mid}` is the width between factorized convs: "
                "it needs factorize=2+1d or factorize=1+2d"
            )
        return self

    @field_validator("expansion")
    @classmethod
    def _whole_expansion(cls, value, info: ValidationInfo):
        family = info.data.get("family")
        if family is not None and family.is_bottleneck and value != int(value):
            raise ValueError(f"a {family.value} block's expansion is a whole number, got {value}")
        return value

    @field_validator("se")
    @classmethod
    def _some_ratio(cls, value):
        if value is not None and not value:
            raise ValueError("`se` needs at least one ratio")
        return value

    @property
    def inner_width(self) -> int:
        """The width of conv_b: `width` (bottleneck, simple), or int(expansion * width) for
        x3d, whose `width` is the block's output (PyTorchVideo's `int(bottleneck_factor * dim_out)`)."""
        if self.family is Family.X3D:
            return int(self.expansion * self.width)
        return self.width

    @property
    def out_width(self) -> int:
        if self.family is Family.X3D:
            return self.width
        return self.width * int(self.expansion or 1)

    def se_ratio(self, block: int) -> float:
        """The squeeze-excitation ratio of the stage's block `block` (0-based); 0: none."""
        return self.se[block % len(self.se)] if self.se else 0

    def kernels(self, block: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """The kernels of conv_a and conv_b in block `block` (0-based) of the stage."""
        a, b = self.kernel_a, self.kernel_b
        return tuple(a[block % len(a)]), tuple(b[block % len(b)])


class HeadConv(_Frozen):
    """A head convolution ('same' padding, stride 1), followed by BatchNorm (unless `norm` is
    off) and ReLU: X3D's 1x1x1 convs before and after its pool."""

    kernel: Dims3
    out: PositiveInt
    norm: bool = True


class Head(_Frozen):
    """Convs, average pool (global, or a fixed window then global), optional dropout, fc.

    `convs` come before the window pool, `post_convs` after it; the global average always
    follows the last of them (for an fc after a window pool covering the whole map, this is
    PyTorchVideo's X3D head, which applies its fc per position and averages after).
    """

    convs: tuple[HeadConv, ...] = ()
    window: Dims3 | None = None  # PyTorchVideo's fixed-window pool (stride 1)
    post_convs: tuple[HeadConv, ...] = ()
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0


class Network(_Frozen):
    """A whole network: input clip, stem, stages and head."""

    name: str
    input: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt]  # C, T, H, W
    classes: Annotated[int, Field(gt=0, le=MAX_CLASSES)]
    norm: Norm = Norm()
    stem: tuple[StemLayer, ...]
    stages: Annotated[tuple[Stage, ...], Field(min_length=1)]
    head: Head = Head()

    @model_validator(mode="after")
    def _few_blocks(self) -> Network:
        total = sum(st.blocks for st in self.stages)
        if total > MAX_BLOCKS:
            raise ValueError(f"the network has {total} blocks; csnspec takes at most {MAX_BLOCKS}")
        return self

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
        """The same network for another input clip or class count."""
        update = {}
        if input is not None:
            update["input"] = tuple(input)
        if classes is not None:
            update["classes"] = classes
        return Network.model_validate({**self.model_dump(), **update})


def _x(dims) -> str:
    return "x".join(map(str, dims))


def identifier(name: str) -> str:
    """The Python identifier a (validated) network name maps to."""
    return name.replace("-", "_")
