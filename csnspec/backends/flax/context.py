"""The template context of the Flax backend: the lowered IR as printable, validated pieces.

Every number printed comes from an IR node and every name passes `backends.common`'s checks
before it reaches the source, so a spec built around the validators (`model_construct`) cannot
inject code. Statements are laid out as `ruff format` lays them out at line length 88 and 100:
one line when it fits in 88, else one argument per line with a magic trailing comma.
"""

from __future__ import annotations

from ...errors import CsnError
from ...ops import (
    AvgPool,
    BatchNorm,
    Conv3d,
    Dropout,
    GlobalAvgPool,
    Linear,
    LoweredNetwork,
    MaxPool,
    ReLU,
)
from .. import common
from ..common import check_attr_path, check_identifier, dims, num, shape_text

LINE = 88
# Names the generated module defines itself; a block or network class must not take them.
RESERVED = {"Stem", "Head", "build", "from_torch_layout", "jax", "nnx"}
STRIDE = {
    "stride": "stride",
    "stride_t": "(stride[0], 1, 1)",
    "stride_hw": "(1, stride[1], stride[2])",
}
PARAM_TYPES = {
    "in_channels": "int",
    "width": "int",
    "out_channels": "int",
    "stride": "tuple[int, int, int]",
    "shortcut": "bool",
}


# -- layout ----------------------------------------------------------------------------------


def wrap(head: str, args, indent: int, tail: str = "") -> str:
    """`head(args)tail` on one line if it fits, else one argument per line (magic comma)."""
    pad = " " * indent
    one = f"{pad}{head}({', '.join(args)}){tail}"
    if len(one) <= LINE:
        return one
    inner = " " * (indent + 4)
    return "\n".join([f"{pad}{head}(", *(f"{inner}{a}," for a in args), f"{pad}){tail}"])


def docstring(text: str, indent: int) -> str:
    """A docstring body: one line if it fits, else wrapped with the quotes on their own line."""
    if indent + len(text) + 6 <= LINE:
        return text
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and indent + len(line) + 1 + len(w) > LINE:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    lines.append(line)
    if len(lines) == 1:  # ruff keeps a one-line docstring on one line, however long
        return text
    pad = " " * indent
    return f"\n{pad}".join(lines) + f"\n{pad}"


def pads(values) -> str:
    """Explicit (low, high) padding pairs, as PyTorch pads (never 'SAME')."""
    return "(" + ", ".join(f"({num(p)}, {num(p)})" for p in values) + ")"


# -- ops -------------------------------------------------------------------------------------


def _value(v) -> str:
    """A structure value (`common._ref`): a block parameter by name, or the literal."""
    if isinstance(v, str):
        return STRIDE.get(v, v)
    literal = v[1]
    return dims(literal) if isinstance(literal, tuple) else num(literal)


def conv(
    attr: str, cin: str, cout: str, kernel, stride: str, padding, groups: str, bias, indent: int
) -> str:
    args = [cin, cout, dims(kernel), f"strides={stride}", f"padding={pads(padding)}"]
    if groups != "1":
        args.append(f"feature_group_count={groups}")
    args += [f"use_bias={bool(bias)!r}", "rngs=rngs"]
    return wrap(f"self.{check_identifier(attr)} = nnx.Conv", args, indent)


def batchnorm(attr: str, channels: str, eps, momentum, indent: int) -> str:
    # Flax's running average keeps m' of the old value where PyTorch keeps 1 - m, and Flax's
    # default m' (0.99) is not PyTorch's 0.9, so it is always passed. Two-pass variance, as
    # PyTorch computes it, keeps the two backends within float32 rounding of each other.
    args = [
        channels,
        f"epsilon={num(eps)}",
        f"momentum={num(1.0 - momentum)}",
        "use_fast_variance=False",
        "rngs=rngs",
    ]
    return wrap(f"self.{check_identifier(attr)} = nnx.BatchNorm", args, indent)


