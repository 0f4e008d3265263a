"""The template context of the Flax backend: each op of `emit.Model` mapped to its Flax call.

Every number printed comes from an IR node and every name passes `backends.common`'s checks
before it reaches the source, so a spec built around the validators (`model_construct`) cannot
inject code. Statements are laid out as `ruff format` lays them out at line length 88 and 100.
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
    leaf_ops,
)
from .. import common, emit
from ..common import check_identifier, dims, num, shape_text, wrap
from ..emit import BlockClass, ConvShape, Literal, NormShape, SEShape

BN_EPS = 1e-5  # nnx.BatchNorm's default epsilon, as PyTorch's


def docstring(text: str, indent: int) -> str:
    """A docstring body: one line if it fits, else wrapped with the quotes on their own line."""
    if indent + len(text) + 6 <= common.LINE:
        return text
    words, lines, line = text.split(), [], ""
    for w in words:
        if line and indent + len(line) + 1 + len(w) > common.LINE:
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


# -- op calls -------------------------------------------------------------------------------


def conv_call(s: ConvShape) -> tuple[str, list[str]]:
    """The constructor and its arguments for a conv, leaving out Flax's defaults."""
    stride = s.stride.text
    if s.depthwise:
        args = [s.in_channels.text, f"kernel_size={dims(s.kernel)}"]
        if stride != "(1, 1, 1)":
            args.append(f"strides={stride}")
        if s.padding != (0, 0, 0):
            args.append(f"padding={dims(s.padding)}")
        return "DepthwiseConv", [*args, "kernel_init=conv_init", "rngs=rngs"]
    if s.kernel == (1, 1, 1) and s.padding == (0, 0, 0) and s.groups.text == "1":
        # a matmul: XLA:CPU's gradients of the 1x1x1 conv are 2-10x slower (jax_convs.py)
        args = [s.in_channels.text, s.out_channels.text]
        args += [f"strides={stride}"] if stride != "(1, 1, 1)" else []
        args += [] if s.bias else ["use_bias=False"]
        return "PointwiseConv", [*args, "kernel_init=conv_init", "rngs=rngs"]
    args = [s.in_channels.text, s.out_channels.text, f"kernel_size={dims(s.kernel)}"]
    if stride != "(1, 1, 1)":
        args.append(f"strides={stride}")
    # a 1x1x1 kernel reads no padding ('SAME' pads it by 0); others pad as PyTorch does
    if s.kernel != (1, 1, 1) or s.padding != (0, 0, 0):
        args.append(f"padding={pads(s.padding)}")
    if s.groups.text != "1":
        args.append(f"feature_group_count={s.groups.text}")
    if not s.bias:
        args.append("use_bias=False")
    args += ["kernel_init=conv_init", "rngs=rngs"]
    # XLA:CPU's 3D convolutions are slow: all but 1x1x1 ones run as 2D convs per time tap
    return ("nnx.Conv" if s.kernel == (1, 1, 1) else "FrameConv"), args


def _conv_helpers(low: LoweredNetwork, m: emit.Model) -> str:
    """The dense-conv helpers' text when a conv of the module is built with one, or the module
    has a BatchNorm or a max-pool (`BatchNorm`, `max_pool`), else ""."""
    uses = {conv_call(s)[0] for s in emit.conv_shapes(low, m)}
    blocks = [op for block in low.blocks() for op in leaf_ops(block.ops)]
    kinds = {op.kind for op in (*low.stem.ops, *blocks, *low.head.ops)}
    helpers = kinds & {"batchnorm", "maxpool"} or uses & {"PointwiseConv", "FrameConv"}
    return emit.conv_text("flax") if helpers else ""


def bn_call(s: NormShape) -> tuple[str, list[str]]:
    # Flax's running average keeps m' of the old value where PyTorch keeps 1 - m, and Flax's
    # default m' (0.99) is not PyTorch's 0.9, so it is always passed. Two-pass variance, as
    # PyTorch computes it, keeps the two backends within float32 rounding of each other.
    args = [s.channels.text]
    if num(s.eps) != num(BN_EPS):
        args.append(f"epsilon={num(s.eps)}")
    args += [f"momentum={num(1.0 - s.momentum)}", "use_fast_variance=False", "rngs=rngs"]
    return "BatchNorm", args  # nnx.BatchNorm with a faster gradient (jax_convs.py)


def _assign(attr: str, call: tuple[str, list[str]], indent: int) -> str:
    return wrap(f"self.{check_identifier(attr)} = {call[0]}", call[1], indent)


def _shape_init(s, indent: int) -> str | None:
    if isinstance(s, ConvShape):
        return _assign(s.name, conv_call(s), indent)
    if isinstance(s, NormShape):
        return _assign(s.name, bn_call(s), indent)
    if isinstance(s, SEShape):
        args = [s.channels.text, s.reduced.text, "rngs=rngs"]
        return _assign(s.name, ("SqueezeExcite", args), indent)
    return None  # ReLU and swish are functions in Flax


