"""The PyTorch backend: a lowered network printed as one standalone, torch-only module.

`csnspec.backends.emit` decides the classes, their names and parameters and the stage layout;
this module maps each op to its torch call, and the jinja2 templates under `templates/`
arrange the statements into the module. Every op with weights becomes a submodule at the op's
dotted IR name, so the model's `state_dict()` keys are `<op.name>.weight` and so on.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

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
from .. import common, emit
from ..common import check_identifier, commented, dims, docstring, num, shape_text, wrap
from ..emit import ActShape, BlockClass, ConvShape, Literal, NormShape, SEShape

BN_DEFAULTS = {"eps": 1e-5, "momentum": 0.1}  # nn.BatchNorm3d's


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


def render(low: LoweredNetwork, depthwise: str | None = None) -> str:
    """The source of the generated PyTorch module for a lowered network.

    depthwise: the implementation the module's depthwise convs run by default (one of
    `emit.DEPTHWISE_CHOICES["torch"]`; "auto" when None).
    """
    if not isinstance(low, LoweredNetwork):
        raise TypeError(f"render() takes a LoweredNetwork, not {type(low).__name__}")
    impl = emit.check_depthwise("torch", depthwise)
    head = common.header(low)  # validates the network name first
    m = emit.model(low)
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
            net_class=m.network,
            num_features=num(m.num_features),
            depthwise=impl if m.depthwise else None,
            squeeze_excite=m.squeeze_excite,
            kernels=emit.kernel_text("torch") if m.depthwise else "",
            convs=_conv_helpers(low, m),
            stem=_stem(low),
            blocks=[_block_class(c) for c in m.blocks],
            stages=[_stage(s) for s in m.stages],
            features=_features(low, m),
            head=_head(low),
            zero_init=_zero_init(m.blocks),
            make_model=wrap(
                f"model = {m.network}", ["num_classes", "zero_init_last_bn=zero_init_last_bn"], 4
            ),
        )
    )


# -- op calls -------------------------------------------------------------------------------


def _conv_helpers(low: LoweredNetwork, m: emit.Model) -> str:
    """The dense-conv helpers' text when a conv of the module is built with one, else ""."""
    uses = {conv_call(s)[0] for s in emit.conv_shapes(low, m)}
    return emit.conv_text("torch") if "PointwiseConv3d" in uses else ""


def conv_call(s: ConvShape) -> tuple[str, list[str]]:
    """The constructor and its arguments for a conv, leaving out PyTorch's defaults."""
    stride = s.stride.text
    if s.depthwise:
        args = [s.in_channels.text, f"kernel_size={dims(s.kernel)}"]
        if stride != "(1, 1, 1)":
            args.append(f"stride={stride}")
        if s.padding != (0, 0, 0):
            args.append(f"padding={dims(s.padding)}")
        return "DepthwiseConv3d", args
    if s.pointwise:
        args = [s.in_channels.text, s.out_channels.text]
        if stride != "(1, 1, 1)":
            args.append(f"stride={stride}")
        return "PointwiseConv3d", args if s.bias else [*args, "bias=False"]
    args = [s.in_channels.text, s.out_channels.text, f"kernel_size={dims(s.kernel)}"]
    if stride != "(1, 1, 1)":
        args.append(f"stride={stride}")
    if s.padding != (0, 0, 0):
        args.append(f"padding={dims(s.padding)}")
    if s.groups.text != "1":
        args.append(f"groups={s.groups.text}")
    if not s.bias:
        args.append("bias=False")
    return "nn.Conv3d", args


def bn_call(s: NormShape) -> tuple[str, list[str]]:
    args = [s.channels.text]
    for key, value in (("eps", s.eps), ("momentum", s.momentum)):
        if num(value) != num(BN_DEFAULTS[key]):
            args.append(f"{key}={num(value)}")
    return "nn.BatchNorm3d", args


def _assign(attr: str, call: tuple[str, list[str]], indent: int = 8) -> str:
    return wrap(f"self.{check_identifier(attr)} = {call[0]}", call[1], indent)