def _op_init(op, attr: str, indent: int) -> str | None:
    """The constructor line of a stem or head op (literal values only)."""
    if isinstance(op, Conv3d):
        return conv(
            attr,
            num(op.in_channels),
            num(op.out_channels),
            op.kernel,
            dims(op.stride),
            op.padding,
            num(op.groups),
            op.bias,
            indent,
        )
    if isinstance(op, BatchNorm):
        return batchnorm(attr, num(op.channels), op.eps, op.momentum, indent)
    if isinstance(op, Dropout):
        return wrap(
            f"self.{check_identifier(attr)} = nnx.Dropout", [num(op.p), "rngs=rngs"], indent
        )
    if isinstance(op, Linear):
        args = [num(op.in_features), "num_classes", f"use_bias={bool(op.bias)!r}", "rngs=rngs"]
        return wrap(f"self.{check_identifier(attr)} = nnx.Linear", args, indent)
    return None


def chain(steps, src: str, dst: str, indent: int) -> list[str]:
    """Forward statements for a run of (kind, attr, op) steps: a line per conv and what follows."""
    lines, expr, pad = [], src, " " * indent
    for i, (kind, attr, op) in enumerate(steps):
        if kind in ("conv3d", "maxpool") and i > 0 and expr != dst:
            lines.append(f"{pad}{dst} = {expr}")
            expr = dst
        if kind in ("conv3d", "batchnorm"):
            expr = f"self.{check_identifier(attr)}({expr})"
        elif kind == "relu":
            expr = f"nnx.relu({expr})"
        elif kind == "maxpool":
            args = [
                expr,
                dims(op.kernel),
                f"strides={dims(op.stride)}",
                f"padding={pads(op.padding)}",
            ]
            lines.append(wrap(f"{dst} = nnx.max_pool", args, indent))
            expr = dst
        else:
            raise CsnError(f"the Flax backend cannot place a {kind} op here")
    if expr != dst or not lines:
        lines.append(f"{pad}{dst} = {expr}")
    return lines


# -- blocks ----------------------------------------------------------------------------------


def _struct_init(s, indent: int) -> str | None:
    if s[0] == "conv3d":
        _, name, kernel, padding, cin, cout, groups, stride, bias = s
        return conv(
            name,
            _value(cin),
            _value(cout),
            kernel,
            _value(stride),
            padding,
            _value(groups),
            bias,
            indent,
        )
    if s[0] == "batchnorm":
        _, name, channels, eps, momentum, _last = s
        return batchnorm(name, _value(channels), eps, momentum, indent)
    return None


def _describe(c: common.BlockClass) -> str:
    parts = []
    for s in c.residual:
        if s[0] == "conv3d":
            text = "x".join(map(num, s[2]))
            if isinstance(s[6], str):
                text += " depthwise"
            elif s[6][1] > 1:
                text += f" {num(s[6][1])}-group"
            parts.append(text)
    figure = common.FAMILY_FIGURE[c.family]
    return f"A {c.family.value} block ({figure}): {' -> '.join(parts)} convs, each with BatchNorm."


def block_class(c: common.BlockClass) -> dict:
    forward = chain([(s[0], s[1], None) for s in c.residual], "x", "out", 8)
    return {
        "name": check_identifier(c.name),
        "doc": docstring(_describe(c), 4),
        "params": [(check_identifier(p), PARAM_TYPES[p]) for p in c.params],
        "init": [line for s in c.residual if (line := _struct_init(s, 8))],
        "shortcut": [line for s in c.shortcut if (line := _struct_init(s, 12))],
        "forward": forward,
    }


def _check_shortcut(c: common.BlockClass) -> None:
    names = [s[1] for s in c.shortcut]
    if names not in ([], ["shortcut_conv", "shortcut_bn"]):
        raise CsnError(f"class {c.name}: the Flax backend expects shortcut_conv + shortcut_bn")


def _construct(c: common.BlockClass, block) -> str:
    p = block.params
    values = {
        "in_channels": num(p.in_channels),
        "width": num(p.width),
        "out_channels": num(p.out_channels),
        "stride": dims(p.stride),
        "shortcut": repr(bool(p.shortcut)),
    }
    return wrap(c.name, [values[k] for k in c.params] + ["rngs=rngs"], 16, tail=",")


