"""The PyTorch backend: a lowered network printed as one standalone, torch-only module.

The Python here turns IR nodes into source fragments (statements laid out the way `ruff
format` would lay them out); the jinja2 templates under `templates/` arrange them into the
module. Every op with weights becomes a submodule at the op's dotted IR name, so the model's
`state_dict()` keys are `<op.name>.weight` and so on.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ...errors import CsnError
from ...ops import (
    AvgPool,
    BatchNorm,
    Block,
    Conv3d,
    Dropout,
    GlobalAvgPool,
    Linear,
    LoweredNetwork,
    MaxPool,
    ReLU,
)
from .. import common
from ..common import check_attr_path, dims, num, shape_text

LINE = 88  # ruff's default; the output is formatted under it and under the repo's 100

# Names the generated module defines itself; a block or network class must not take them.
_RESERVED = {"Stem", "Head", "build", "load_weights", "torch", "nn"}
_RESERVED |= {"NETWORK", "SPEC_SHA256", "INPUT_SHAPE"}


@cache
def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(low: LoweredNetwork) -> str:
    """The source of the generated PyTorch module for a lowered network."""
    if not isinstance(low, LoweredNetwork):
        raise TypeError(f"render() takes a LoweredNetwork, not {type(low).__name__}")
    head = common.header(low)  # validates the network name first
    classes = common.block_classes(low, reserved=_RESERVED)
    net_class = common.class_name(low.name)
    if net_class in _RESERVED or net_class in {c.name for c in classes}:
        net_class += "Net"  # a network named `stem` or `bottleneck-d`
    return (
        _environment()
        .get_template("module.py.j2")
        .render(
            h=head,
            thousands=common.thousands,
            gflops=f"{head.flops / 1e9:.2f}",
            mparams=f"{head.params / 1e6:.2f}",
            input_dims=dims(low.input_shape),
            in_channels=num(low.input_shape[0]),
            stem_out=shape_text(low.stem.out_shape),
            net_class=net_class,
            stem=_stem(low),
            blocks=[_block_class(c) for c in classes],
            stages=_stages(low, classes),
            head=_head(low),
            build=_build_signature(head.classes),
            zero_init=_zero_init(classes),
            make_model=wrap(
                f"model = {net_class}",
                ["num_classes", "zero_init_last_bn=zero_init_last_bn"],
                "",
                4,
            ),
        )
    )


# -- layout ---------------------------------------------------------------------------------


def wrap(head: str, args, tail: str = "", indent: int = 0) -> str:
    """`head(args)tail` on one line if it fits, else one argument per line (magic comma)."""
    pad = " " * indent
    one = f"{pad}{head}({', '.join(args)}){tail}"
    if len(one) <= LINE or not args:
        return one
    inner = " " * (indent + 4)
    return "\n".join([f"{pad}{head}(", *(f"{inner}{a}," for a in args), f"{pad}){tail}"])


def commented(stmt: str, comment: str | None, indent: int) -> str:
    """A statement with a trailing comment, or the comment on the line above if too long."""
    pad = " " * indent
    if not comment:
        return pad + stmt
    if len(pad + stmt) + 4 + len(comment) <= LINE:
        return f"{pad}{stmt}  # {comment}"
    return f"{pad}# {comment}\n{pad}{stmt}"


def _assign(attr: str, call: str, args, indent: int = 8) -> str:
    return wrap(f"self.{common.check_identifier(attr)} = {call}", args, indent=indent)


# -- op printers ----------------------------------------------------------------------------

_STRIDE = {
    "stride": "stride",
    "stride_t": "(stride[0], 1, 1)",
    "stride_hw": "(1, stride[1], stride[2])",
}


def _value(v) -> str:
    """A structure value (csnspec.backends.common._ref): a parameter name or a literal."""
    if isinstance(v, str):
        return _STRIDE.get(v, v)
    literal = v[1]
    return dims(literal) if isinstance(literal, tuple) else num(literal)


def _conv_args(cin, cout, kernel, stride, padding, groups, bias) -> list[str]:
    """nn.Conv3d arguments, leaving out the ones at PyTorch's default."""
    args = [cin, cout, f"kernel_size={dims(kernel)}"]
    if stride != "(1, 1, 1)":
        args.append(f"stride={stride}")
    if tuple(padding) != (0, 0, 0):
        args.append(f"padding={dims(padding)}")
    if groups != "1":
        args.append(f"groups={groups}")
    if bias is False:
        args.append("bias=False")
    elif bias is not True:
        raise CsnError(f"a conv's bias flag must be True or False, not {ascii(bias)[:40]}")
    return args


