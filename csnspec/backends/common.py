"""What every backend needs besides its templates: safe identifiers and numbers, the header
facts, and the grouping of a network's blocks into one class per block structure.

Defence in depth: the spec IR already validates network names, but a `Network` can be built
with `model_construct` (no validation), so nothing from a spec reaches a template unless it
passes the checks here again. Backend-neutral: no torch, no jax.
"""

from __future__ import annotations

import hashlib
import keyword
import math
import re
from dataclasses import dataclass

from ..errors import CsnError
from ..ops import Add, BatchNorm, Block, Conv3d, LoweredNetwork, ReLU
from ..spec import Family

# The spec IR's own alphabet for network names (csnspec.spec.NAME_RE), restated here so the
# backends do not trust a caller that skipped validation. ASCII only: no look-alike letters.
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}\Z", re.ASCII)
_ATTR_RE = re.compile(r"[a-z][a-z0-9_]{0,63}\Z", re.ASCII)  # op names: "conv_a", "bn1"


def check_network_name(name) -> str:
    """The network name if it is safe to print in generated code; CsnError otherwise."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise CsnError(
            f"network name {ascii(name)[:80]} cannot be used in generated code",
            hint="a network name starts with a letter and has at most 64 ASCII letters, "
            "digits, '-' or '_'",
        )
    if name.startswith("__") or keyword.iskeyword(module_stem(name)):
        raise CsnError(f"network name {name!r} is reserved in Python")
    return name


def module_stem(name: str) -> str:
    """The module (file) name of a network: `ir-csn-50` -> `ir_csn_50`."""
    return name.replace("-", "_")


def class_name(name: str) -> str:
    """The CamelCase class name of a network: `ir-csn-50` -> `IrCsn50`, `a-50-2b` -> `A50_2b`."""
    out = ""
    for part in re.split(r"[-_]+", check_network_name(name)):
        if not part:
            continue
        if out and out[-1].isdigit() and part[0].isdigit():
            out += "_"  # keep `50` and `2plus1d` apart
        out += part[0].upper() + part[1:]
    return check_identifier(out)


def check_identifier(text) -> str:
    """`text` if it is a plain ASCII Python identifier (not a keyword, not a dunder)."""
    if (
        not isinstance(text, str)
        or not text.isascii()
        or not text.isidentifier()
        or keyword.iskeyword(text)
        or text.startswith("__")
    ):
        raise CsnError(f"{ascii(text)[:80]} is not a safe identifier for generated code")
    return text


def check_attr_path(name) -> tuple[str, ...]:
    """The parts of an op's dotted name ("layer2.0.conv_b"), each an attribute or an index."""
    parts = tuple(name.split(".")) if isinstance(name, str) else ()
    if not parts or not all(p.isdecimal() and p.isascii() or _ATTR_RE.match(p) for p in parts):
        raise CsnError(f"op name {ascii(name)[:80]} cannot be used in generated code")
    for p in parts:
        if not p.isdecimal():
            check_identifier(p)
    return parts


def num(value) -> str:
    """Python source for a number from the IR: ints as digits, floats with repr."""
    if type(value) is int:
        return str(value)
    if type(value) is float and math.isfinite(value):
        return repr(value)
    raise CsnError(f"{ascii(value)[:80]} is not a number that can be printed in generated code")


def dims(values) -> str:
    """A tuple literal of ints: (1, 3, 3)."""
    return "(" + ", ".join(num(v) for v in values) + ")"


def shape_text(shape) -> str:
    """A per-clip shape as text: 64x8x56x56."""
    return "x".join(num(v) for v in shape)


# -- header facts ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    """The facts every generated module states at its top."""

    network: str
    version: str
    spec_sha256: str
    input_shape: str
    classes: int
    flops: int
    params: int
    bn_params: int
    interactions: int
    activations: int


def header(low: LoweredNetwork) -> Header:
    from .. import __version__, analyse, format_spec

    check_network_name(low.spec.name)  # both: a LoweredNetwork can be built by hand too
    total = analyse(low).total
    digest = hashlib.sha256(format_spec(low.spec).encode("utf-8")).hexdigest()
    return Header(
        network=check_network_name(low.name),
        version=__version__,
        spec_sha256=digest,
        input_shape=shape_text(low.input_shape),
        classes=int(low.output_shape[0]),
        flops=total.flops,
        params=total.params,
        bn_params=total.bn_params,
        interactions=total.interactions,
        activations=total.activations,
    )


def thousands(n: int) -> str:
    """12,345,678."""
    return f"{int(n):,}"


# -- block classes --------------------------------------------------------------------------

FAMILY_CLASS = {
    Family.SIMPLE: "SimpleBlock",
    Family.SIMPLE_G: "SimpleGBlock",
    Family.SIMPLE_D: "SimpleDBlock",
    Family.BOTTLENECK: "Bottleneck",
    Family.BOTTLENECK_G: "BottleneckG",
    Family.BOTTLENECK_D: "BottleneckD",
    Family.BOTTLENECK_DG: "BottleneckDG",
    Family.BOTTLENECK_IP: "BottleneckIP",
}

FAMILY_FIGURE = {
    Family.SIMPLE: "Figure 3a",
    Family.SIMPLE_G: "Figure 3b",
    Family.SIMPLE_D: "Figure 3c",
    Family.BOTTLENECK: "Figure 4a",
    Family.BOTTLENECK_G: "Figure 4b, a ResNeXt block",
    Family.BOTTLENECK_D: "Figure 4c, ir-CSN",
    Family.BOTTLENECK_DG: "Figure 4d",
    Family.BOTTLENECK_IP: "Figure 2b, ip-CSN",
}

