"""The back end both printers share: block classes, names, stage layout and the depthwise choice.

A backend reads a `Model` (built here from the lowered IR) and maps each op to its framework's
call; everything else (which blocks share a class, what each class is called, which values a
class takes as parameters, how a stage's blocks are constructed, which convs are depthwise)
is decided once, here, so the torch and flax modules of one spec have the same classes under
the same names. Backend-neutral: no torch, no jax.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, replace
from functools import cache

from ..errors import CsnError
from ..ops import (
    Add,
    BatchNorm,
    Block,
    Conv3d,
    LoweredNetwork,
    MaxPool,
    ReLU,
    SqueezeExcite,
    Swish,
)
from ..spec import Family
from .common import check_attr_path, check_identifier, check_network_name, class_name, dims, num

# -- names ----------------------------------------------------------------------------------

# What a generated module defines or imports at its top, in either backend (and the inlined
# depthwise kernels): a block or network class must not take one of these names.
RESERVED = frozenset(
    {
        "Stem",
        "Head",
        "build",
        "load_weights",
        "from_torch_layout",
        "conv_init",
        "NETWORK",
        "SPEC_SHA256",
        "INPUT_SHAPE",
        "DEPTHWISE",
        "DEPTHWISE_IMPLS",
        "JAX_DEPTHWISE_IMPLS",
        "DepthwiseConv3d",
        "SqueezeExcite",
        "DepthwiseConv",
        "depthwise_conv3d",
        "torch",
        "nn",
        "F",
        "os",
        "jax",
        "jnp",
        "lax",
        "nnx",
        "functools",
    }
)

# Module files a network must not be written as: they would shadow what the generated module
# (or its user) imports from the same folder. The standard library's names come from Python.
_SHADOWED = frozenset(
    {"torch", "jax", "jaxlib", "flax", "optax", "numpy", "triton", "safetensors", "csnspec"}
    | {"jinja2", "typing_extensions", "av", "ray", "optuna", "pytest", "hypothesis"}
)


def check_module_name(name: str) -> str:
    """The network name if its module file shadows no importable module; CsnError otherwise."""
    from .common import module_stem

    stem = module_stem(check_network_name(name))
    if stem in _SHADOWED or stem in sys.stdlib_module_names:
        raise CsnError(
            f"network name {name!r} would be written as {stem}.py, which shadows the "
            f"module {stem!r} for any code run from the same folder",
            hint="rename the network, e.g. 'my-" + name + "'",
            fields=("name",),
        )
    return name


# -- block structures -----------------------------------------------------------------------

FAMILY_CLASS = {
    Family.SIMPLE: "SimpleBlock",
    Family.SIMPLE_G: "SimpleGBlock",
    Family.SIMPLE_D: "SimpleDBlock",
    Family.BOTTLENECK: "Bottleneck",
    Family.BOTTLENECK_G: "BottleneckG",
    Family.BOTTLENECK_D: "BottleneckD",
    Family.BOTTLENECK_DG: "BottleneckDG",
    Family.BOTTLENECK_IP: "BottleneckIP",
    Family.X3D: "X3DBlock",
}

# "A bottleneck block", "An x3d block"
FAMILY_ARTICLE = {family: "An" if family is Family.X3D else "A" for family in Family}

FAMILY_FIGURE = {
    Family.SIMPLE: "Figure 3a",
    Family.SIMPLE_G: "Figure 3b",
    Family.SIMPLE_D: "Figure 3c",
    Family.BOTTLENECK: "Figure 4a",
    Family.BOTTLENECK_G: "Figure 4b, a ResNeXt block",
    Family.BOTTLENECK_D: "Figure 4c, ir-CSN",
    Family.BOTTLENECK_DG: "Figure 4d",
    Family.BOTTLENECK_IP: "Figure 2b, ip-CSN",
    Family.X3D: "X3D's inverted bottleneck, Feichtenhofer 2020",
}

# A block class's constructor parameters, in order, with their types and call-site defaults.
PARAM_TYPES = {
    "in_channels": "int",
    "width": "int",
    "out_channels": "int",
    "mid_a": "int",  # the width between conv_a's factorized halves (mid=matched...)
    "mid_b": "int",
    "groups": "int",
    "se_width": "int",
    "stride": "tuple[int, int, int]",
    "shortcut": "bool",
}
PARAM_DEFAULTS = {"stride": "(1, 1, 1)", "shortcut": "False"}
# The IR's stride references, as expressions of the block's `stride` parameter.
STRIDE = {
    "stride": "stride",
    "stride_t": "(stride[0], 1, 1)",
    "stride_hw": "(1, stride[1], stride[2])",
}
_REFS = {"in_channels", "width", "out_channels", "mid_a", "mid_b", "se_width"} | set(STRIDE)
# The names of a squeeze-excitation's sub-ops (ops.SqueezeExcite), which the backends' one
# `SqueezeExcite` class holds under the same names.
SE_PARTS = ("reduce", "relu", "expand", "gate")


@dataclass(frozen=True, slots=True)
class Param:
    """A value read from a block parameter ("width", "stride_t", ...)."""

    name: str

    @property
    def text(self) -> str:
        return STRIDE.get(self.name, self.name)

    @property
    def param(self) -> str:
        return "stride" if self.name.startswith("stride") else self.name


@dataclass(frozen=True, slots=True)
class Literal:
    """A value fixed for the whole class: an int or a tuple of ints."""

    value: int | tuple[int, ...]

    @property
    def text(self) -> str:
        return dims(self.value) if isinstance(self.value, tuple) else num(self.value)


Value = Param | Literal


def _value(ref, literal) -> Value:
    if ref is None:
        return Literal(tuple(literal) if isinstance(literal, (tuple, list)) else literal)
    if ref not in _REFS:
        raise CsnError(f"unknown block parameter {ascii(ref)[:40]} in the lowered IR")
    return Param(ref)


@dataclass(frozen=True, slots=True)
class ConvShape:
    """A conv inside a block class: what its constructor prints."""

    name: str
    kernel: tuple[int, int, int]
    padding: tuple[int, int, int]
    in_channels: Value
    out_channels: Value
    groups: Value
    stride: Value
    bias: bool

    kind = "conv3d"

    @property
    def depthwise(self) -> bool:
        """One filter per channel: groups == in == out channels (and more than one)."""
        return is_depthwise(self.in_channels, self.out_channels, self.groups, self.bias)

    @property
    def pointwise(self) -> bool:
        """An unpadded, ungrouped 1x1x1 conv (any stride): a matrix product over voxels, emitted
        with the PointwiseConv classes of csnspec.kernels where a backend runs it as one."""
        return self.kernel == (1, 1, 1) and self.padding == (0, 0, 0) and self.groups.text == "1"

    @property
    def subsamples(self) -> bool:
        """An unpadded 1x1x1 conv whose stride may exceed 1: emitted as a subsample, then a
        stride-1 conv (the PointwiseConv classes of csnspec.kernels)."""
        return self.pointwise and self.stride.text != "(1, 1, 1)"


@dataclass(frozen=True, slots=True)
class NormShape:
    name: str
    channels: Value
    eps: float
    momentum: float
    last: bool  # the last BN of the branch: zero-init's target

    kind = "batchnorm"


@dataclass(frozen=True, slots=True)
class ActShape:
    kind: str  # "relu", "swish" or "add"
    name: str


@dataclass(frozen=True, slots=True)
class SEShape:
    """A squeeze-excitation: the module's `SqueezeExcite(channels, reduced)`."""

    name: str
    channels: Value
    reduced: Value

    kind = "squeeze_excite"