def _bn_args(channels: str, eps, momentum) -> list[str]:
    return [channels, f"eps={num(eps)}", f"momentum={num(momentum)}"]


def _conv_comment(s) -> str | None:
    """Why a block conv looks the way it does, from its structure."""
    _, name, kernel, _, cin, cout, groups, _, _ = s
    words = []
    if isinstance(groups, str) and groups in (cin, cout):
        words.append("depthwise (one filter per channel)")
    elif isinstance(groups, tuple) and groups[1] > 1:
        words.append(f"grouped ({num(groups[1])} groups)")
    if name.endswith("_s") and kernel[0] == 1:
        words.append("the spatial half of the (2+1)D split")
    elif name.endswith("_t") and kernel[1:] == (1, 1):
        words.append("the temporal half of the (2+1)D split")
    if name == "conv_p":
        words.append("to the block's new width: a depthwise conv cannot change it")
    if name == "conv_ip":
        words.append("keeps channel interactions ahead of the depthwise conv (ip-CSN)")
    return ", ".join(words) or None


def _docstring(summary: str, detail: str, indent: int) -> str:
    """A one-line docstring `summary: detail.` if it fits, else summary and a detail line."""
    one = f"{summary}: {detail}."
    if indent + len(one) + 6 <= LINE:
        return one
    pad = " " * indent
    return f"{summary}.\n\n{pad}{detail[0].upper()}{detail[1:]}.\n{pad}"


def _block_class(c: common.BlockClass) -> dict:
    init: list[str] = []
    for s in c.residual:
        init.append(_struct_stmt(s))
    shortcut = [_struct_stmt(s, indent=12) for s in c.shortcut]
    if shortcut:
        kernel = shape_text(c.shortcut[0][2])
        shortcut.insert(
            0, f"{' ' * 12}# a {kernel} projection where the block changes width or resolution"
        )
    merge = [_struct_stmt(s) for s in c.merge if s[0] == "relu"]
    last = [s[1] for s in c.residual if s[0] == "batchnorm" and s[5]]
    kernels = [s[2] for s in c.residual if s[0] == "conv3d"]
    summary = ", ".join(shape_text(k) for k in kernels)
    fig = common.FAMILY_FIGURE[c.family]
    return {
        "name": c.name,
        "doc": _docstring(f"A {c.family.value} block ({fig})", f"{summary} convs", 4),
        "signature": wrap(
            "def __init__", ["self", *(f"{p}: {_PARAM_TYPES[p]}" for p in c.params)], " -> None:", 4
        ),
        "init": init,
        "shortcut": shortcut,
        "merge": merge,
        "merge_relu": c.merge[1][1],
        "shortcut_forward": _nest([s[1] for s in c.shortcut], "x"),
        "forward": _block_forward(c),
        "last_bn": last[0] if last else None,
        "params": c.params,
    }


_PARAM_TYPES = {
    "in_channels": "int",
    "width": "int",
    "out_channels": "int",
    "stride": "tuple[int, int, int]",
    "shortcut": "bool",
}


def _struct_stmt(s, indent: int = 8) -> str:
    """The __init__ statement of one op structure of a block class."""
    kind, name = s[0], s[1]
    if kind == "conv3d":
        _, _, kernel, padding, cin, cout, groups, stride, bias = s
        args = _conv_args(
            _value(cin), _value(cout), kernel, _value(stride), padding, _value(groups), bias
        )
        stmt = _assign(name, "nn.Conv3d", args, indent)
        why = _conv_comment(s)
        return f"{' ' * indent}# {why}\n{stmt}" if why else stmt
    if kind == "batchnorm":
        return _assign(name, "nn.BatchNorm3d", _bn_args(_value(s[2]), s[3], s[4]), indent)
    if kind == "relu":
        return _assign(name, "nn.ReLU", ["inplace=True"], indent)
    raise CsnError(f"cannot print a {kind} op in a block class")