def _conv_comment(s: ConvShape) -> str | None:
    """Why a block conv looks the way it does, from its structure."""
    words = []
    if s.depthwise:
        words.append("depthwise (one filter per channel)")
    elif isinstance(s.groups, Literal) and s.groups.value > 1:
        words.append(f"grouped ({num(s.groups.value)} groups)")
    elif s.groups.text == "groups":
        words.append("grouped")
    if s.name.endswith("_s") and s.kernel[0] == 1:
        words.append("the spatial half of the (2+1)D split")
    elif s.name.endswith("_t") and s.kernel[1:] == (1, 1):
        words.append("the temporal half of the (2+1)D split")
    if s.name == "conv_p":
        words.append("to the block's new width: a depthwise conv cannot change it")
    if s.name == "conv_ip":
        words.append("keeps channel interactions ahead of the depthwise conv (ip-CSN)")
    return ", ".join(words) or None


def _shape_stmt(s, indent: int = 8, comment: bool = True) -> str:
    """The __init__ statement of one op of a block, stem or head."""
    if isinstance(s, ConvShape):
        stmt = _assign(s.name, conv_call(s), indent)
        why = _conv_comment(s) if comment else None
        return f"{' ' * indent}# {why}\n{stmt}" if why else stmt
    if isinstance(s, NormShape):
        return _assign(s.name, bn_call(s), indent)
    if isinstance(s, ActShape) and s.kind == "relu":
        return _assign(s.name, ("nn.ReLU", ["inplace=True"]), indent)
    if isinstance(s, ActShape) and s.kind == "swish":
        return _assign(s.name, ("nn.SiLU", []), indent)  # swish: x * sigmoid(x)
    if isinstance(s, SEShape):
        return _assign(s.name, ("SqueezeExcite", [s.channels.text, s.reduced.text]), indent)
    raise CsnError(f"cannot print a {s.kind} op in a block class")


# -- forward --------------------------------------------------------------------------------


def _lines(kinds, names, first_input: str, var: str, indent: int, comments=None) -> list[str]:
    """Forward statements: one per conv (conv, its BN, its ReLU) or other op."""
    chains: list[list[int]] = []
    for i, kind in enumerate(kinds):
        acts = ("relu", "swish")
        joins = chains and kind in ("batchnorm", *acts) and kinds[chains[-1][-1]] not in acts
        if joins and not (kind == "batchnorm" and kinds[chains[-1][-1]] == "batchnorm"):
            chains[-1].append(i)
        else:
            chains.append([i])
    out, src = [], first_input
    for chain in chains:
        expr = src
        for i in chain:
            expr = f"self.{names[i]}({expr})"
        if kinds[chain[-1]] == "global_avgpool":
            expr += ".flatten(1)"  # AdaptiveAvgPool3d keeps 1x1x1; the IR's shape is (C,)
        comment = comments(chain[-1]) if comments else None
        out.append(commented(f"{var} = {expr}", comment, indent))
        src = var
    return out


def _returning(lines: list[str]) -> list[str]:
    """The statements with the last assignment `x = ...` turned into `return ...`."""
    *rest, last = lines
    head, _, stmt = last.rpartition("\n")  # a comment may sit on the line above
    indent = stmt[: len(stmt) - len(stmt.lstrip())]
    stmt = indent + "return " + stmt.lstrip().split(" = ", 1)[1]
    return [*rest, f"{head}\n{stmt}" if head else stmt]


def _nest(names, arg: str) -> str:
    """self.b(self.a(arg)) for names [a, b]."""
    for name in names:
        arg = f"self.{name}({arg})"
    return arg


# -- blocks ---------------------------------------------------------------------------------