Shape = ConvShape | NormShape | ActShape | SEShape


def is_depthwise(cin: Value, cout: Value, groups: Value, bias: bool) -> bool:
    """Whether a conv is emitted with the depthwise kernels (bias-free, one filter per channel)."""
    if bias:
        return False
    if isinstance(groups, Literal):
        return groups == cin == cout and groups.value > 1
    return groups == cin == cout


def op_depthwise(op: Conv3d) -> bool:
    """`is_depthwise` for a conv outside a block (all its values literal)."""
    c = Literal(op.groups)
    return is_depthwise(Literal(op.in_channels), Literal(op.out_channels), c, op.bias)


def local_name(op, parent: str) -> str:
    """An op's attribute name inside its block or part: "layer2.0.conv_b" -> "conv_b"."""
    parts = check_attr_path(op.name)
    if ".".join(parts[:-1]) != parent:
        raise CsnError(f"op {op.name!r} is not directly inside {parent!r}")
    return check_identifier(parts[-1])


def op_shape(op, block: Block | None, parent: str | None = None) -> Shape:
    """The printable structure of a block op (values may read block parameters) or, with
    `parent` ("stem", "head") and no block, of a stem or head op (values all literal)."""
    name = local_name(op, block.name if block is not None else parent)
    refs = ("in_ref", "out_ref", "groups_ref", "stride_ref", "channels_ref")
    if block is None and any(getattr(op, r, None) for r in refs):
        raise CsnError(f"{op.name} reads block parameters outside a block")
    if isinstance(op, Conv3d):
        if op.bias not in (True, False):
            raise CsnError(f"a conv's bias flag must be True or False, not {ascii(op.bias)[:40]}")
        return ConvShape(
            name,
            tuple(op.kernel),
            tuple(op.padding),
            _value(op.in_ref, op.in_channels),
            _value(op.out_ref, op.out_channels),
            _value(op.groups_ref, op.groups),
            _value(op.stride_ref, op.stride),
            op.bias,
        )
    if isinstance(op, BatchNorm):
        return NormShape(name, _value(op.channels_ref, op.channels), op.eps, op.momentum, op.last)
    if isinstance(op, (ReLU, Swish, Add)):
        return ActShape(op.kind, name)
    if isinstance(op, SqueezeExcite):
        parts = tuple(local_name(o, op.name) for o in op.ops)
        if parts != SE_PARTS or [o.kind for o in op.ops] != ["conv3d", "relu", "conv3d", "sigmoid"]:
            raise CsnError(f"{op.name} is not reduce, relu, expand, gate")
        channels = _value(op.channels_ref, op.channels)
        reduced = _value(op.reduced_ref, op.reduced)
        return SEShape(name, channels, reduced)
    raise CsnError(f"a {op.kind} op cannot appear in a residual block ({op.name})")