def _lines(ops, names, first_input: str, var: str, indent: int, comments=None) -> list[str]:
    """Forward statements: one per conv (conv, its BN, its ReLU) or other op."""
    chains: list[list[int]] = []
    for i, op in enumerate(ops):
        joins = chains and op.kind in ("batchnorm", "relu") and ops[chains[-1][-1]].kind != "relu"
        if joins and not (op.kind == "batchnorm" and ops[chains[-1][-1]].kind == "batchnorm"):
            chains[-1].append(i)
        else:
            chains.append([i])
    out, src = [], first_input
    for chain in chains:
        expr = src
        for i in chain:
            expr = f"self.{names[i]}({expr})"
        if ops[chain[-1]].kind == "global_avgpool":
            expr += ".flatten(1)"  # AdaptiveAvgPool3d keeps 1x1x1; the IR's shape is (C,)
        comment = comments(ops[chain[-1]]) if comments else None
        out.append(commented(f"{var} = {expr}", comment, indent))
        src = var
    return out


def _returning(lines: list[str]) -> list[str]:
    """The statements with the last assignment `x = ...` turned into `return ...`."""
    *rest, last = lines
    head, _, stmt = last.rpartition("\n")  # a comment may sit on the line above
    indent = stmt[: len(stmt) - len(stmt.lstrip())]
    stmt = indent + "return " + stmt.lstrip()[len("x = ") :]
    return [*rest, f"{head}\n{stmt}" if head else stmt]


def _nest(names, arg: str) -> str:
    """self.b(self.a(arg)) for names [a, b]."""
    for name in names:
        arg = f"self.{name}({arg})"
    return arg


class _Kind:
    """A stand-in op for the chain layout of a block class (only `kind` matters)."""

    __slots__ = ("kind",)

    def __init__(self, kind):
        self.kind = kind


def _block_forward(c: common.BlockClass) -> list[str]:
    ops = [_Kind(s[0]) for s in c.residual]
    return _lines(ops, [s[1] for s in c.residual], "x", "out", 8)


# -- stem, stages, head ---------------------------------------------------------------------


def _local(op, prefix: str) -> str:
    parts = check_attr_path(op.name)
    if len(parts) != 2 or parts[0] != prefix:
        raise CsnError(f"op {op.name!r} is not a direct child of {prefix!r}")
    return common.check_identifier(parts[1])


def _op_stmt(op, attr: str) -> str:
    """The __init__ statement of one stem or head op (all values literal)."""
    if isinstance(op, Conv3d):
        if op.in_ref or op.out_ref or op.groups_ref or op.stride_ref:
            raise CsnError(f"{op.name} reads block parameters outside a block")
        args = _conv_args(
            num(op.in_channels),
            num(op.out_channels),
            op.kernel,
            dims(op.stride),
            op.padding,
            num(op.groups),
            op.bias,
        )
        return _assign(attr, "nn.Conv3d", args)
    if isinstance(op, BatchNorm):
        return _assign(attr, "nn.BatchNorm3d", _bn_args(num(op.channels), op.eps, op.momentum))
    if isinstance(op, ReLU):
        return _assign(attr, "nn.ReLU", ["inplace=True"])
    if isinstance(op, MaxPool):
        args = [dims(op.kernel), f"stride={dims(op.stride)}"]
        if tuple(op.padding) != (0, 0, 0):
            args.append(f"padding={dims(op.padding)}")
        return _assign(attr, "nn.MaxPool3d", args)
    if isinstance(op, AvgPool):
        return _assign(attr, "nn.AvgPool3d", [dims(op.kernel), "stride=1"])
    if isinstance(op, GlobalAvgPool):
        return _assign(attr, "nn.AdaptiveAvgPool3d", ["1"])
    if isinstance(op, Dropout):
        return _assign(attr, "nn.Dropout", [f"p={num(op.p)}"])
    if isinstance(op, Linear):
        args = [num(op.in_features), "num_classes"]
        if not op.bias:
            args.append("bias=False")
        return _assign(attr, "nn.Linear", args)
    raise CsnError(f"cannot print a {op.kind} op in the stem or head")


def _describe(op) -> str:
    if isinstance(op, Conv3d):
        return f"conv {shape_text(op.kernel)}"
    if isinstance(op, MaxPool):
        return f"max-pool {shape_text(op.kernel)}"
    return {"batchnorm": "BN", "relu": "ReLU"}.get(op.kind, op.kind)