# -- stem, head, model -----------------------------------------------------------------------


def _local(op, prefix: str) -> str:
    parts = check_attr_path(op.name)
    if len(parts) != 2 or parts[0] != prefix:
        raise CsnError(f"op {op.name!r} is not directly under {prefix!r}")
    return parts[1]


def _stem(low: LoweredNetwork) -> dict | None:
    if not low.stem.ops:
        return None
    init, steps, parts = [], [], []
    for op in low.stem.ops:
        attr = _local(op, "stem")
        if (line := _op_init(op, attr, 8)) is not None:
            init.append(line)
        if isinstance(op, (Conv3d, MaxPool)):
            parts.append(
                f"{'conv' if isinstance(op, Conv3d) else 'max-pool'} {'x'.join(map(num, op.kernel))}"
            )
        if not isinstance(op, (Conv3d, BatchNorm, ReLU, MaxPool)):
            raise CsnError(f"the Flax backend cannot place a {op.kind} op in the stem")
        steps.append((op.kind, attr, op))
    forward = chain(steps, "x", "x", 8)
    forward[-1] = (
        forward[-1].replace("x = ", "return ", 1)
        if forward[-1].startswith("        x = ")
        else forward[-1]
    )
    doc = (
        "The stem: "
        + ", ".join(parts)
        + (", each conv with BatchNorm and ReLU" if init else "")
        + "."
    )
    return {"init": init, "forward": forward, "doc": docstring(doc, 4)}


def _head(low: LoweredNetwork) -> dict:
    init, forward, parts = [], [], []
    for i, op in enumerate(low.head.ops):
        attr = _local(op, "head")
        if (line := _op_init(op, attr, 8)) is not None:
            init.append(line)
        if isinstance(op, AvgPool):
            args = ["x", dims(op.kernel), "strides=(1, 1, 1)", f"padding={pads((0, 0, 0))}"]
            forward.append(wrap("x = nnx.avg_pool", args, 8))
            parts.append(f"average pool {'x'.join(map(num, op.kernel))}")
        elif isinstance(op, GlobalAvgPool):
            forward.append("        x = x.mean(axis=(1, 2, 3))")
            parts.append("global average")
        elif isinstance(op, Dropout):
            forward.append(f"        x = self.{attr}(x)")
            parts.append(f"dropout {num(op.p)}")
        elif isinstance(op, Linear) and i == len(low.head.ops) - 1:
            forward.append(f"        return self.{attr}(x)")
            parts.append("fc")
        else:
            raise CsnError(f"the Flax backend cannot place a {op.kind} op in the head")
    return {
        "init": init,
        "forward": forward,
        "doc": docstring("The head: " + " -> ".join(parts) + ".", 4),
    }


def build(low: LoweredNetwork) -> dict:
    h = common.header(low)  # validates the network name first
    model = common.class_name(low.name)
    if model in RESERVED:
        model += "Net"
    classes = common.block_classes(low, reserved=RESERVED | {model})
    for c in classes:
        _check_shortcut(c)
    of_block = {name: c for c in classes for name in c.blocks}
    stages = []
    for stage in low.stages:
        for i, block in enumerate(stage.blocks):
            if block.name != f"{stage.name}.{i}":
                raise CsnError(f"block {block.name!r} is not {stage.name}.{i}")
        stages.append(
            {
                "name": check_identifier(stage.name),
                "out": shape_text(stage.out_shape),
                "blocks": [_construct(of_block[b.name], b) for b in stage.blocks],
            }
        )
    return {
        "h": h,
        "thousands": common.thousands,
        "gflops": f"{h.flops / 1e9:.2f}",
        "mparams": f"{h.params / 1e6:.2f}",
        "input_dims": dims(low.input_shape),
        "model": check_identifier(model),
        "classes": [block_class(c) for c in classes],
        "stem": _stem(low),
        "stages": stages,
        "head": _head(low),
    }