def _abstract_groups(residual: tuple) -> tuple[tuple, int | None]:
    """The structure with literal group counts (> 1) read from a `groups` parameter instead,
    and that count; unchanged, None when the convs have no or several such counts."""
    counts = {
        s.groups.value
        for s in residual
        if isinstance(s, ConvShape) and isinstance(s.groups, Literal) and s.groups.value > 1
    }
    if len(counts) != 1:
        return residual, None
    out = tuple(
        replace(s, groups=Param("groups"))
        if isinstance(s, ConvShape) and isinstance(s.groups, Literal) and s.groups.value > 1
        else s
        for s in residual
    )
    return out, counts.pop()


@dataclass(frozen=True, slots=True)
class BlockClass:
    """One generated block class: a family with one op structure, and the blocks built from it."""

    name: str
    family: Family
    residual: tuple[Shape, ...]
    shortcut: tuple[Shape, ...]  # () when no block of the class projects its shortcut
    merge: tuple[Shape, ...]
    blocks: tuple[str, ...]  # block names ("layer1.0") built from this class
    groups: dict  # block name -> its group count, where the class takes `groups`

    @property
    def params(self) -> tuple[str, ...]:
        """The block parameters the class body reads, in PARAM_TYPES order."""
        used = set()
        for s in self.residual + self.shortcut:
            values = (
                (s.in_channels, s.out_channels, s.groups, s.stride)
                if isinstance(s, ConvShape)
                else (s.channels,)
                if isinstance(s, NormShape)
                else (s.channels, s.reduced)
                if isinstance(s, SEShape)
                else ()
            )
            used.update(v.param for v in values if isinstance(v, Param))
        if self.shortcut:
            used.add("shortcut")
        return tuple(p for p in PARAM_TYPES if p in used)

    @property
    def convs(self) -> tuple[ConvShape, ...]:
        return tuple(s for s in self.residual if isinstance(s, ConvShape))

    @property
    def last_bn(self) -> str | None:
        last = [s.name for s in self.residual if isinstance(s, NormShape) and s.last]
        return last[0] if last else None

    @property
    def depthwise(self) -> bool:
        return any(s.depthwise for s in self.residual + self.shortcut if isinstance(s, ConvShape))

    def args(self, block: Block) -> list[str]:
        """The constructor arguments of one block: channels positional, the rest by keyword,
        defaults left out."""
        p = block.params
        if p.shortcut and not self.shortcut:
            raise CsnError(f"block {block.name} projects its shortcut but its class has none")
        values = {
            "in_channels": num(p.in_channels),
            "width": num(p.width),
            "out_channels": num(p.out_channels),
            "mid_a": num(p.mid_a or 0),
            "mid_b": num(p.mid_b or 0),
            "groups": num(self.groups.get(block.name, 1)),
            "se_width": num(p.se_width),
            "stride": dims(p.stride),
            "shortcut": repr(p.shortcut is True),
        }
        out = []
        for k in self.params:
            if k in PARAM_DEFAULTS:
                if values[k] != PARAM_DEFAULTS[k]:
                    out.append(f"{k}={values[k]}")
            else:
                out.append(values[k])
        return out