def _block_class(c: BlockClass) -> dict:
    shortcut = [_shape_stmt(s, indent=12) for s in c.shortcut]
    if shortcut:
        kernel = shape_text(c.shortcut[0].kernel)
        shortcut.insert(
            0, f"{' ' * 12}# a {kernel} projection where the block changes width or resolution"
        )
    summary = ", ".join(shape_text(s.kernel) for s in c.convs)
    fig = emit.FAMILY_FIGURE[c.family]
    params = [
        f"{p}: {emit.PARAM_TYPES[p]}"
        + (f" = {emit.PARAM_DEFAULTS[p]}" if p in emit.PARAM_DEFAULTS else "")
        for p in c.params
    ]
    return {
        "name": c.name,
        "doc": docstring(
            f"{emit.FAMILY_ARTICLE[c.family]} {c.family.value} block ({fig})", f"{summary} convs", 4
        ),
        "signature": wrap("def __init__", ["self", *params], 4, " -> None:"),
        "init": [_shape_stmt(s) for s in c.residual],
        "shortcut": shortcut,
        "merge": [_shape_stmt(s) for s in c.merge if s.kind == "relu"],
        "merge_relu": c.merge[1].name,
        # adding in place saves a tensor; only where autograd needs not the branch's output
        "add_in_place": c.residual[-1].kind in ("batchnorm", "conv3d"),
        "shortcut_names": [s.name for s in c.shortcut],
        "shortcut_forward": _nest([s.name for s in c.shortcut], "x"),
        "forward": _lines(
            [s.kind for s in c.residual], [s.name for s in c.residual], "x", "out", 8
        ),
    }


def _stage(s: emit.StageLayout) -> dict:
    items = []
    for run in s.runs:
        call = wrap(run.cls, list(run.args), 0)
        if run.count == 1:
            items.append(wrap(run.cls, list(run.args), 12, ","))
        else:
            one = f"{' ' * 12}*({call} for _ in range({run.count})),"
            if len(one) <= common.LINE and "\n" not in call:
                items.append(one)
            else:  # ruff's layout of a long generator: the call on its own lines
                inner = wrap(run.cls, list(run.args), 16)
                items.append(
                    f"{' ' * 12}*(\n{inner}\n{' ' * 16}for _ in range({run.count})\n{' ' * 12}),"
                )
    return {
        "name": s.name,
        "comment": f"{shape_text(s.in_shape)} -> {shape_text(s.out_shape)}",
        "blocks": items,
        "out": shape_text(s.out_shape),
        "pool": _op_stmt(s.pool, s.pool_name) if s.pool is not None else None,
    }


def _zero_init(classes) -> list[str]:
    """`if isinstance(m, (A, B)): nn.init.zeros_(m.bn_c.weight)`, one branch per BN name."""
    by_bn: dict[str, list[str]] = {}
    for c in classes:
        if c.last_bn:
            by_bn.setdefault(c.last_bn, []).append(c.name)
    if not by_bn:
        return [" " * 16 + "pass  # no block has a BN to zero"]
    lines = []
    for i, (bn, names) in enumerate(by_bn.items()):
        kinds = names[0] if len(names) == 1 else "(" + ", ".join(names) + ")"
        lines.append(wrap(f"{'if' if i == 0 else 'elif'} isinstance", ["m", kinds], 16, ":"))
        lines.append(" " * 20 + f"nn.init.zeros_(m.{bn}.weight)")
    return lines


# -- stem, head, network ----------------------------------------------------------------------


def _op_stmt(op, attr: str) -> str:
    """The __init__ statement of one stem or head op (all values literal)."""
    if isinstance(op, (Conv3d, BatchNorm, ReLU)):
        parent = op.name.rpartition(".")[0]
        return _shape_stmt(emit.op_shape(op, None, parent), comment=False)
    if isinstance(op, MaxPool):
        args = [dims(op.kernel), f"stride={dims(op.stride)}"]
        if tuple(op.padding) != (0, 0, 0):
            args.append(f"padding={dims(op.padding)}")
        return _assign(attr, ("nn.MaxPool3d", args))
    if isinstance(op, AvgPool):
        return _assign(attr, ("nn.AvgPool3d", [dims(op.kernel), "stride=1"]))
    if isinstance(op, GlobalAvgPool):
        return _assign(attr, ("nn.AdaptiveAvgPool3d", ["1"]))
    if isinstance(op, Dropout):
        return _assign(attr, ("nn.Dropout", [f"p={num(op.p)}"]))
    if isinstance(op, Linear):
        args = [num(op.in_features), "num_classes"]
        if not op.bias:
            args.append("bias=False")
        return _assign(attr, ("nn.Linear", args))
    raise CsnError(f"cannot print a {op.kind} op in the stem or head")


def _op_summary(op) -> str:
    if isinstance(op, Conv3d):
        grouped = "channel-wise " if op.groups > 1 and op.groups == op.in_channels else ""
        return f"{grouped}conv {shape_text(op.kernel)}"
    if isinstance(op, MaxPool):
        return f"max-pool {shape_text(op.kernel)}"
    return {"batchnorm": "BN", "relu": "ReLU"}.get(op.kind, op.kind)