def _op_init(op, attr: str, indent: int) -> str | None:
    """The constructor line of a stem or head op (literal values only)."""
    if isinstance(op, (Conv3d, BatchNorm)):
        return _shape_init(emit.op_shape(op, None, op.name.rpartition(".")[0]), indent)
    if isinstance(op, Dropout):
        return _assign(attr, ("nnx.Dropout", [num(op.p), "rngs=rngs"]), indent)
    if isinstance(op, Linear):
        args = [num(op.in_features), "num_classes"]
        if not op.bias:
            args.append("use_bias=False")
        args += ["kernel_init=fc_init", "rngs=rngs"]
        return _assign(attr, ("nnx.Linear", args), indent)
    return None


def chain(steps, src: str, dst: str, indent: int, ret: bool = False) -> list[str]:
    """Forward statements for a run of (kind, attr, op) steps: a line per conv and what follows.

    The last statement assigns `dst`, or with `ret` returns its value (laid out as returned)."""
    lines, expr, pad = [], src, " " * indent
    last = f"{pad}return " if ret else f"{pad}{dst} = "
    for i, (kind, attr, op) in enumerate(steps):
        if kind in ("conv3d", "maxpool", "squeeze_excite") and i > 0 and expr != dst:
            lines.append(f"{pad}{dst} = {expr}")
            expr = dst
        if kind in ("conv3d", "batchnorm", "squeeze_excite"):
            expr = f"self.{check_identifier(attr)}({expr})"
        elif kind == "relu":
            expr = f"nnx.relu({expr})"
        elif kind == "swish":
            expr = f"nnx.swish({expr})"
        elif kind == "maxpool":
            args = [
                expr,
                dims(op.kernel),
                f"strides={dims(op.stride)}",
                f"padding={pads(op.padding)}",
            ]
            target = last.lstrip() if i == len(steps) - 1 else f"{dst} = "
            lines.append(wrap(f"{target}max_pool", args, indent))
            if i == len(steps) - 1:
                return lines
            expr = dst
        else:
            raise CsnError(f"the Flax backend cannot place a {kind} op here")
    lines.append(f"{last}{expr}")
    return lines


# -- blocks ----------------------------------------------------------------------------------


def _block_summary(c: BlockClass) -> str:
    parts = []
    for s in c.convs:
        text = shape_text(s.kernel)
        if s.depthwise:
            text += " depthwise"
        elif isinstance(s.groups, Literal) and s.groups.value > 1:
            text += f" {num(s.groups.value)}-group"
        elif s.groups.text == "groups":
            text += " grouped"
        parts.append(text)
    figure = emit.FAMILY_FIGURE[c.family]
    has_se = any(isinstance(s, SEShape) for s in c.residual)
    se = ", squeeze-excitation after the second" if has_se else ""
    convs = " -> ".join(parts)
    article = emit.FAMILY_ARTICLE[c.family]
    return f"{article} {c.family.value} block ({figure}): {convs} convs, each with BatchNorm{se}."


def _nest(names, arg: str) -> str:
    """self.b(self.a(arg)) for names [a, b]."""
    for name in names:
        arg = f"self.{check_identifier(name)}({arg})"
    return arg


def block_class(c: BlockClass) -> dict:
    return {
        "name": check_identifier(c.name),
        "doc": docstring(_block_summary(c), 4),
        "params": [
            (check_identifier(p), emit.PARAM_TYPES[p], emit.PARAM_DEFAULTS.get(p)) for p in c.params
        ],
        "init": [line for s in c.residual if (line := _shape_init(s, 8))],
        "shortcut": [line for s in c.shortcut if (line := _shape_init(s, 12))],
        "shortcut_names": [s.name for s in c.shortcut],
        "shortcut_forward": _nest([s.name for s in c.shortcut], "x"),
        "forward": chain([(s.kind, s.name, None) for s in c.residual], "x", "out", 8),
    }


def _stage(s: emit.StageLayout) -> dict:
    items = []
    for run in s.runs:
        args = [*run.args, "rngs=rngs"]
        if run.count == 1:
            items.append(wrap(run.cls, args, 16, ","))
            continue
        call = wrap(run.cls, args, 0)
        one = f"{' ' * 16}*({call} for _ in range({run.count})),"
        if len(one) <= common.LINE:
            items.append(one)
        else:  # ruff's layout of a long generator: the call on its own lines
            inner = wrap(run.cls, args, 20)
            items.append(
                f"{' ' * 16}*(\n{inner}\n{' ' * 20}for _ in range({run.count})\n{' ' * 16}),"
            )
    pool = []
    if s.pool is not None:  # a function in Flax: a line in forward_feature_map, no attribute
        pool = [f"        # the max-pool after {s.name}: {shape_text(s.out_shape)}"]
        pool += chain([("maxpool", s.pool_name, s.pool)], "x", "x", 8)
    out = shape_text(s.pool.in_shape if s.pool is not None else s.out_shape)
    return {"name": check_identifier(s.name), "out": out, "blocks": items, "pool": pool}