def _features(residual: tuple, shortcut: tuple = ()) -> list[str]:
    """Readable words that tell apart structures of one family."""
    names = {s.name for s in residual}
    words = []
    if [s.name for s in shortcut] == ["shortcut_conv"]:  # x3d: a projection without BN
        words.append("ConvShortcut")
    if any(n.endswith("_s") for n in names):
        words.append("2Plus1D")
    if "conv_p" in names:
        words.append("Project")
    if "relu_ip" in names:
        words.append("IPReLU")
    if "se" in names:
        words.append("SE")
    convs = [s for s in residual if isinstance(s, ConvShape)]
    if len(convs) > 2 and convs[0].stride == Param("stride"):  # strided at its first conv
        words.append("StrideFirst")
    groups = sorted(
        {s.groups.value for s in convs if isinstance(s.groups, Literal) and s.groups.value > 1}
    )
    words += [f"G{g}" for g in groups]
    return words


# The kernel each conv of a family has unless `kernel-a=` / `kernel-b=` say otherwise.
def _default_kernel(family: Family, slot: str) -> tuple[int, int, int]:
    return (1, 1, 1) if family.is_bottleneck and slot == "conv_a" else (3, 3, 3)


def _kernel_words(family: Family, residual: tuple) -> list[str]:
    """`A3x1x1`, `B1x3x3`: the kernels of conv_a and conv_b where not the family's default
    (the words that tell apart the classes of an alternating or per-stage kernel pattern)."""
    return [
        s.name[-1].upper() + "x".join(map(str, s.kernel))
        for s in residual
        if isinstance(s, ConvShape)
        and s.name in ("conv_a", "conv_b")
        and s.kernel != _default_kernel(family, s.name)
    ]