def _stem(low: LoweredNetwork) -> dict:
    ops = low.stem.ops
    names = [emit.local_name(op, "stem") for op in ops]
    parts = []
    for op in ops:  # "conv 3x7x7 + BN + ReLU, max-pool 1x3x3"
        text = _op_summary(op)
        parts.append(f" + {text}" if op.kind in ("batchnorm", "relu") else f", {text}")
    kinds = [op.kind for op in ops]
    return {
        "doc": "The stem: " + ("".join(parts)[2:] if parts else "no layers") + ".",
        "init": [_op_stmt(op, n) for op, n in zip(ops, names)],
        # `stem none`: no Stem class at all (the network uses nn.Identity)
        "forward": (
            _returning(_lines(kinds, names, "x", "x", 8, lambda i: shape_text(ops[i].out_shape)))
            if ops
            else []
        ),
    }


def _head(low: LoweredNetwork) -> dict:
    ops = low.head.ops
    names = [emit.local_name(op, "head") for op in ops]
    if not ops or not isinstance(ops[-1], Linear):
        raise CsnError("the head must end in an fc layer")
    cut = next(i for i, op in enumerate(ops) if isinstance(op, (Dropout, Linear)))
    if cut == 0 or len(ops[cut - 1].out_shape) != 1:
        raise CsnError("the head must pool to a feature vector before its classifier")
    kinds = [op.kind for op in ops]

    def comment(i):
        return "num_classes" if isinstance(ops[i], Linear) else shape_text(ops[i].out_shape)

    pool = _returning(_lines(kinds[:cut], names[:cut], "x", "x", 8, comment))
    classify = _lines(kinds[cut:], names[cut:], "self.pool_features(x)", "x", 8, lambda i: None)
    if len(classify) > 1:
        classify = [commented("x = self.pool_features(x)", shape_text(ops[cut - 1].out_shape), 8)]
        classify += _lines(kinds[cut:], names[cut:], "x", "x", 8, lambda i: comment(cut + i))
    else:
        classify = [f"        x = self.{names[-1]}(self.pool_features(x))  # num_classes"]
    parts = []
    for op in ops:
        if isinstance(op, Conv3d):
            parts.append(f"conv {shape_text(op.kernel)}")
        elif isinstance(op, BatchNorm):
            parts[-1] += " + BN"
        elif isinstance(op, ReLU):
            parts[-1] += " + ReLU"
        elif isinstance(op, AvgPool):
            parts.append(f"average pool {shape_text(op.kernel)} (stride 1)")
        elif isinstance(op, GlobalAvgPool):
            parts.append("global average pool")
        elif isinstance(op, Dropout):
            parts.append(f"dropout {num(op.p)}")
        elif isinstance(op, Linear):
            parts.append("linear classifier")
    return {
        "doc": docstring("The classifier head", ", ".join(parts), 4),
        "init": [_op_stmt(op, n) for op, n in zip(ops, names)],
        "pool": pool,
        "forward": _returning(classify),
        "fc": names[-1],
        "fc_bias": bool(ops[-1].bias),
        "features": shape_text(ops[cut - 1].out_shape),
    }


def _features(low: LoweredNetwork, m: emit.Model) -> list[str]:
    """forward_feature_map's body: the stem, then each stage, shapes in comments.

    A network with depthwise convs first puts its input in the layout the inlined kernels run
    fastest in on its device (`preferred_layout`: channels-last on the CPU).
    """
    lines = [commented("x = self.stem(x)", shape_text(low.stem.out_shape), 8)]
    if m.depthwise:
        lines.insert(0, "        x = preferred_layout(x)  # channels-last on the CPU")
    for s in m.stages:
        if s.pool is not None:
            lines.append(commented(f"x = self.{s.name}(x)", shape_text(s.pool.in_shape), 8))
            lines.append(commented(f"x = self.{s.pool_name}(x)", shape_text(s.out_shape), 8))
        else:
            lines.append(commented(f"x = self.{s.name}(x)", shape_text(s.out_shape), 8))
    return _returning(lines)