# -- stem, head, model -----------------------------------------------------------------------


def _stem(low: LoweredNetwork) -> dict | None:
    if not low.stem.ops:
        return None
    init, steps, parts = [], [], []
    normed = all(
        any(o.kind == "batchnorm" and o.name == op.name.replace("conv", "bn") for o in low.stem.ops)
        for op in low.stem.ops
        if isinstance(op, Conv3d)
    )
    for op in low.stem.ops:
        attr = emit.local_name(op, "stem")
        if (line := _op_init(op, attr, 8)) is not None:
            init.append(line)
        if isinstance(op, (Conv3d, MaxPool)):
            kind = "conv" if isinstance(op, Conv3d) else "max-pool"
            parts.append(f"{kind} {shape_text(op.kernel)}")
        if not isinstance(op, (Conv3d, BatchNorm, ReLU, MaxPool)):
            raise CsnError(f"the Flax backend cannot place a {op.kind} op in the stem")
        steps.append((op.kind, attr, op))
    forward = chain(steps, "x", "x", 8, ret=True)
    doc = (
        "The stem: "
        + ", ".join(parts)
        + (", each conv with BatchNorm and ReLU" if init and normed else "")
        + "."
    )
    return {"init": init, "forward": forward, "doc": docstring(doc, 4)}


def _head(low: LoweredNetwork) -> dict:
    init, pool, classify, parts, steps = [], [], [], [], []
    ops = low.head.ops
    for i, op in enumerate(ops):
        attr = emit.local_name(op, "head")
        if (line := _op_init(op, attr, 8)) is not None:
            init.append(line)
        if isinstance(op, (Conv3d, BatchNorm, ReLU)):
            steps.append((op.kind, attr, op))
            if isinstance(op, Conv3d):
                parts.append(f"conv {shape_text(op.kernel)}")
            continue
        if steps:  # the convs (+ BN) + ReLU before this op
            pool += chain(steps, "x", "x", 8)
            steps = []
        if isinstance(op, AvgPool):
            args = ["x", dims(op.kernel), "strides=(1, 1, 1)", f"padding={pads((0, 0, 0))}"]
            pool.append(wrap("x = nnx.avg_pool", args, 8))
            parts.append(f"average pool {shape_text(op.kernel)}")
        elif isinstance(op, GlobalAvgPool):
            pool.append("        return x.mean(axis=(1, 2, 3))")
            parts.append("global average")
        elif isinstance(op, Dropout):
            classify.append(f"        x = self.{attr}(x)")
            parts.append(f"dropout {num(op.p)}")
        elif isinstance(op, Linear) and i == len(ops) - 1:
            classify.append(f"        return self.{attr}(x)")
            parts.append("fc")
            fc, fc_bias = attr, bool(op.bias)
        else:
            raise CsnError(f"the Flax backend cannot place a {op.kind} op in the head")
    if not pool or not pool[-1].lstrip().startswith("return ") or not classify:
        raise CsnError("the head must pool to a feature vector, then end in an fc layer")
    return {
        "init": init,
        "pool": pool,
        "forward": classify,
        "fc": fc,
        "fc_bias": fc_bias,
        "doc": docstring("The head: " + " -> ".join(parts) + ".", 4),
    }


def build(low: LoweredNetwork, depthwise: str | None = None) -> dict:
    impl = emit.check_depthwise("flax", depthwise)
    h = common.header(low)  # validates the network name first
    m = emit.model(low)
    args = [f"num_classes: int = {num(h.classes)}", "*", "seed: int = 0"]
    if m.depthwise:
        args.append("depthwise: str | None = None")
    return {
        "build_signature": wrap("def build", args, 0, f" -> {m.network}:"),
        "h": h,
        "thousands": common.thousands,
        "gflops": f"{h.flops / 1e9:.2f}",
        "mparams": f"{h.params / 1e6:.2f}",
        "input_dims": dims(low.input_shape),
        "model": m.network,
        "num_features": num(m.num_features),
        "depthwise": impl if m.depthwise else None,
        "squeeze_excite": m.squeeze_excite,
        "kernels": emit.kernel_text("flax") if m.depthwise else "",
        "convs": _conv_helpers(low, m),
        "classes": [block_class(c) for c in m.blocks],
        "stem": _stem(low),
        "stages": [_stage(s) for s in m.stages],
        "head": _head(low),
    }