def block_classes(low: LoweredNetwork) -> tuple[BlockClass, ...]:
    """Group the network's blocks into classes, in order of first use.

    Blocks share a class when they have the same family and op structure (names, kinds,
    kernels, paddings, literal values and parameter references); structures that differ only
    by a literal group count share one class that takes `groups`; blocks with and without a
    projection shortcut share one class that takes `shortcut`.
    """
    found = []  # (family, residual, shortcut, merge, block name, group count or None)
    for block in low.blocks():
        residual = tuple(op_shape(op, block) for op in block.residual)
        shortcut = tuple(op_shape(op, block) for op in block.shortcut)
        merge = tuple(op_shape(op, block) for op in block.merge)
        if [s.kind for s in merge] != ["add", "relu"]:
            raise CsnError(f"block {block.name} does not end in add + relu")
        names = [s.name for s in shortcut]
        if names not in ([], ["shortcut_conv", "shortcut_bn"], ["shortcut_conv"]):
            raise CsnError(f"block {block.name}: a shortcut is shortcut_conv [+ shortcut_bn]")
        found.append((block.family, residual, shortcut, merge, block.name))

    # a literal group count becomes a parameter where one structure occurs with several
    counts: dict[tuple, set] = {}
    for family, residual, _, merge, _ in found:
        abstract, g = _abstract_groups(residual)
        if g is not None:
            counts.setdefault((family, abstract, merge), set()).add(g)
    groups: dict[tuple, dict] = {}
    for family, residual, shortcut, merge, name in found:
        abstract, g = _abstract_groups(residual)
        if g is not None and len(counts[(family, abstract, merge)]) > 1:
            residual = abstract
        entry = groups.setdefault((family, residual, merge), {"order": [], "groups": {}})
        entry["order"].append((name, shortcut))
        if residual is abstract and g is not None:
            entry["groups"][name] = g

    raw = []  # (family, residual, shortcut, merge, blocks, groups)
    for (family, residual, merge), g in groups.items():
        projections = list(dict.fromkeys(s for _, s in g["order"] if s))
        if len(projections) <= 1:
            sc = projections[0] if projections else ()
            raw.append((family, residual, sc, merge, tuple(n for n, _ in g["order"]), g["groups"]))
        else:  # different projections: one class each; identity blocks join the one with a
            # BN (x3d's blocks project without BN only where the width stays), else the first
            normed = [i for i, sc in enumerate(projections) if len(sc) == 2]
            home = normed[0] if normed else 0
            for i, sc in enumerate(projections):
                names = tuple(n for n, s in g["order"] if s == sc or (i == home and not s))
                gs = {n: v for n, v in g["groups"].items() if n in names}
                raw.append((family, residual, sc, merge, names, gs))

    per_family: dict[Family, int] = {}
    kernel_words: dict[Family, list[list[str]]] = {}
    for r in raw:
        per_family[r[0]] = per_family.get(r[0], 0) + 1
        kernel_words.setdefault(r[0], []).append(_kernel_words(r[0], r[1]))
    # a kernel every class of the family has tells none of them apart
    shared = {
        fam: set.intersection(*(set(w) for w in words)) for fam, words in kernel_words.items()
    }
    taken = set(RESERVED)
    out = []
    for family, residual, sc, merge, names, gs in raw:
        base = FAMILY_CLASS[family]
        if per_family[family] > 1:
            base += "".join(_features(residual, sc))
            base += "".join(w for w in _kernel_words(family, residual) if w not in shared[family])
        name, i = base, 2
        while name in taken:
            name, i = f"{base}{i}", i + 1
        taken.add(check_identifier(name))
        out.append(BlockClass(name, family, residual, sc, merge, names, gs))
    return tuple(out)


# -- the model ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlockRun:
    """Consecutive blocks of a stage built by the same constructor call."""

    cls: str
    args: tuple[str, ...]
    count: int


@dataclass(frozen=True, slots=True)
class StageLayout:
    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]  # after the pool, where there is one
    runs: tuple[BlockRun, ...]
    pool: MaxPool | None = None  # the max-pool after the blocks (`pool=`): an attribute `pool_name`
    pool_name: str | None = None


@dataclass(frozen=True, slots=True)
class Model:
    """What both printers print: one class name per block structure and the network's."""

    network: str  # the network class
    blocks: tuple[BlockClass, ...]
    stages: tuple[StageLayout, ...]
    num_features: int  # the classifier's input width
    depthwise: bool  # whether any conv is depthwise (the module then carries the kernels)
    squeeze_excite: bool = False  # whether any block has SE (the module then defines its class)