# Block parameters a value may read (csnspec.ops.Conv3d's *_ref fields).
BLOCK_PARAMS = ("in_channels", "width", "out_channels", "stride", "shortcut")
_REFS = {"in_channels", "width", "out_channels", "stride", "stride_t", "stride_hw"}


def local_name(op, block: Block) -> str:
    """An op's attribute name inside its block: "layer2.0.conv_b" -> "conv_b"."""
    parts = check_attr_path(op.name)
    if ".".join(parts[:-1]) != block.name:
        raise CsnError(f"op {op.name!r} is not inside block {block.name!r}")
    return parts[-1]


def _ref(ref, literal):
    """A value's structure: the block parameter it reads, or the literal itself."""
    if ref is None:
        return ("literal", literal)
    if ref not in _REFS:
        raise CsnError(f"unknown block parameter {ascii(ref)[:40]} in the lowered IR")
    return ref


def op_structure(op, block: Block) -> tuple:
    """What a class body prints for one op: everything but the block's own parameters."""
    name = local_name(op, block)
    if isinstance(op, Conv3d):
        return (
            "conv3d",
            name,
            tuple(op.kernel),
            tuple(op.padding),
            _ref(op.in_ref, op.in_channels),
            _ref(op.out_ref, op.out_channels),
            _ref(op.groups_ref, op.groups),
            _ref(op.stride_ref, tuple(op.stride)),
            op.bias,
        )
    if isinstance(op, BatchNorm):
        return ("batchnorm", name, _ref(op.channels_ref, op.channels), op.eps, op.momentum, op.last)
    if isinstance(op, (ReLU, Add)):
        return (op.kind, name)
    raise CsnError(f"a {op.kind} op cannot appear in a residual block ({op.name})")


@dataclass(frozen=True, slots=True)
class BlockClass:
    """One generated class: a block family with one op structure, and the blocks built from it."""

    name: str
    family: Family
    residual: tuple  # op structures, see op_structure
    shortcut: tuple  # () when no block of the class projects its shortcut
    merge: tuple
    blocks: tuple[str, ...]  # block names ("layer1.0") built from this class

    @property
    def params(self) -> tuple[str, ...]:
        """The block parameters the class body reads, in BlockParams order."""
        used = set()
        for s in self.residual + self.shortcut:
            for v in s[4:8] if s[0] == "conv3d" else s[2:3]:
                if isinstance(v, str):
                    used.add("stride" if v.startswith("stride") else v)
        if self.shortcut:
            used.add("shortcut")
        return tuple(p for p in BLOCK_PARAMS if p in used)


def _features(residual: tuple) -> list[str]:
    """Readable words that tell apart structures of one family."""
    names = {s[1] for s in residual}
    words = []
    if any(n.endswith("_s") for n in names):
        words.append("2Plus1D")
    if "conv_p" in names:
        words.append("Project")
    if "relu_ip" in names:
        words.append("IPReLU")
    convs = [s for s in residual if s[0] == "conv3d"]
    if len(convs) > 2 and convs[0][7] == "stride":  # a bottleneck strided at its first conv
        words.append("StrideFirst")
    groups = sorted({s[6][1] for s in convs if isinstance(s[6], tuple) and s[6][1] > 1})
    words += [f"G{g}" for g in groups]
    return words


def block_classes(low: LoweredNetwork, reserved=()) -> tuple[BlockClass, ...]:
    """Group the network's blocks into classes, in order of first use.

    Blocks share a class when they have the same family and the same op structure (names,
    kinds, kernels, paddings, literal values and parameter references); blocks with and
    without a projection shortcut share one class that takes `shortcut` as an argument.
    """
    groups: dict[tuple, dict] = {}
    for block in low.blocks():
        residual = tuple(op_structure(op, block) for op in block.residual)
        shortcut = tuple(op_structure(op, block) for op in block.shortcut)
        merge = tuple(op_structure(op, block) for op in block.merge)
        if [s[0] for s in merge] != ["add", "relu"]:
            raise CsnError(f"block {block.name} does not end in add + relu")
        g = groups.setdefault((block.family, residual, merge), {"shortcuts": {}, "order": []})
        g["shortcuts"].setdefault(shortcut, []).append(block.name)
        g["order"].append((block.name, shortcut))

    raw = []  # (family, residual, shortcut, merge, blocks)
    for (family, residual, merge), g in groups.items():
        projections = [s for s in g["shortcuts"] if s]
        if len(projections) <= 1:
            sc = projections[0] if projections else ()
            raw.append((family, residual, sc, merge, tuple(n for n, _ in g["order"])))
        else:  # different projections: one class each (identity blocks join the first)
            for i, sc in enumerate(projections):
                names = tuple(n for n, s in g["order"] if s == sc or (i == 0 and not s))
                raw.append((family, residual, sc, merge, names))

    per_family: dict[Family, list] = {}
    for r in raw:
        per_family.setdefault(r[0], []).append(r)
    taken = set(reserved)
    out = []
    for family, residual, sc, merge, names in raw:
        base = FAMILY_CLASS[family]
        if len(per_family[family]) > 1:
            base += "".join(_features(residual))
        name, i = base, 2
        while name in taken:
            name, i = f"{base}{i}", i + 1
        taken.add(check_identifier(name))
        out.append(BlockClass(name, family, residual, sc, merge, names))
    return tuple(out)