def _stem(low: LoweredNetwork) -> dict:
    ops = low.stem.ops
    names = [_local(op, "stem") for op in ops]
    parts = []
    for op in ops:  # "conv 3x7x7 + BN + ReLU, max-pool 1x3x3"
        text = _describe(op)
        parts.append(f" + {text}" if op.kind in ("batchnorm", "relu") else f", {text}")
    return {
        "doc": "The stem: " + ("".join(parts)[2:] if parts else "no layers") + ".",
        "init": [_op_stmt(op, n) for op, n in zip(ops, names)],
        # `stem none`: no Stem class at all (the network uses nn.Identity)
        "forward": (
            _returning(_lines(ops, names, "x", "x", 8, lambda op: shape_text(op.out_shape)))
            if ops
            else []
        ),
    }


def _head(low: LoweredNetwork) -> dict:
    ops = low.head.ops
    names = [_local(op, "head") for op in ops]
    if not ops or not isinstance(ops[-1], Linear):
        raise CsnError("the head must end in an fc layer")

    def comment(op):
        return "num_classes" if isinstance(op, Linear) else shape_text(op.out_shape)

    body = _returning(_lines(ops, names, "x", "x", 8, comment))
    parts = []
    for op in ops:
        if isinstance(op, AvgPool):
            parts.append(f"average pool {shape_text(op.kernel)} (stride 1)")
        elif isinstance(op, GlobalAvgPool):
            parts.append("global average pool")
        elif isinstance(op, Dropout):
            parts.append(f"dropout {num(op.p)}")
        elif isinstance(op, Linear):
            parts.append("linear classifier")
    return {
        "doc": _docstring("The classifier head", ", ".join(parts), 4),
        "init": [_op_stmt(op, n) for op, n in zip(ops, names)],
        "forward": body,
    }


def _stages(low: LoweredNetwork, classes) -> list[dict]:
    by_block = {name: c for c in classes for name in c.blocks}
    out = []
    for stage in low.stages:
        parts = check_attr_path(stage.name)
        if len(parts) != 1:
            raise CsnError(f"stage name {stage.name!r} is not a plain attribute")
        items = []
        for i, block in enumerate(stage.blocks):
            if block.name != f"{stage.name}.{i}":
                raise CsnError(f"block {block.name!r} is not child {i} of {stage.name!r}")
            items.append(_construct(block, by_block[block.name]))
        out.append(
            {
                "name": parts[0],
                "comment": f"{shape_text(stage.in_shape)} -> {shape_text(stage.out_shape)}",
                "blocks": items,
                "out": shape_text(stage.out_shape),
            }
        )
    return out


def _construct(block: Block, c: common.BlockClass) -> str:
    p = block.params
    values = {
        "in_channels": num(p.in_channels),
        "width": num(p.width),
        "out_channels": num(p.out_channels),
        "stride": f"stride={dims(p.stride)}",
        "shortcut": f"shortcut={p.shortcut is True}",
    }
    if p.shortcut and not c.shortcut:
        raise CsnError(f"block {block.name} projects its shortcut but its class has none")
    return wrap(c.name, [values[k] for k in c.params], ",", 12)


def _zero_init(classes) -> list[str]:
    """`if isinstance(m, (A, B)): nn.init.zeros_(m.bn_c.weight)`, one branch per BN name."""
    by_bn: dict[str, list[str]] = {}
    for c in classes:
        last = [s[1] for s in c.residual if s[0] == "batchnorm" and s[5]]
        if last:
            by_bn.setdefault(last[0], []).append(c.name)
    if not by_bn:
        return [" " * 16 + "pass  # no block has a BN to zero"]
    lines = []
    for i, (bn, names) in enumerate(by_bn.items()):
        kinds = names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"
        lines.append(wrap(f"{'if' if i == 0 else 'elif'} isinstance", ["m", kinds], ":", 16))
        lines.append(" " * 20 + f"nn.init.zeros_(m.{bn}.weight)")
    return lines


def _build_signature(classes: int) -> str:
    return wrap(
        "def build",
        [
            f"num_classes: int = {num(classes)}",
            "*",
            "zero_init_last_bn: bool = False",
            "channels_last: bool = False",
            "compile: bool = False",
            "weights: str | None = None",
            "device: torch.device | str | None = None",
        ],
        " -> nn.Module:",
    )