def model(low: LoweredNetwork) -> Model:
    check_module_name(low.name)
    classes = block_classes(low)
    network = class_name(low.name)
    if network in RESERVED or network in {c.name for c in classes}:
        network += "Net"  # a network named `stem`, `NETWORK` or `bottleneck-d`
    by_block = {name: c for c in classes for name in c.blocks}
    stages = []
    for stage in low.stages:
        parts = check_attr_path(stage.name)
        if len(parts) != 1:
            raise CsnError(f"stage name {stage.name!r} is not a plain attribute")
        runs: list[BlockRun] = []
        for i, block in enumerate(stage.blocks):
            if block.name != f"{stage.name}.{i}":
                raise CsnError(f"block {block.name!r} is not child {i} of {stage.name!r}")
            c = by_block[block.name]
            args = tuple(c.args(block))
            if runs and runs[-1].cls == c.name and runs[-1].args == args:
                runs[-1] = BlockRun(c.name, args, runs[-1].count + 1)
            else:
                runs.append(BlockRun(c.name, args, 1))
        pool = getattr(stage, "pool", None)
        pool_name = None
        if pool is not None:
            if not isinstance(pool, MaxPool):
                raise CsnError(f"the op after stage {stage.name!r} is not a max-pool")
            pool_name = check_attr_path(pool.name)
            if len(pool_name) != 1:
                raise CsnError(f"stage pool name {pool.name!r} is not a plain attribute")
            pool_name = check_identifier(pool_name[0])
        stages.append(
            StageLayout(parts[0], stage.in_shape, stage.out_shape, tuple(runs), pool, pool_name)
        )
    fc = low.head.ops[-1] if low.head.ops else None
    if fc is None or fc.kind != "linear":
        raise CsnError("the head must end in an fc layer")
    stem_dw = any(op.kind == "conv3d" and op_depthwise(op) for op in low.stem.ops)
    return Model(
        network=check_identifier(network),
        blocks=classes,
        stages=tuple(stages),
        num_features=int(fc.in_features),
        depthwise=stem_dw or any(c.depthwise for c in classes),
        squeeze_excite=any(isinstance(s, SEShape) for c in classes for s in c.residual),
    )


# -- the depthwise implementation -------------------------------------------------------------

# The kernel files (csnspec.kernels) a module with depthwise convs carries inline, per backend,
# and the name under which each lists its implementations.
KERNEL_SOURCES = {"torch": ("torch_depthwise", "triton_depthwise"), "flax": ("jax_depthwise",)}
_IMPLS_NAME = {"torch": "DEPTHWISE_IMPLS", "flax": "JAX_DEPTHWISE_IMPLS"}


@cache
def kernel_text(backend: str) -> str:
    """The kernels' source, pasted verbatim into a generated module that has depthwise convs."""
    from ..kernels import inline_source

    return "\n\n\n".join(inline_source(n).strip("\n") for n in KERNEL_SOURCES[backend])


# The kernel files of dense-conv helpers (csnspec.kernels) a module carries inline when its
# printer emits one of their classes (subsampling 1x1x1 convs; Flax: 3D convs as 2D ones).
CONV_SOURCES = {"torch": "torch_convs", "flax": "jax_convs"}


def conv_shapes(low: LoweredNetwork, m: Model) -> list[ConvShape]:
    """Every conv a printer constructs: the block classes' and the stem's."""
    shapes = [
        s for c in m.blocks for s in c.residual + c.shortcut + c.merge if isinstance(s, ConvShape)
    ]
    stem = [op for op in low.stem.ops if op.kind == "conv3d"]
    return shapes + [op_shape(op, None, op.name.rpartition(".")[0]) for op in stem]


def conv_text(backend: str) -> str:
    """The dense-conv helpers' source for `backend`, pasted verbatim into a module using one."""
    from ..kernels import inline_source

    return inline_source(CONV_SOURCES[backend]).strip("\n")


@cache
def depthwise_choices(backend: str) -> tuple[str, ...]:
    """The implementations a backend's depthwise convs can run with ("auto" first): read from
    the kernels' own text, so the compiler and the generated module never disagree."""
    for node in ast.parse(kernel_text(backend)).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == _IMPLS_NAME[backend] for t in node.targets
        ):
            return tuple(ast.literal_eval(node.value))
    raise CsnError(f"the {backend} depthwise kernels do not define {_IMPLS_NAME[backend]}")


def check_depthwise(backend: str, choice: str | None) -> str:
    """The depthwise implementation to fix at compile time ("auto" when not given)."""
    choices = depthwise_choices(backend)
    if choice is None:
        return "auto"
    if choice not in choices:
        raise CsnError(
            f"unknown depthwise implementation {ascii(choice)[:40]} for the {backend} backend",
            hint="choose one of " + ", ".join(choices),
        )
    return choice
